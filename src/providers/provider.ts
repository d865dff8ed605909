import type * as v from 'valibot';
import type { PcmRate } from '../codec/pcm.ts';
import type { InputEncoding } from '../protocol/inbound.ts';
import type { Logger } from '../log.ts';
import { ConnectError, type SocketConnector } from '../net.ts';
import type { Base64Codec } from '../util/base64.ts';
import { parseEnvWith } from '../util/env-schema.ts';
import { secretRedactor } from '../util/redact.ts';
import type { Timers } from '../util/timers.ts';

/** What a provider connection consumes. Capabilities, not provider names, drive the pipeline. */
export type AudioFormat =
  | { kind: 'pcm16'; sampleRate: PcmRate }
  /** One raw Opus packet per frame (pass-through, no decoding). */
  | { kind: 'opus' }
  /** Ogg Opus pages as they arrive (pass-through). */
  | { kind: 'ogg' };

export interface Transcript {
  kind: 'interim' | 'final';
  /** The provider's id for the utterance; unique within one connection. */
  itemId: string;
  /** The whole current hypothesis of the utterance (providers that send deltas accumulate). */
  text: string;
  confidence?: number;
  language?: string;
  speaker?: string | number;
  /** Offset in this connection's audio (ms) where the utterance began, when the provider says. */
  audioStartMs?: number;
}

/**
 * What went wrong, the same for every provider: it decides the backoff, the `error` code the
 * client gets (docs/PROTOCOL.md §5.4, `providerErrorCode`), /health, and the `kind` label of
 * `transcriber_backend_errors_total`.
 * - `auth`: the key was refused (401/403, or the provider's own auth error);
 * - `rate_limited`: 429, or the provider's quota or rate-limit error;
 * - `unreachable`: no answer at all (DNS, connection refused or reset, handshake timed out);
 * - `handshake`: refused otherwise (another status, a model or parameter rejected at setup);
 * - `protocol`, `closed`, `provider`: after the connection opened.
 */
export type ProviderErrorKind = 'auth' | 'rate_limited' | 'unreachable' | 'handshake' | 'protocol' | 'closed' | 'provider';

export class ProviderError extends Error {
  constructor(
    message: string,
    readonly kind: ProviderErrorKind,
    /** False when trying again cannot help (bad key, bad model): back off for long. */
    readonly retryable = true,
  ) {
    super(message);
    this.name = 'ProviderError';
  }
}

/** How a failed handshake is classified, for every provider alike. */
export function handshakeFailure(err: unknown): { kind: ProviderErrorKind; retryable: boolean } {
  if (!(err instanceof ConnectError)) return { kind: 'handshake', retryable: true };
  const { status } = err;
  // No HTTP answer: the host did not resolve, refused or dropped the connection, or timed out.
  if (status === undefined) return { kind: 'unreachable', retryable: true };
  if (status === 401 || status === 403) return { kind: 'auth', retryable: false };
  if (status === 429) return { kind: 'rate_limited', retryable: true };
  // 400: a parameter the provider rejects (model, language); the same request fails again.
  return { kind: 'handshake', retryable: status !== 400 };
}

export interface ConnectionListener {
  transcript(t: Transcript): void;
  /** An error the provider reported; the connection may still be usable. */
  error(err: ProviderError): void;
  /** The connection is gone (closed by the provider or the network). Not called after close(). */
  closed(err: ProviderError): void;
  /**
   * The provider announced that it will end this connection in about `inMs` (Gemini's
   * `goAway`). The stream moves to a new connection before then, at an utterance boundary
   * when one comes in time, and lets this one finish what it has.
   */
  expiring(inMs: number): void;
}

/** One open connection to a provider for one participant stream. */
export interface ProviderConnection {
  /** `audio` is only valid during the call (it may be a view into WASM memory). */
  send(audio: Uint8Array, durationMs: number): void;
  /** End of utterance: ask the provider to finalise what it has (idle timeout, stop). */
  flush(): void;
  /** Flush, wait at most `timeoutMs` for outstanding finals, then close. */
  finish(timeoutMs: number): Promise<void>;
  /** Close now; finals still pending are lost. */
  close(): void;
}

export interface ConnectRequest {
  format: AudioFormat;
  language?: string;
  log: Logger;
}

export interface Provider {
  readonly name: string;
  /** The format this provider wants for a participant sending `input`. */
  formatFor(input: InputEncoding): AudioFormat;
  /** Connections are recycled before this age, when the provider caps them. */
  readonly maxConnectionMs?: number;
  connect(request: ConnectRequest, listener: ConnectionListener): Promise<ProviderConnection>;
}

/** What the runtime gives every provider. */
export interface ProviderDeps {
  connector: SocketConnector;
  base64: Base64Codec;
  timers: Timers;
}

/**
 * A provider module: its environment variables and how to build it. Adding a provider is a
 * file exporting one of these and a line in `registry.ts`.
 */
export interface ProviderDefinition<S extends v.GenericSchema, C> {
  readonly name: string;
  /** The variable that switches it on; named in "not configured" answers. */
  readonly keyVariable: string;
  /** Its variables, validated (and every error listed) only when it is switched on. */
  readonly env: S;
  config(env: v.InferOutput<S>): C;
  create(config: C, deps: ProviderDeps): Provider;
}

/** A provider as the registry holds it: its configuration type erased behind `load`. */
export interface ProviderModule {
  readonly name: string;
  readonly keyVariable: string;
  /** `create` is present when the provider is configured and its variables are valid. */
  load(env: Readonly<Record<string, string | undefined>>): { errors: string[]; create?: (deps: ProviderDeps) => Provider };
}

export function defineProvider<S extends v.GenericSchema, C>(def: ProviderDefinition<S, C>): ProviderModule {
  return {
    name: def.name,
    keyVariable: def.keyVariable,
    load(env) {
      if (!env[def.keyVariable]) return { errors: [] };
      const { output, errors } = parseEnvWith(def.env, env);
      if (output === undefined) return { errors };
      const config = def.config(output);
      const redact = secretRedactor([env[def.keyVariable]!]);
      return { errors, create: (deps) => redacting(def.create(config, deps), redact) };
    },
  };
}

/**
 * The provider with its key masked in every error it raises, whatever a server echoed or a
 * library quoted: these messages reach logs, /health and the client's `error` events.
 */
function redacting(provider: Provider, redact: (text: string) => string): Provider {
  const clean = (err: unknown): ProviderError => {
    if (!(err instanceof ProviderError)) return new ProviderError(redact(String(err)), 'handshake');
    const message = redact(err.message);
    return message === err.message ? err : new ProviderError(message, err.kind, err.retryable);
  };
  return {
    name: provider.name,
    maxConnectionMs: provider.maxConnectionMs,
    formatFor: (input) => provider.formatFor(input),
    connect: (request, listener) =>
      provider
        .connect(request, {
          transcript: (t) => listener.transcript(t),
          error: (err) => listener.error(clean(err)),
          closed: (err) => listener.closed(clean(err)),
          expiring: (inMs) => listener.expiring(inMs),
        })
        .catch((err: unknown) => {
          throw clean(err);
        }),
  };
}
