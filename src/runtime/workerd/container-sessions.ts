import { getContainer } from '@cloudflare/containers';
import type { Logger } from '../../log.ts';
import type { Metrics } from '../../metrics.ts';
import { ConnectError, type OutboundSocket, type SocketHandlers } from '../../net.ts';
import type { SessionFactory } from '../../session/ports.ts';
import { SessionShell } from '../../session/shell.ts';
import { withDeadline, type Timers } from '../../util/timers.ts';
import type { ContainerReport, TranscriberContainer } from './container.ts';
import { acceptWebSocket } from './connector.ts';
import type { ContainerRoute, ContainerRouter } from './container-router.ts';
import { RelaySession, transcriberQuery } from './relay.ts';

export type ContainerNamespace = DurableObjectNamespace<TranscriberContainer>;

/**
 * Longer than the Container class's own start-up limits (about 8 s for an instance, 20 s
 * for the port), which answer with an HTTP error first; this only catches a hang.
 */
const CONNECT_TIMEOUT_MS = 45_000;

export interface ContainerSessionsOptions {
  namespace: ContainerNamespace;
  /** Which instance each session's socket goes to (ROUTING). */
  router: ContainerRouter;
  /** The providers a session may name (the containers get the same keys): validated here, built there. */
  providers: readonly string[];
  log: Logger;
  metrics: Metrics;
  timers: Timers;
  keepAliveMs: number;
  backlogBytes: number;
  drainMs: number;
  waitUntil: (promise: Promise<unknown>) => void;
}

/**
 * Sessions relayed to the container their router picks: every socket of a live session to
 * the same instance, so a reconnect finds its state. A session without a sessionId is a
 * session of its own.
 */
export function containerSessions(o: ContainerSessionsOptions): SessionFactory {
  return {
    providers: o.providers,
    // The Worker's /health asks a container about its providers.
    problems: () => [],
    async prepare() {},
    open(params, client, sinks) {
      const key = params.sessionId ?? `anonymous-${crypto.randomUUID()}`;
      const url = `http://container/transcribe?${transcriberQuery(params)}`;
      const shell = new SessionShell(params, client, { log: o.log, metrics: o.metrics });
      let route: ContainerRoute | undefined;
      let ended = false;
      let keepAlive: (() => Promise<void>) | undefined;
      const release = (r: ContainerRoute) =>
        r.release().catch((error: unknown) => shell.log.warn('could not tell the router the session ended', { instance: r.instance, error }));
      return new RelaySession(shell, sinks, o, {
        connect: async (handlers) => {
          let placed: ContainerRoute;
          try {
            placed = await o.router.route(key);
          } catch (error) {
            throw new ConnectError(`no container could be chosen: ${error instanceof Error ? error.message : String(error)}`);
          }
          // The client left while the router answered: its place is given back at once (the
          // relay closes the socket it gets, as for any client gone during the connect).
          if (ended) o.waitUntil(release(placed));
          else route = placed;
          const stub = getContainer(o.namespace, placed.instance);
          keepAlive = () => stub.keepAlive();
          shell.log.info('session routed', { instance: placed.instance });
          return connectContainer(stub, url, handlers, o.timers);
        },
        keepAlive: { everyMs: o.keepAliveMs, renew: async () => void (await Promise.all([keepAlive?.(), route?.renew()])) },
        backlogBytes: o.backlogBytes,
        drainMs: o.drainMs,
        waitUntil: o.waitUntil,
        finished: async () => {
          ended = true;
          if (route) await release(route);
        },
      });
    },
  };
}

/**
 * A WebSocket to the container through its Durable Object, which starts it when needed and
 * proxies the socket to the server inside.
 */
async function connectContainer(
  stub: DurableObjectStub<TranscriberContainer>,
  url: string,
  handlers: SocketHandlers,
  timers: Timers,
): Promise<OutboundSocket> {
  const response = await withDeadline(stub.fetch(url, { headers: { Upgrade: 'websocket' } }), CONNECT_TIMEOUT_MS, timers, () => {
    throw new ConnectError(`the container did not answer within ${CONNECT_TIMEOUT_MS / 1000} s`);
  });
  const ws = response.webSocket;
  if (response.status !== 101 || ws === null) {
    // The Container class explains itself in the body ("no Container instance available…").
    const body = (await response.text().catch(() => '')).slice(0, 300);
    throw new ConnectError(`the container refused the WebSocket with HTTP ${response.status}: ${body}`, response.status);
  }
  return acceptWebSocket(ws, handlers);
}

/** /health's look at one instance, bounded in time: a cold start can take longer than a probe waits. */
export async function inspectContainer(
  namespace: ContainerNamespace,
  instance: string,
  start: boolean,
  timeoutMs: number,
  timers: Timers,
): Promise<ContainerReport | { answers: false; error: string }> {
  const inspected = getContainer(namespace, instance)
    .inspect(start)
    .catch((error: unknown) => ({ answers: false as const, error: error instanceof Error ? error.message : String(error) }));
  return withDeadline(inspected, timeoutMs, timers, () => ({
    answers: false as const,
    error: `no answer within ${timeoutMs / 1000} s (a container may still be starting)`,
  }));
}
