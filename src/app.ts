import { Hono } from 'hono';
import type { UpgradeWebSocket, WSContext } from 'hono/ws';
import type { Config } from './config.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import { ProviderHealth } from './providers/health.ts';
import type { Provider } from './providers/provider.ts';
import type { OpusCodec } from './codec/opus.ts';
import type { SocketConnector } from './net.ts';
import type { InfoMessage, Runtime } from './protocol/outbound.ts';
import { transcribeParamsParser, type TranscribeParams } from './protocol/query.ts';
import { Session } from './session/session.ts';
import { createClientSink, type ClientSocket } from './sinks/client.ts';
import type { TranscriptSink } from './sinks/sink.ts';
import { portableBase64, type Base64Codec } from './util/base64.ts';
import { systemTimers, type Timers } from './util/timers.ts';

export const APPLICATION = 'opus-transcriber-proxy';
export const VERSION = '0.1.0';

export interface SessionInfo {
  sessionId: string | undefined;
  /** The query parameter when given, else the environment's USE_DISPATCHER. */
  useDispatcher: boolean;
}

/** Everything that differs between Node, Deno and workerd, injected by `src/runtime/`. */
export interface AppDeps {
  config: Config;
  runtime: Runtime;
  upgradeWebSocket: UpgradeWebSocket<unknown>;
  /** The shared Opus codec (one WASM instance hosts every decoder); loaded once. */
  codec: () => Promise<OpusCodec>;
  connector: SocketConnector;
  log: Logger;
  metrics: Metrics;
  base64?: Base64Codec;
  timers?: Timers;
  /** Whether a dispatcher is configured, so `useDispatcher=true` can be honoured. */
  dispatcherAvailable?: boolean;
  /** Sinks besides the client socket, e.g. the dispatcher when the session asks for it. */
  sinks?: (session: SessionInfo) => TranscriptSink[];
  /** Where sessions run; by default here, with the configured providers. */
  backend?: SessionBackend;
}

/** The session behind one client socket, as the app drives it. */
export interface SessionHandle {
  /** Sends the first message on the socket. */
  info(base: Omit<InfoMessage, 'event' | 'provider' | 'sessionId'>): void;
  handle(data: string | ArrayBuffer | Uint8Array): void;
  close(): Promise<void>;
}

/**
 * Runs the sessions the app has validated and upgraded: a local Session (decoder and
 * provider in this process), or a relay to a transcriber elsewhere (the Cloudflare Worker
 * in front of its container). Validation, refusals and routes stay the app's.
 */
export interface SessionBackend {
  /** Before the upgrade, so that a failure is an HTTP error rather than a socket closed at once. */
  prepare(): Promise<void>;
  /** `sinks` are the ones besides the client socket; the backend owns what reaches `client`. */
  open(params: TranscribeParams, client: ClientSocket, sinks: TranscriptSink[]): SessionHandle;
}

const isUpgrade = (header: string | undefined) => header?.toLowerCase() === 'websocket';

/** Builds the Hono app: health, metrics, and `/transcribe` under any prefix. */
export function createApp(deps: AppDeps): Hono {
  const { config, log, metrics } = deps;
  const base64 = deps.base64 ?? portableBase64;
  const timers = deps.timers ?? systemTimers;
  const providerDeps = { connector: deps.connector, base64, timers };
  const health = new ProviderHealth();
  const providers = new Map<string, Provider>(config.providers.map((p) => [p.name, health.watch(p.create(providerDeps))]));
  const providerNames = [...providers.keys()];
  const parseParams = transcribeParamsParser(
    { configured: providerNames, known: config.knownProviders },
    { byDefault: config.useDispatcher, available: deps.dispatcherAvailable ?? false },
  );
  const noProvider = `no speech-to-text provider is configured: set ${config.missingProviderHint}`;
  let sequence = 0;
  const idPrefix = crypto.randomUUID().slice(0, 8);
  // Unique within the process (and so the session), and never derived from the clock alone.
  const newId = () => `${idPrefix}-${(++sequence).toString(36)}-${crypto.randomUUID().slice(0, 8)}`;

  const backend = deps.backend ?? localBackend();
  const app = new Hono();

  // Degraded while no session could be transcribed: no provider, or every one refusing its key or out of reach.
  app.get('/health', (c) => {
    const reasons = providers.size === 0 ? [noProvider] : health.problems(providerNames);
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
    if (providers.size === 0) return c.text(noProvider, 503);
    const parsed = parseParams(new URL(c.req.url).searchParams);
    if (!parsed.ok) return c.text(parsed.reason, 400);
    await backend.prepare();
    return deps.upgradeWebSocket(c, sessionEvents(parsed.params));
  });

  function localBackend(): SessionBackend {
    let codec: OpusCodec | undefined;
    return {
      async prepare() {
        codec = await deps.codec();
        const loaded = codec;
        metrics.state.liveDecoders = () => loaded.liveDecoders;
      },
      open: (params, client, sinks) =>
        new Session(params, client, [createClientSink(client, params), ...sinks], {
          // prepare() runs before every upgrade, so the codec is loaded by now.
          codec: codec!,
          provider: providers.get(params.provider)!,
          base64,
          log,
          metrics,
          timers,
          forceCommitMs: config.forceCommitMs,
          maxMessageBytes: config.maxMessageBytes,
          maxParticipants: config.maxParticipants,
          queueLimitMs: config.providerQueueMs,
          finishTimeoutMs: config.finishTimeoutMs,
          newId,
        }),
    };
  }

  function sessionEvents(params: TranscribeParams) {
    let session: SessionHandle | undefined;
    return {
      onOpen: (_evt: Event, ws: WSContext<unknown>) => {
        const client = { send: (text: string) => ws.send(text), close: (code?: number, reason?: string) => ws.close(code, reason) };
        const sinks = deps.sinks?.({ sessionId: params.sessionId, useDispatcher: params.useDispatcher ?? config.useDispatcher }) ?? [];
        session = backend.open(params, client, sinks);
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
