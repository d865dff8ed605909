import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { serve } from '@hono/node-server';
import { listenFailure, sharedCodec, type ServerAdapter } from '../server.ts';
import { nodeBase64 } from './base64.ts';
import { nodeConnector } from './connector.ts';
import { fileRecorders } from './dumps.ts';
import { nodeLocalRecognizer } from './local.ts';
import { loadOpusModule } from './wasm.ts';
import { createNodeWebSocket } from './websocket.ts';

type NodeWebSockets = ReturnType<typeof createNodeWebSocket>;

let lastLoop: EventLoopUtilization = performance.eventLoopUtilization();

/** Node's seams for startServer: @hono/node-server, and our `ws` upgrade adapter. */
export const nodeAdapter: ServerAdapter<NodeWebSockets> = {
  runtime: 'node',
  connector: nodeConnector,
  base64: nodeBase64,
  codec: sharedCodec(loadOpusModule),
  webSockets: (options) => createNodeWebSocket(options),
  readTextFile: (path) => readFileSync(path, 'utf8'),
  readFile: (path) => new Uint8Array(readFileSync(path)),
  dumps: fileRecorders,
  localRecognizer: nodeLocalRecognizer,
  loopUtilization() {
    const now = performance.eventLoopUtilization();
    const since = performance.eventLoopUtilization(now, lastLoop);
    lastLoop = now;
    return since.utilization;
  },
  async listen(app, sockets, at) {
    const server = await new Promise<Server>((resolve, reject) => {
      const s = serve({ fetch: app.fetch, port: at.port, hostname: at.host }, () => resolve(s as Server));
      s.once('error', (error) => reject(listenFailure(error, at.host, at.port)));
    });
    sockets.injectWebSocket(server, app);
    return {
      port: (server.address() as AddressInfo).port,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections?.();
        }),
    };
  },
};
