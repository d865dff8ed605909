import type * as v from 'valibot';
import type { InputEncoding, PcmRate } from '../protocol/inbound.ts';
import type { Logger } from '../log.ts';
import type { SocketConnector } from '../net.ts';
import type { Base64Codec } from '../util/base64.ts';
import { parseEnvWith } from '../util/env-schema.ts';
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

export type ProviderErrorKind = 'auth' | 'handshake' | 'protocol' | 'closed' | 'provider';

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
      return { errors, create: (deps) => def.create(config, deps) };
    },
  };
}
