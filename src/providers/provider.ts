import type * as v from 'valibot';
import type { PcmRate } from '../codec/pcm.ts';
import type { InputEncoding } from '../protocol/inbound.ts';
import type { Logger } from '../log.ts';
import { ConnectError, type ConnectOptions, type HandshakeRefusal, type OutboundSocket, type SocketConnector } from '../net.ts';
import type { LocalRecognizer } from '../local/engine.ts';
import type { Base64Codec } from '../util/base64.ts';
import { parseEnvWith } from '../util/env-schema.ts';
import { maskSecret, secretRedactor } from '../util/redact.ts';
import { withDeadline, type Timers } from '../util/timers.ts';
import { clipDetail } from './wire.ts';

/** How long a provider's WebSocket handshake may take. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

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
  /**
   * On a final, the offset (ms) where the audio it covers ends, when the provider says: the
   * audio after it is the next utterance's, and is replayed if the connection dies before that
   * one's final. Without it, a final covers everything sent up to the last flush.
   */
  audioEndMs?: number;
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

/**
 * A refused handshake (the status, and the service's explanation as `explain` finds it in
 * the refusal) or one never answered; `secret` is masked before the explanation is clipped.
 */
export function handshakeError(
  service: string,
  err: unknown,
  secret: string,
  explain: (refusal: HandshakeRefusal) => string | undefined,
): ProviderError {
  const status = err instanceof ConnectError ? err.status : undefined;
  const refusal = err instanceof ConnectError ? err.refusal : undefined;
  const detail = refusal && explain(refusal);
  const what =
    status !== undefined
      ? `${service} refused the connection: HTTP ${status}${detail ? ` (${clipDetail(maskSecret(detail, secret))})` : ''}`
      : `${service} could not be reached: ${err instanceof Error ? err.message : String(err)}`;
  const { kind, retryable } = handshakeFailure(err);
  return new ProviderError(maskSecret(what, secret), kind, retryable);
}

/** A provider connection's side of its socket. */
export interface SocketReader {
  onMessage(data: string | Uint8Array): void;
  onClose(code: number, reason: string): void;
}

/** Opens a provider's WebSocket for `conn`, which reads it; a failed handshake is thrown as `failure(err)`. */
export function openSocket(
  deps: ProviderDeps,
  url: string,
  auth: Pick<ConnectOptions, 'headers' | 'protocols'>,
  conn: SocketReader,
  failure: (err: unknown) => ProviderError,
): Promise<OutboundSocket> {
  const handlers = { message: (data: string | Uint8Array) => conn.onMessage(data), close: (code: number, reason: string) => conn.onClose(code, reason) };
  return deps.connector.connect(url, { ...auth, timeoutMs: HANDSHAKE_TIMEOUT_MS }, handlers).catch((err: unknown) => {
    throw failure(err);
  });
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
  /**
   * Whether the provider ends utterances by itself from the audio (server VAD, endpointing).
   * When not, the proxy's end of speech (SILENCE_GATE) commits them.
   */
  readonly detectsTurns?: boolean;
  /**
   * Whether it takes Ogg Opus where it takes raw Opus: raw packets then go as Ogg pages of
   * several packets each (PASS_THROUGH_BATCH_MS), one message per page instead of per packet.
   */
  readonly takesOgg?: boolean;
  connect(request: ConnectRequest, listener: ConnectionListener): Promise<ProviderConnection>;
}

/**
 * The answer a connection waits for after its handshake, before audio may flow (OpenAI's
 * `session.updated`, Gemini's `setupComplete`): a bad key or model is only refused then.
 * `onRefused` runs once if it fails: refused, or no answer within `ms`.
 */
export class SetupWait {
  readonly confirmed: Promise<void>;
  private settle: { resolve(): void; reject(err: ProviderError): void } | undefined;

  constructor(timers: Timers, ms: number, timedOut: () => ProviderError, private readonly onRefused: () => void) {
    const answered = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.confirmed = withDeadline(answered, ms, timers, () => {
      const err = timedOut();
      this.refuse(err);
      throw err;
    });
  }

  /** Still waiting: an error or a close now refuses the setup. */
  get pending(): boolean {
    return this.settle !== undefined;
  }

  confirm(): void {
    const settle = this.settle;
    this.settle = undefined;
    settle?.resolve();
  }

  refuse(err: ProviderError): void {
    const settle = this.settle;
    if (!settle) return;
    this.settle = undefined;
    this.onRefused();
    settle.reject(err);
  }
}

/** What the runtime gives every provider. */
export interface ProviderDeps {
  connector: SocketConnector;
  base64: Base64Codec;
  timers: Timers;
  /** The in-process recogniser of the `local` provider, where the runtime runs one (Node, Deno). */
  localRecognizer?: LocalRecognizer;
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
  /** How to switch it on, for "not configured" answers; `keyVariable` when absent. */
  readonly enableHint?: string;
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

/** What a wrapper around a provider sees of its connections, each hook passing on what it returns. */
export interface ProviderTap {
  /** An error reported on an open connection. */
  error?(err: ProviderError): ProviderError;
  /** The end of a connection (see ConnectionListener.closed). */
  closed?(err: ProviderError): ProviderError;
  /** A connection attempt failed: what is returned is thrown. */
  refused?(err: unknown): unknown;
  /** A connection attempt succeeded. */
  connected?(): void;
}

/** `provider`, with what its connections report passing through `tap`. */
export function tapProvider(provider: Provider, tap: ProviderTap): Provider {
  return {
    // Every capability as the provider declares it (a new one needs no line here).
    ...provider,
    formatFor: (input) => provider.formatFor(input),
    connect: (request, listener) =>
      provider
        .connect(request, {
          transcript: (t) => listener.transcript(t),
          error: (err) => listener.error(tap.error ? tap.error(err) : err),
          closed: (err) => listener.closed(tap.closed ? tap.closed(err) : err),
          expiring: (inMs) => listener.expiring(inMs),
        })
        .then(
          (conn) => {
            tap.connected?.();
            return conn;
          },
          (err: unknown) => {
            throw tap.refused ? tap.refused(err) : err;
          },
        ),
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
  return tapProvider(provider, { error: clean, closed: clean, refused: clean });
}
