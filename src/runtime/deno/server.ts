import { startServer, type RunningServer, type ServerOptions } from '../server.ts';
import { denoAdapter } from './adapter.ts';

export type DenoServer = RunningServer;

/** The server on Deno (`deno task dev`, and the conformance suite's Deno run). */
export function startDenoServer(options: ServerOptions): Promise<DenoServer> {
  return startServer(denoAdapter, options);
}
