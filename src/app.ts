import { Hono } from 'hono';
import type { UpgradeWebSocket, WSContext } from 'hono/ws';
import type { Config } from './config.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { Runtime } from './protocol/outbound.ts';
import { transcribeParamsParser, type TranscribeParams } from './protocol/query.ts';
import type { SessionFactory, SessionHandle, SinkFactory } from './session/ports.ts';

export const APPLICATION = 'opus-transcriber-proxy';
export const VERSION = '0.1.0';

/** The routes' dependencies; a runtime entry builds them (src/runtime/). */
export interface AppDeps {
  config: Pick<Config, 'useDispatcher' | 'knownProviders' | 'missingProviderHint'>;
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
}

const isUpgrade = (header: string | undefined) => header?.toLowerCase() === 'websocket';

/** Builds the Hono app: health, metrics, and `/transcribe` under any prefix. */
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
    };
    if (reasons.length) return c.json({ status: 'degraded', reasons, ...fields }, 503);
    return c.json({ status: 'ok', ...fields });
  });

  app.get('/metrics', (c) => c.text(metrics.registry.render(), 200, { 'Content-Type': 'text/plain; version=0.0.4' }));

  app.all('*', async (c) => {
    const path = c.req.path;
    const upgrade = isUpgrade(c.req.header('upgrade'));
    if (!path.endsWith('/transcribe')) {
      return c.text(upgrade ? `no WebSocket endpoint at ${path}; connect to /transcribe` : 'not found', 404);
    }
    if (!upgrade) return c.text('Upgrade Required: open a WebSocket to /transcribe', 426);
    if (providerNames.length === 0) return c.text(noProvider, 503);
    const parsed = parseParams(new URL(c.req.url).searchParams);
    if (!parsed.ok) return c.text(parsed.reason, 400);
    await sessions.prepare();
    return deps.upgradeWebSocket(c, sessionEvents(parsed.params));
  });

  function sessionEvents(params: TranscribeParams) {
    let session: SessionHandle | undefined;
    return {
      onOpen: (_evt: Event, ws: WSContext<unknown>) => {
        const client = { send: (text: string) => ws.send(text), close: (code?: number, reason?: string) => ws.close(code, reason) };
        const sinks = deps.sinks?.({ sessionId: params.sessionId, useDispatcher: params.useDispatcher ?? config.useDispatcher }) ?? [];
        session = sessions.open(params, client, sinks);
        session.info({ application: APPLICATION, version: VERSION, runtime: deps.runtime, providersAvailable: providerNames });
        log.info('session opened', { session: params.sessionId ?? null, provider: params.provider });
      },
      onMessage: (evt: MessageEvent) => {
        const data: unknown = evt.data;
        session?.handle(typeof data === 'string' ? data : new Uint8Array(0));
      },
      onClose: () => {
        void session?.close();
      },
      onError: () => {
        log.warn('client socket error', { session: params.sessionId ?? null });
      },
    };
  }

  return app;
}
