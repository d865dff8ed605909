import { Hono } from 'hono';
import type { UpgradeWebSocket, WSContext } from 'hono/ws';
import { transcribeAuth } from './auth/middleware.ts';
import { createAuthenticator } from './auth/verify.ts';
import type { Config } from './config.ts';
import { worthLogging, type Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import { CAPTIONS_PAGE } from './page/captions.ts';
import type { Runtime } from './protocol/outbound.ts';
import { transcribeParamsParser, type TranscribeParams } from './protocol/query.ts';
import type { ClientSocket, RecorderFactory, SessionFactory, SessionHandle, SinkFactory, SocketRecorder } from './session/ports.ts';

export const APPLICATION = 'opus-transcriber-proxy';
export const VERSION = '0.1.0';

/** The routes' dependencies; a runtime entry builds them (src/runtime/). */
export interface AppDeps {
  config: Pick<Config, 'useDispatcher' | 'knownProviders' | 'missingProviderHint'> & Partial<Pick<Config, 'auth'>>;
  runtime: Runtime;
  upgradeWebSocket: UpgradeWebSocket<unknown>;
  log: Logger;
  metrics: Metrics;
  /** Where sessions run: here (localSessions), or relayed elsewhere (the Worker's containers). */
  sessions: SessionFactory;
  /** Sinks besides the client socket, e.g. the dispatcher when the session asks for it. */
  sinks?: SinkFactory;
  /** Whether a dispatcher is configured, so `useDispatcher=true` can be honoured. */
  dispatcherAvailable?: boolean;
  /** Session dumps (DUMP_DIR): every frame of each client socket, both ways. */
  recorders?: RecorderFactory;
}

/** The refusal of a new session while the server drains (docs/PROTOCOL.md §2). */
const SHUTTING_DOWN = 'server is shutting down';

const isUpgrade = (header: string | undefined) => header?.toLowerCase() === 'websocket';

/**
 * The upgraded socket as a session writes to it. Backpressure (ClientSocket.pause) where the
 * runtime's raw socket can stop reading: Node's `ws` WebSocket, whose pause() and resume() stop
 * and restart reading its TCP socket (runtime/node/websocket.ts). Deno's and workerd's
 * WebSocket cannot (runtime/deno/websocket.ts, runtime/workerd/websocket.ts).
 */
function clientSocket(ws: WSContext<unknown>, recorder: SocketRecorder | undefined): ClientSocket {
  const client: ClientSocket = {
    send: (text) => {
      recorder?.sent(text);
      ws.send(text);
    },
    close: (code, reason) => ws.close(code, reason),
  };
  const raw = ws.raw as Partial<Record<'pause' | 'resume', unknown>> | undefined;
  if (typeof raw?.pause === 'function' && typeof raw.resume === 'function') {
    const { pause, resume } = raw as { pause(): void; resume(): void };
    client.pause = () => pause.call(raw);
    client.resume = () => resume.call(raw);
  }
  return client;
}

/** Builds the Hono app: the caption page, health, metrics, and `/transcribe` under any prefix. */
export function createApp(deps: AppDeps): Hono {
  const { config, log, metrics, sessions } = deps;
  const providerNames = [...sessions.providers];
  const parseParams = transcribeParamsParser(
    { configured: providerNames, known: config.knownProviders },
    { byDefault: config.useDispatcher, available: deps.dispatcherAvailable ?? false },
  );
  const noProvider = `no speech-to-text provider is configured: set ${config.missingProviderHint}`;
  const app = new Hono();

  // Degraded while no session could be transcribed: no provider, or every one refusing its key or out of reach.
  app.get('/health', (c) => {
    const reasons = providerNames.length === 0 ? [noProvider] : sessions.problems();
    const fields = {
      runtime: deps.runtime,
      version: VERSION,
      providers: providerNames,
      sessions: metrics.state.sessions,
      participants: metrics.state.participants,
      eventLoopLagMs: Math.round(metrics.state.loopLagMs()),
      eventLoopUtilization: Math.round(metrics.state.loopUtilization() * 100) / 100,
    };
    // Shutting down: a load balancer must send new sessions elsewhere (docs/PROTOCOL.md §6).
    if (sessions.draining) return c.json({ status: 'draining', ...fields }, 503);
    if (reasons.length) return c.json({ status: 'degraded', reasons, ...fields }, 503);
    return c.json({ status: 'ok', ...fields });
  });

  // The live-caption page (src/page/): everything inline, the socket to this same origin only.
  app.get('/', (c) =>
    c.html(CAPTIONS_PAGE, 200, {
      'Cache-Control': 'no-cache',
      'Content-Security-Policy':
        "default-src 'none'; script-src 'unsafe-inline' blob:; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'",
    }),
  );

  app.get('/metrics', (c) => c.text(metrics.registry.render(), 200, { 'Content-Type': 'text/plain; version=0.0.4' }));

  const authenticate = config.auth && createAuthenticator(config.auth);
  if (authenticate) app.use('*', transcribeAuth(authenticate, log, metrics));

  app.all('*', async (c) => {
    const path = c.req.path;
    const upgrade = isUpgrade(c.req.header('upgrade'));
    if (!path.endsWith('/transcribe')) {
      return c.text(upgrade ? `no WebSocket endpoint at ${path}; connect to /transcribe` : 'not found', 404);
    }
    if (!upgrade) return c.text('Upgrade Required: open a WebSocket to /transcribe', 426);
    if (sessions.draining) return c.text(SHUTTING_DOWN, 503);
    if (providerNames.length === 0) return c.text(noProvider, 503);
    const parsed = parseParams(new URL(c.req.url).searchParams);
    if (!parsed.ok) return c.text(parsed.reason, 400);
    const full = sessions.atCapacity?.(parsed.params);
    if (full) {
      metrics.refused.inc({ reason: full.reason });
      if (worthLogging(metrics.refused.get({ reason: full.reason }))) log.warn('session refused', { reason: full.message });
      return c.text(full.message, 503);
    }
    await sessions.prepare();
    return deps.upgradeWebSocket(c, sessionEvents(parsed.params));
  });

  function sessionEvents(params: TranscribeParams) {
    let session: SessionHandle | undefined;
    let recorder: SocketRecorder | undefined;
    return {
      onOpen: (_evt: Event, ws: WSContext<unknown>) => {
        const info = { sessionId: params.sessionId, useDispatcher: params.useDispatcher ?? config.useDispatcher };
        recorder = deps.recorders?.(info);
        const client = clientSocket(ws, recorder);
        const sinks = deps.sinks?.(info) ?? [];
        session = sessions.open(params, client, sinks);
        session.info({ application: APPLICATION, version: VERSION, runtime: deps.runtime, providersAvailable: providerNames });
        log.info('session opened', { session: params.sessionId ?? null, provider: params.provider });
      },
      onMessage: (evt: MessageEvent) => {
        const data: unknown = evt.data;
        // A binary frame is recorded as what the session makes of it: refused, no payload.
        recorder?.received(typeof data === 'string' ? data : '');
        try {
          session?.handle(typeof data === 'string' ? data : new Uint8Array(0));
        } catch (error) {
          // A bug of ours on one frame must cost that frame, not the process and every session in it.
          metrics.inputErrors.inc({ reason: 'internal_error' });
          log.error('frame handling failed', { session: params.sessionId ?? null, error: error instanceof Error ? error : String(error) });
        }
      },
      onClose: (evt: CloseEvent) => {
        recorder?.close();
        void session?.close(evt.code);
      },
      onError: () => {
        log.warn('client socket error', { session: params.sessionId ?? null });
      },
    };
  }

  return app;
}
