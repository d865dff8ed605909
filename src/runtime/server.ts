import type { AppDeps } from '../app.ts';
import { PROVIDERS } from '../backends/registry.ts';
import { OpusCodec } from '../codec/opus.ts';
import { ConfigError, loadConfig, type Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { memoizeUntilFailure } from '../util/memo.ts';

/** What every runtime's server entry (Node, Deno) gives back once it listens. */
export interface RunningServer {
  readonly port: number;
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Stops accepting, closes every client socket, and resolves when the server is closed. */
  close(): Promise<void>;
}

export interface ServerOptions {
  env: Readonly<Record<string, string | undefined>>;
  log?: Logger;
  /** Extra sinks, built per session; by default the dispatcher over DISPATCHER_WS_URL. */
  sinks?: (config: Config, log: Logger, metrics: Metrics) => AppDeps['sinks'];
}

/**
 * A server entry's configuration (Node, Deno: the dispatcher is a WebSocket there), or a
 * ConfigError listing every problem at once.
 */
export function loadServerConfig(env: ServerOptions['env']): Config {
  const result = loadConfig(env, PROVIDERS);
  if (!result.ok) throw new ConfigError(result.errors);
  if (result.config.useDispatcher && result.config.dispatcher.wsUrl === undefined) {
    throw new ConfigError(['DISPATCHER_WS_URL: required when USE_DISPATCHER is true (the dispatcher WebSocket endpoint)']);
  }
  return result.config;
}

/** What a server entry logs once it listens (scripts and tests wait for `listening`). */
export function logListening(log: Logger, config: Config, port: number): void {
  log.info('listening', { host: config.host, port, providers: config.providers.map((p) => p.name) });
  if (config.providers.length === 0) {
    log.warn(`no provider configured: /transcribe answers 503 until ${config.missingProviderHint} is set`);
  }
}

/**
 * The codec of a process or isolate: one WASM instance hosts every session's decoders. Loaded
 * on first use; a failed load is tried again by the next caller.
 */
export function sharedCodec(load: () => Promise<WebAssembly.Module>): () => Promise<OpusCodec> {
  return memoizeUntilFailure(() => load().then((module) => OpusCodec.instantiate(module)));
}
