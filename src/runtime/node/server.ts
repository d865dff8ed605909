import { startServer, type RunningServer, type ServerOptions } from '../server.ts';
import { nodeAdapter } from './adapter.ts';

export type NodeServer = RunningServer;

/** The server on Node (`npm start`, the production container, and the tests' servers). */
export function startNodeServer(options: ServerOptions): Promise<NodeServer> {
  return startServer(nodeAdapter, options);
}
