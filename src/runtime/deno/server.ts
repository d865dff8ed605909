import { Hono } from 'hono';
import { createApp } from '../../app.ts';
import { createLogger } from '../../log.ts';
import { createMetrics } from '../../metrics.ts';
import { webSocketDispatcherSinks } from '../../sinks/dispatcher/websocket.ts';
import { systemTimers } from '../../util/timers.ts';
import { denoBase64 } from './base64.ts';
import { denoConnector } from './connector.ts';
import { loadOpusModule } from './wasm.ts';
import { createDenoWebSocket } from './websocket.ts';
import {
  listenFailure,
  loadServerConfig,
  logListening,
  preloadCodec,
  sharedCodec,
  type RunningServer,
  type ServerOptions,
} from '../server.ts';

export type DenoServer = RunningServer;

export type DenoServerOptions = ServerOptions;

/** How long shutdown waits for clients to answer our close frame. */
const CLOSE_GRACE_MS = 2_000;

const codec = sharedCodec(loadOpusModule);

/**
 * Serves the app with Deno.serve. PORT=0 picks a free port; the `listening` log line
 * (JSON on stdout) carries the real one, so a test launcher can read it.
 */
export async function startDenoServer(options: DenoServerOptions): Promise<DenoServer> {
  const config = loadServerConfig(options.env);
  await preloadCodec(codec);
  const log = options.log ?? createLogger(config.logLevel);
  const metrics = createMetrics();
  const { upgradeWebSocket, sockets } = createDenoWebSocket();

  const app = new Hono();
  app.route(
    '/',
    createApp({
      config,
      runtime: 'deno',
      upgradeWebSocket,
      codec,
      connector: denoConnector,
      base64: denoBase64,
      log,
      metrics,
      sinks:
        options.sinks?.(config, log, metrics) ??
        webSocketDispatcherSinks({ config: config.dispatcher, connector: denoConnector, log, metrics, timers: systemTimers }),
      dispatcherAvailable: options.sinks !== undefined || config.dispatcher.wsUrl !== undefined,
    }),
  );

  const server = await new Promise<Deno.HttpServer<Deno.NetAddr>>((resolve, reject) => {
    // onListen replaces Deno's own "Listening on" line, which would break JSON-lines stdout.
    let s: Deno.HttpServer<Deno.NetAddr>;
    const options: Deno.ServeTcpOptions = {
      port: config.port,
      hostname: config.host,
      onListen: () => queueMicrotask(() => resolve(s)),
      // Deno's default prints a stack to stderr; keep the logs JSON lines, as on Node.
      onError: (error) => {
        log.error('request failed', { error: error instanceof Error ? error : String(error) });
        return new Response('internal error', { status: 500 });
      },
    };
    try {
      s = Deno.serve(options, app.fetch);
    } catch (error) {
      reject(listenFailure(error, config.host, config.port));
    }
  });
  const port = server.addr.port;
  logListening(log, config, port);

  return {
    port,
    config,
    log,
    metrics,
    async close() {
      // Deno's shutdown() closes upgraded sockets itself ("Server shutting down"), and its
      // frame overtakes ours unless the close handshakes finish first.
      const closed = [...sockets].map(
        (socket) => new Promise<void>((resolve) => socket.addEventListener('close', () => resolve(), { once: true })),
      );
      for (const socket of sockets) socket.close(1001, 'server shutting down');
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([Promise.all(closed), new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
      clearTimeout(timer);
      await server.shutdown();
    },
  };
}
