import type { ProviderErrorKind } from '../providers/provider.ts';
import type { InboundEvent } from './inbound.ts';

export type Runtime = 'node' | 'deno' | 'workerd';

export interface InfoMessage {
  event: 'info';
  application: string;
  version: string;
  runtime: Runtime;
  provider: string;
  providersAvailable: string[];
  sessionId: string | null;
}

export interface TranscriptionResult {
  event: 'transcription-result';
  type: 'transcription-result';
  transcript: [{ text: string; confidence?: number }];
  is_interim: boolean;
  message_id: string;
  participant: { id: string; tag: string };
  timestamp: number;
  language?: string;
  speaker?: string | number;
}

/** Echoes `id` whatever its JSON type, and leaves it out when the ping had none. */
export function pong(id: unknown): string | undefined {
  if (id === undefined) return '{"event":"pong"}';
  try {
    return JSON.stringify({ event: 'pong', id });
  } catch {
    // Nested deeper than the stack allows (JSON.parse took it, JSON.stringify cannot).
    return undefined;
  }
}

/**
 * Trouble the client should know about (docs/PROTOCOL.md §5.4). The session goes on: the
 * socket is closed only where a close code says so (1008, 1013).
 * - Provider trouble, once per episode per participant (not per retry; a new episode starts
 *   after the stream has recovered): `provider_auth`, `provider_rate_limited`,
 *   `provider_unreachable`, `provider_error`; with `tag` and `provider`.
 * - Input refused, throttled per code like the log (the first five, then every power of
 *   ten): `invalid_json`, `binary_frame`, `too_large`, `unknown_event`, `invalid_start`,
 *   `invalid_media`, `invalid_stop`, `bad_base64`, `too_many_participants`,
 *   `too_many_provider_connections` (the server's MAX_PROVIDER_CONNECTIONS: that stream
 *   alone is refused, frame by frame, until a connection frees), `server_saturated` (a new
 *   stream while the process is saturated: refused the same way until the load falls), and audio
 *   that does not decode (`corrupt_opus`, `ogg_*`); with `tag` when one is known.
 * - `transcriber_unavailable`: no transcriber could be reached (the Worker in front of its
 *   containers), just before the close with 1013.
 */
export type ProviderErrorCode = 'provider_auth' | 'provider_rate_limited' | 'provider_unreachable' | 'provider_error';
export type InputErrorCode =
  | 'invalid_json'
  | 'binary_frame'
  | 'too_large'
  | 'unknown_event'
  | `invalid_${InboundEvent['event']}`
  | 'bad_base64'
  | 'too_many_participants'
  | 'too_many_provider_connections'
  | 'server_saturated';
/** `ogg_` and the demuxer's reason (`ogg_bad_crc`…). */
export type DecodeErrorCode = 'corrupt_opus' | `ogg_${string}`;
export type ErrorCode = InputErrorCode | DecodeErrorCode | ProviderErrorCode | 'transcriber_unavailable';

/** A participant moved to another provider (docs/PROTOCOL.md §5.6). */
export interface ProviderSwitchedMessage {
  event: 'provider-switched';
  tag: string;
  from: string;
  to: string;
  /** The kind of the failures that moved it (`auth`, `rate_limited`, `unreachable`…), or `probe`: back to the preferred one. */
  reason: string;
}

export function providerSwitched(tag: string, from: string, to: string, reason: string): ProviderSwitchedMessage {
  return { event: 'provider-switched', tag, from, to, reason };
}

export interface ErrorMessage {
  event: 'error';
  code: ErrorCode;
  /** Says what was wrong, naming the field or the provider's explanation; never a secret. */
  message: string;
  tag?: string;
  provider?: string;
}

/** The client's code for a provider failure, from its kind (one classification, see ProviderErrorKind). */
export function providerErrorCode(kind: ProviderErrorKind): ProviderErrorCode {
  switch (kind) {
    case 'auth':
      return 'provider_auth';
    case 'rate_limited':
      return 'provider_rate_limited';
    case 'unreachable':
      return 'provider_unreachable';
    default:
      return 'provider_error';
  }
}

export function errorMessage(code: ErrorCode, message: string, about: { tag?: string; provider?: string } = {}): string {
  const msg: ErrorMessage = { event: 'error', code, message };
  if (about.tag !== undefined) msg.tag = about.tag;
  if (about.provider !== undefined) msg.provider = about.provider;
  return JSON.stringify(msg);
}
