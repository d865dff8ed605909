/**
 * The Node server's app on a manual clock: the same pieces `startNodeServer` composes
 * (createApp, the `ws` upgrade adapter, @hono/node-server, the WebSocket dispatcher), with
 * the injectable `Timers` set to a ManualClock and the outbound connector recording each
 * attempt. Clients, providers and the dispatcher are real sockets on 127.0.0.1; only the
 * product's timers (idle commit, backoff, setup and drain deadlines) wait for the test.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { createApp } from '../../src/app.ts';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import { nodeBase64 } from '../../src/runtime/node/base64.ts';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { createNodeWebSocket } from '../../src/runtime/node/websocket.ts';
import { loadServerConfig, sharedCodec } from '../../src/runtime/server.ts';
import { webSocketDispatcherSinks } from '../../src/sinks/dispatcher/websocket.ts';
import { TestClient } from './client.ts';
import { ManualClock } from './clock.ts';
import type { LogLine } from './provider-server.ts';
import { RecordingConnector } from './recording-connector.ts';

const codec = sharedCodec(loadOpusModule);

export interface ClockedServer {
  clock: ManualClock;
  connector: RecordingConnector;
  logs: LogLine[];
  metrics: ReturnType<typeof createMetrics>;
  port: number;
  /** Opens /transcribe with these query parameters (sendBack=true and a fresh sessionId unless given). */
  connect(params?: Record<string, string>): Promise<TestClient>;
  close(): Promise<void>;
}

export async function startClockedServer(env: Record<string, string>, clock = new ManualClock()): Promise<ClockedServer> {
  const config = loadServerConfig({ PORT: '0', HOST: '127.0.0.1', ...env });
  await codec();
  const logs: LogLine[] = [];
  const log = createLogger('debug', (_level, line) => void logs.push(JSON.parse(line) as LogLine));
  const metrics = createMetrics();
  const connector = new RecordingConnector(clock);
  const { upgradeWebSocket, injectWebSocket, wss } = createNodeWebSocket({ maxPayload: Math.max(config.maxMessageBytes * 16, 16 << 20) });
  const app = new Hono();
  app.route(
    '/',
    createApp({
      config,
      runtime: 'node',
      upgradeWebSocket,
      codec,
      connector,
      base64: nodeBase64,
      log,
      metrics,
      timers: clock,
      sinks: webSocketDispatcherSinks({ config: config.dispatcher, connector, log, metrics, timers: clock }),
      dispatcherAvailable: config.dispatcher.wsUrl !== undefined,
    }),
  );
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s as Server));
  });
  injectWebSocket(server, app);
  const port = (server.address() as AddressInfo).port;
  const clients: TestClient[] = [];
  return {
    clock,
    connector,
    logs,
    metrics,
    port,
    async connect(params = {}) {
      const query = new URLSearchParams({ sessionId: `s-${Math.random().toString(36).slice(2, 8)}`, sendBack: 'true', ...params });
      const client = await TestClient.connect(`ws://127.0.0.1:${port}/transcribe?${query}`);
      clients.push(client);
      return client;
    },
    async close() {
      for (const c of clients) if (!c.closed) c.ws.terminate();
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
    },
  };
}
