import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { createApp } from '../../app.ts';
import { createLogger } from '../../log.ts';
import { createMetrics } from '../../metrics.ts';
import { webSocketDispatcherSinks } from '../../sinks/dispatcher/websocket.ts';
import { trackSinks } from '../../sinks/tracked.ts';
import { systemTimers } from '../../util/timers.ts';
import { nodeBase64 } from './base64.ts';
import { nodeConnector } from './connector.ts';
import { loadOpusModule } from './wasm.ts';
import { createNodeWebSocket } from './websocket.ts';
import {
  listenFailure,
  loadServerConfig,
  logListening,
  preloadCodec,
  sharedCodec,
  type RunningServer,
  type ServerOptions,
} from '../server.ts';

export type NodeServer = RunningServer;

export type NodeServerOptions = ServerOptions;

const codec = sharedCodec(loadOpusModule);

/** Serves the app on Node with @hono/node-server and our `ws` upgrade adapter. */
export async function startNodeServer(options: NodeServerOptions): Promise<NodeServer> {
  const config = loadServerConfig(options.env);
  await preloadCodec(codec);
  const log = options.log ?? createLogger(config.logLevel);
  const metrics = createMetrics();
  // The transport limit sits above the app's, so an oversized frame is refused by the
  // session (counted, the session goes on) rather than closing the socket with 1009.
  const { upgradeWebSocket, injectWebSocket, wss } = createNodeWebSocket({
    maxPayload: Math.max(config.maxMessageBytes * 16, 16 << 20),
  });

  const sinks = trackSinks(
    options.sinks?.(config, log, metrics) ??
      webSocketDispatcherSinks({ config: config.dispatcher, connector: nodeConnector, log, metrics, timers: systemTimers }),
    systemTimers,
  );

  const app = new Hono();
  app.route(
    '/',
    createApp({
      config,
      runtime: 'node',
      upgradeWebSocket,
      codec,
      connector: nodeConnector,
      base64: nodeBase64,
      log,
      metrics,
      sinks: sinks.factory,
      dispatcherAvailable: options.sinks !== undefined || config.dispatcher.wsUrl !== undefined,
    }),
  );

  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, () => resolve(s as Server));
    s.once('error', (error) => reject(listenFailure(error, config.host, config.port)));
  });
  injectWebSocket(server, app);
  const port = (server.address() as AddressInfo).port;
  logListening(log, config, port);

  return {
    port,
    config,
    log,
    metrics,
    close: async () => {
      await new Promise<void>((resolve) => {
        for (const client of wss.clients) client.close(1001, 'server shutting down');
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
      // Finals still on their way to the dispatcher get their drain before the process exits.
      await sinks.settled(config.finishTimeoutMs + config.dispatcher.drainTimeoutMs + 2_000);
    },
  };
}
