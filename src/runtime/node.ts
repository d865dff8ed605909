import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { createApp } from '../app.ts';
import { loadConfig } from '../config.ts';
import { createLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import { PROVIDERS } from '../backends/registry.ts';
import { OpusCodec } from '../codec/opus.ts';
import { nodeBase64 } from './node/base64.ts';
import { nodeConnector } from './node/connector.ts';
import { loadOpusModule } from './node/wasm.ts';
import { createNodeWebSocket } from './node/websocket.ts';

/** Node entrypoint: `npm start`, and the production container. */
const result = loadConfig(process.env, PROVIDERS);
if (!result.ok) {
  console.error(`invalid configuration:\n${result.errors.map((e) => `  - ${e}`).join('\n')}`);
  process.exit(1);
}
const config = result.config;
const log = createLogger(config.logLevel);
const metrics = createMetrics();
// The transport limit sits above the app's, so an oversized frame is refused by the session
// (counted, the session goes on) rather than closing the socket with 1009.
const { upgradeWebSocket, injectWebSocket } = createNodeWebSocket({ maxPayload: Math.max(config.maxMessageBytes * 16, 16 << 20) });

let codec: Promise<OpusCodec> | undefined;
const app = new Hono();
app.route(
  '/',
  createApp({
    config,
    runtime: 'node',
    upgradeWebSocket,
    codec: () => (codec ??= loadOpusModule().then((m) => OpusCodec.instantiate(m))),
    connector: nodeConnector,
    base64: nodeBase64,
    log,
    metrics,
  }),
);

const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) => {
  log.info('listening', { host: config.host, port: info.port, providers: config.providers.map((p) => p.name) });
  if (config.providers.length === 0) log.warn(`no provider configured: /transcribe answers 503 until ${config.missingProviderHint} is set`);
});
injectWebSocket(server as import('node:http').Server, app);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    log.info('shutting down', { signal });
    server.close();
    process.exit(0);
  });
}
