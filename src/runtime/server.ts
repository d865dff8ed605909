import type { AppDeps } from '../app.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';

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
