/**
 * Which container instance a session's socket goes to (ROUTING): its own (`session`), a pool
 * member chosen by hashing its sessionId (`pool`), or the one the coordinator places it on
 * (`autoscale`). Every socket of a live session reaches the same instance, so a reconnect
 * finds the session's state.
 */
import { getContainer } from '@cloudflare/containers';
import type { ContainerCoordinator } from './coordinator.ts';
import { COORDINATOR_NAME } from './coordinator.ts';
import { POOL_PREFIX } from './container.ts';
import type { ContainerNamespace } from './container-sessions.ts';
import type { Routing } from './container-settings.ts';
import { instanceName } from './routing/autoscale.ts';
import { rendezvous } from './routing/hash.ts';

export type CoordinatorNamespace = DurableObjectNamespace<ContainerCoordinator>;

/** One socket's place; released when the socket's session ends on this Worker. */
export interface ContainerRoute {
  instance: string;
  /** The socket is still live (with the container's keep-alive). */
  renew(): Promise<void>;
  release(): Promise<void>;
}

export interface ContainerRouter {
  route(sessionKey: string): Promise<ContainerRoute>;
  /** Where a session's socket would go (session, pool) or is (autoscale); undefined if nowhere yet. */
  locate(sessionKey: string): Promise<string | undefined>;
  /** The instance /health starts and asks when no sessionId is given. */
  readonly probe: string;
  /** What /health shows of the routing. */
  describe(): Promise<Record<string, unknown>>;
  /** Containers to keep started whatever the load (the pool). */
  readonly warm: readonly string[];
}

/** The instance /health starts and asks in `session` mode; no sessionId can take this name. */
export const HEALTH_INSTANCE = '#health';

const fixed = (instance: string): ContainerRoute => ({ instance, renew: async () => {}, release: async () => {} });

/**
 * `lingerMs`: how long a container keeps a session whose client went away (RESUME_GRACE_MS);
 * the coordinator keeps it placed there as long, so the client's reconnect finds it.
 */
export function containerRouter(routing: Routing, o: { coordinator?: CoordinatorNamespace; lingerMs: number }): ContainerRouter {
  switch (routing.mode) {
    case 'session':
      return {
        route: async (key) => fixed(key),
        locate: async (key) => key,
        probe: HEALTH_INSTANCE,
        describe: async () => ({ mode: 'session' }),
        warm: [],
      };
    case 'pool': {
      const member = (key: string) => `${POOL_PREFIX}${rendezvous(key, routing.size)}`;
      return {
        route: async (key) => fixed(member(key)),
        locate: async (key) => member(key),
        probe: `${POOL_PREFIX}0`,
        describe: async () => ({ mode: 'pool', size: routing.size }),
        warm: Array.from({ length: routing.size }, (_, i) => `${POOL_PREFIX}${i}`),
      };
    }
    case 'autoscale': {
      const namespace = o.coordinator!;
      const coordinator = () => namespace.get(namespace.idFromName(COORDINATOR_NAME));
      return {
        async route(key) {
          const socketId = crypto.randomUUID();
          const { instance } = await coordinator().place(key, socketId);
          return {
            instance,
            renew: () => coordinator().renew(socketId, key, instance),
            release: () => coordinator().release(socketId, o.lingerMs),
          };
        },
        locate: async (key) => (await coordinator().locate(key)) ?? undefined,
        probe: instanceName(0),
        describe: async () => ({ mode: 'autoscale', limits: routing.limits, containers: await coordinator().counts() }),
        warm: [],
      };
    }
  }
}

/** Starts the pool's containers (in the background): `pool` promises warm ones. */
export async function warmContainers(namespace: ContainerNamespace, instances: readonly string[]): Promise<void> {
  await Promise.all(instances.map((instance) => getContainer(namespace, instance).warm()));
}
