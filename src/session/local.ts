import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { OpusCodec } from '../codec/opus.ts';
import type { LocalRecognizer } from '../local/engine.ts';
import type { SocketConnector } from '../net.ts';
import { ProviderHealth } from '../providers/health.ts';
import type { Provider } from '../providers/provider.ts';
import { portableBase64, type Base64Codec } from '../util/base64.ts';
import { systemTimers, type Timers } from '../util/timers.ts';
import type { SessionContext, SessionFactory, SessionHandle } from './ports.ts';
import { DetachedSessions } from './resumption.ts';
import { LoopLag } from './loop-lag.ts';
import { Session } from './session.ts';
import { SessionShell } from './shell.ts';

const NORMAL_CLOSURE = 1000;

export interface LocalSessionsDeps {
  /**
   * The configured providers, the session limits, and how long a session whose client went
   * away waits for it to come back (RESUME_GRACE_MS; absent or 0: never).
   */
  config: Pick<Config, 'providers'> &
    Partial<Pick<Config, 'resumeGraceMs' | 'maxSessions' | 'maxEventLoopLagMs' | 'maxEventLoopUtilization'>> &
    SessionContext['limits'];
  /** The shared Opus codec (one WASM instance hosts every decoder); loaded once. */
  codec: () => Promise<OpusCodec>;
  connector: SocketConnector;
  base64?: Base64Codec;
  /** The `local` provider's recogniser, where the runtime runs one. */
  localRecognizer?: LocalRecognizer;
  log: Logger;
  metrics: Metrics;
  timers?: Timers;
  /** The busy fraction of the event loop since the previous call, where the runtime measures it (Node). */
  loopUtilization?: () => number;
}

/**
 * Sessions transcribed in this process: the WASM decoder, and a client per configured
 * provider, built here and only here. /health learns of the providers from the sessions' own
 * connection attempts.
 */
export function localSessions(deps: LocalSessionsDeps): SessionFactory & Required<Pick<SessionFactory, 'draining' | 'drain'>> {
  const base64 = deps.base64 ?? portableBase64;
  const timers = deps.timers ?? systemTimers;
  const health = new ProviderHealth();
  const providers = new Map<string, Provider>(
    deps.config.providers.map((p) => [p.name, health.watch(p.create({ connector: deps.connector, base64, timers, localRecognizer: deps.localRecognizer }))]),
  );
  const names = [...providers.keys()];
  const failover = new Set(deps.config.providers.filter((p) => p.failover).map((p) => p.name));
  let sequence = 0;
  const idPrefix = crypto.randomUUID().slice(0, 8);
  // Media saturating the loop must not also stall handshakes: past either limit, new sessions
  // and new streams are refused, before the loop falls behind where the runtime tells how busy it is.
  const lag = new LoopLag(timers, () => live.size > 0, deps.loopUtilization);
  const maxLagMs = deps.config.maxEventLoopLagMs ?? 0;
  const maxBusy = deps.loopUtilization ? (deps.config.maxEventLoopUtilization ?? 0) : 0;
  deps.metrics.state.loopLagMs = () => lag.lagMs;
  deps.metrics.state.loopLagLimitMs = maxLagMs;
  deps.metrics.state.loopUtilization = () => lag.sustainedUtilization;
  deps.metrics.state.loopUtilizationLimit = maxBusy;
  const saturated = (): string | undefined => {
    const busy = lag.sustainedUtilization;
    if (maxBusy && busy >= maxBusy) {
      return `server saturated: its event loop is ${Math.round(busy * 100)} % busy, at or over ${Math.round(maxBusy * 100)} % (MAX_EVENT_LOOP_UTILIZATION)`;
    }
    const behind = lag.sustainedMs;
    if (maxLagMs && behind > maxLagMs) {
      return `server saturated: its event loop lags ${Math.round(behind)} ms, over ${maxLagMs} (MAX_EVENT_LOOP_LAG_MS)`;
    }
    return undefined;
  };
  const ctx: SessionContext = {
    log: deps.log,
    metrics: deps.metrics,
    timers,
    limits: deps.config,
    // Unique within the process (and so the session), and never derived from the clock alone.
    newId: () => `${idPrefix}-${(++sequence).toString(36)}-${crypto.randomUUID().slice(0, 8)}`,
    saturated,
  };
  let codec: OpusCodec | undefined;

  // Every session until it has ended, attached or not: what a shutdown drains.
  const live = new Set<Session>();
  let draining = false;
  const end = (session: Session, drainMs?: number) =>
    (drainMs === undefined ? session.close() : session.drain(drainMs)).finally(() => live.delete(session));

  const graceMs = deps.config.resumeGraceMs ?? 0;
  const detached = new DetachedSessions<Session>(graceMs, ctx, (session) => void end(session));

  /** One client socket's view of its session: when it closes, the session ends or waits for the client's return. */
  const handleFor = (session: Session): SessionHandle => {
    let gone = false;
    return {
      info: (base) => session.info(base),
      handle: (data) => {
        if (!gone) session.handle(data);
      },
      close: (code) => {
        if (gone) return Promise.resolve();
        gone = true;
        // A normal closure (1000) is the client saying it is done; anything else may be a blip.
        if (code !== NORMAL_CLOSURE && graceMs > 0 && !draining && session.resumable) {
          session.detach(graceMs);
          detached.park(session);
          return Promise.resolve();
        }
        return end(session);
      },
    };
  };

  return {
    providers: names,
    // What sessions naming no provider can reach: the first and the ones they fail over to
    // (`local` beside a refused key does not make the server healthy unless it is a failover target).
    problems: () => health.problems(names.filter((name, i) => i === 0 || failover.has(name))),
    // Every session of the process counts until it has ended: those still delivering their last
    // finals, or waiting for their client to come back, hold provider streams too.
    atCapacity: () => {
      const max = deps.config.maxSessions ?? 0;
      if (max && deps.metrics.state.sessions >= max) {
        return { reason: 'max_sessions', message: `session limit of ${max} reached on this server (MAX_SESSIONS); try again later or another instance` };
      }
      const why = saturated();
      return why ? { reason: 'saturated', message: `${why}; try again later or another instance` } : undefined;
    },
    async prepare() {
      const loaded = await deps.codec();
      codec = loaded;
      deps.metrics.state.liveDecoders = () => loaded.liveDecoders;
    },
    open: (params, client, sinks) => {
      const resumed = draining ? undefined : detached.take(params);
      if (resumed) {
        // The session keeps the sinks it has (the dispatcher's queue, in order); these were never used.
        for (const sink of sinks) void sink.close();
        resumed.resume(params, client);
        return handleFor(resumed);
      }
      const session = new Session(new SessionShell(params, client, ctx), sinks, ctx, {
        // prepare() runs before every upgrade, so the codec is loaded by now.
        codec: codec!,
        provider: providers.get(params.provider)!,
        fallbacks: names.filter((name) => name !== params.provider && failover.has(name)).map((name) => providers.get(name)!),
        base64,
      });
      live.add(session);
      lag.watch();
      return handleFor(session);
    },
    get draining() {
      return draining;
    },
    async drain(timeoutMs) {
      draining = true;
      detached.clear();
      await Promise.all([...live].map((session) => end(session, timeoutMs)));
    },
  };
}
