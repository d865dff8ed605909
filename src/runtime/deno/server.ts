import { startServer, type RunningServer, type ServerOptions } from '../server.ts';
import { denoAdapter } from './adapter.ts';

/** The server on Deno (`deno task dev`, and the conformance suite's Deno run). */
export function startDenoServer(options: ServerOptions): Promise<RunningServer> {
  return startServer(denoAdapter, options);
}
