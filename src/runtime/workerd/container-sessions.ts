import { getContainer } from '@cloudflare/containers';
import type { Logger } from '../../log.ts';
import type { Metrics } from '../../metrics.ts';
import { ConnectError, type OutboundSocket, type SocketHandlers } from '../../net.ts';
import type { SessionFactory } from '../../session/ports.ts';
import { SessionShell } from '../../session/shell.ts';
import { withDeadline, type Timers } from '../../util/timers.ts';
import type { ContainerReport, TranscriberContainer } from './container.ts';
import { acceptWebSocket } from './connector.ts';
import { RelaySession, transcriberQuery } from './relay.ts';

export type ContainerNamespace = DurableObjectNamespace<TranscriberContainer>;

/**
 * Longer than the Container class's own start-up limits (about 8 s for an instance, 20 s
 * for the port), which answer with an HTTP error first; this only catches a hang.
 */
const CONNECT_TIMEOUT_MS = 45_000;

/** The instance /health starts and asks when no sessionId is given; no sessionId can take this name. */
export const HEALTH_INSTANCE = '#health';

export interface ContainerSessionsOptions {
  namespace: ContainerNamespace;
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
 * Sessions relayed to their container: one instance per sessionId, so a reconnect finds
 * the same one. A session without a sessionId gets an instance of its own.
 */
export function containerSessions(o: ContainerSessionsOptions): SessionFactory {
  return {
    providers: o.providers,
    // The Worker's /health asks a container about its providers.
    problems: () => [],
    async prepare() {},
    open(params, client, sinks) {
      const instance = params.sessionId ?? `anonymous-${crypto.randomUUID()}`;
      const stub = getContainer(o.namespace, instance);
      const url = `http://container/transcribe?${transcriberQuery(params)}`;
      const shell = new SessionShell(params, client, { log: o.log.child({ container: stub.id.toString() }), metrics: o.metrics });
      return new RelaySession(shell, sinks, o, {
        connect: (handlers) => connectContainer(stub, url, handlers, o.timers),
        keepAlive: { everyMs: o.keepAliveMs, renew: () => stub.keepAlive() },
        backlogBytes: o.backlogBytes,
        drainMs: o.drainMs,
        waitUntil: o.waitUntil,
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
