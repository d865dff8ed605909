/**
 * The autoscale coordinator's bookkeeping, without any runtime: which container each live
 * socket's session is on, how many sessions each container carries, when a container is
 * added and when an idle one is retired. The coordinator Durable Object
 * (src/runtime/workerd/coordinator.ts) persists its snapshot and acts on what `tick` asks.
 *
 * Sessions never move: every socket of a session goes where the session's first live socket
 * went, and a session whose last socket closed stays placed for as long as its container
 * waits for the client to resume it (`release`'s linger, RESUME_GRACE_MS); only after that
 * is it placed afresh. Containers fill up to
 * `maxSessionsPerContainer` (the fullest one with room first, so the others can go idle and
 * be retired), a new one is added when all are full, and when `maxContainers` exist the
 * least loaded takes one more.
 */

export interface AutoscaleLimits {
  maxSessionsPerContainer: number;
  /** Containers kept whatever the load: the first ones (auto-0 …) are never retired. */
  minWarm: number;
  /** Beyond this many containers, sessions overfill the least loaded instead. */
  maxContainers: number;
  /** How long a container stays without a session before it is retired. */
  idleRetireMs: number;
  /**
   * A socket whose Worker stopped renewing it for this long is forgotten: the Worker that
   * carried it died without saying the session ended.
   */
  leaseMs: number;
}

export interface Placement {
  instance: string;
  /** A container was added for it (it will cold-start). */
  added: boolean;
  /** Every container was full and no more may be added: it went over the limit. */
  overfull: boolean;
}

export interface ContainerCount {
  instance: string;
  sessions: number;
  /** Sockets, counting a session's overlapping reconnects. */
  sockets: number;
}

export interface Tick {
  /** Idle containers to stop; report each with `stopped` once done. */
  retire: string[];
  /** Sockets whose lease ran out. */
  expired: number;
  /** When `tick` has something to do next (a retirement or a lease), if ever. */
  nextAt: number | undefined;
}

interface ContainerState {
  index: number;
  /** Since when it has carried no session; undefined while it carries one. */
  idleSince: number | undefined;
}

interface Lingering {
  index: number;
  /** Until then the container keeps the session for a client that comes back. */
  until: number;
}

interface SocketState {
  sessionKey: string;
  index: number;
  renewedAt: number;
}

/** What the coordinator stores (plain JSON). */
export interface AutoscaleSnapshot {
  containers: ContainerState[];
  retiring: number[];
  sockets: Record<string, SocketState>;
  lingering?: Record<string, Lingering>;
}

export const AUTOSCALE_PREFIX = 'auto-';

export const instanceName = (index: number): string => `${AUTOSCALE_PREFIX}${index}`;

export class Autoscaler {
  private readonly containers = new Map<number, ContainerState>();
  /** Retired but not yet confirmed stopped: their names are not reused meanwhile. */
  private readonly retiring = new Set<number>();
  private readonly sockets = new Map<string, SocketState>();
  /** Sessions with no live socket whose container still holds them (by sessionKey). */
  private readonly lingering = new Map<string, Lingering>();

  constructor(
    private readonly limits: AutoscaleLimits,
    private readonly now: () => number,
    snapshot?: AutoscaleSnapshot,
  ) {
    if (snapshot) {
      for (const c of snapshot.containers) this.containers.set(c.index, { ...c });
      for (const i of snapshot.retiring) this.retiring.add(i);
      for (const [id, s] of Object.entries(snapshot.sockets)) this.sockets.set(id, { ...s });
      for (const [key, l] of Object.entries(snapshot.lingering ?? {})) this.lingering.set(key, { ...l });
    }
    this.keepMinimum();
  }

  /** The container for a new socket of `sessionKey`, which stays there until `release`. */
  place(sessionKey: string, socketId: string): Placement {
    const now = this.now();
    const known = this.sockets.get(socketId);
    if (known) {
      known.renewedAt = now;
      return { instance: instanceName(known.index), added: false, overfull: false };
    }
    const live = this.locateIndex(sessionKey);
    let placement: { index: number; added: boolean; overfull: boolean };
    if (live !== undefined) placement = { index: live, added: false, overfull: false };
    else placement = this.choose();
    this.sockets.set(socketId, { sessionKey, index: placement.index, renewedAt: now });
    this.lingering.delete(sessionKey);
    this.containers.get(placement.index)!.idleSince = undefined;
    return { instance: instanceName(placement.index), added: placement.added, overfull: placement.overfull };
  }

  /**
   * The socket is still live, on `instance`. One this coordinator had forgotten (its lease ran
   * out while the Worker could not reach it) is taken back where it is: sessions never move.
   */
  renew(socketId: string, sessionKey: string, instance: string): void {
    const now = this.now();
    const socket = this.sockets.get(socketId);
    if (socket) {
      socket.renewedAt = now;
      return;
    }
    const index = indexOf(instance);
    if (index === undefined || this.retiring.has(index)) return;
    if (!this.containers.has(index)) this.containers.set(index, { index, idleSince: undefined });
    this.containers.get(index)!.idleSince = undefined;
    this.sockets.set(socketId, { sessionKey, index, renewedAt: now });
    this.lingering.delete(sessionKey);
  }

  /**
   * The socket has closed. When it was its session's last, the session stays placed for
   * `lingerMs` (its container keeps it that long for a client that reconnects); then its
   * container may become idle.
   */
  release(socketId: string, lingerMs = 0): void {
    const socket = this.sockets.get(socketId);
    if (!socket) return;
    this.sockets.delete(socketId);
    const last = ![...this.sockets.values()].some((s) => s.sessionKey === socket.sessionKey);
    if (last && lingerMs > 0 && this.containers.has(socket.index)) {
      this.lingering.set(socket.sessionKey, { index: socket.index, until: this.now() + lingerMs });
    }
    this.markIdleIfEmpty(socket.index);
  }

  /** Where a session's live sockets are, if it has any. */
  locate(sessionKey: string): string | undefined {
    const index = this.locateIndex(sessionKey);
    return index === undefined ? undefined : instanceName(index);
  }

  /** Expires stale sockets and retires containers idle for long enough, beyond the minimum. */
  tick(): Tick {
    const now = this.now();
    let expired = 0;
    for (const [id, socket] of this.sockets) {
      if (now - socket.renewedAt < this.limits.leaseMs) continue;
      this.sockets.delete(id);
      this.markIdleIfEmpty(socket.index);
      expired++;
    }
    for (const [key, l] of this.lingering) {
      if (now < l.until) continue;
      this.lingering.delete(key);
      this.markIdleIfEmpty(l.index);
    }
    const retire: string[] = [];
    // The highest first, so that the names in use stay low and the warm ones are the first.
    const byIndex = [...this.containers.values()].sort((a, b) => b.index - a.index);
    for (const c of byIndex) {
      if (this.containers.size <= this.limits.minWarm) break;
      if (c.idleSince === undefined || now - c.idleSince < this.limits.idleRetireMs) continue;
      if (c.index < this.limits.minWarm) continue;
      this.containers.delete(c.index);
      this.retiring.add(c.index);
      retire.push(instanceName(c.index));
    }
    return { retire, expired, nextAt: this.nextAt() };
  }

  /** A retired container has been stopped: its name may be used again. */
  stopped(instance: string): void {
    const index = indexOf(instance);
    if (index !== undefined) this.retiring.delete(index);
  }

  /** Every container, lowest name first, with its load. */
  counts(): ContainerCount[] {
    return [...this.containers.keys()]
      .sort((a, b) => a - b)
      .map((index) => ({ instance: instanceName(index), sessions: this.sessionsOn(index), sockets: this.socketsOn(index) }));
  }

  snapshot(): AutoscaleSnapshot {
    return {
      containers: [...this.containers.values()].map((c) => ({ ...c })),
      retiring: [...this.retiring],
      sockets: Object.fromEntries([...this.sockets].map(([id, s]) => [id, { ...s }])),
      lingering: Object.fromEntries([...this.lingering].map(([key, l]) => [key, { ...l }])),
    };
  }

  private choose(): { index: number; added: boolean; overfull: boolean } {
    const loads = [...this.containers.keys()].map((index) => ({ index, sessions: this.sessionsOn(index) }));
    const withRoom = loads.filter((l) => l.sessions < this.limits.maxSessionsPerContainer);
    if (withRoom.length) {
      withRoom.sort((a, b) => b.sessions - a.sessions || a.index - b.index);
      return { index: withRoom[0]!.index, added: false, overfull: false };
    }
    if (this.containers.size < this.limits.maxContainers) return { index: this.add(), added: true, overfull: false };
    loads.sort((a, b) => a.sessions - b.sessions || a.index - b.index);
    return { index: loads[0]!.index, added: false, overfull: true };
  }

  /** Adds the container with the lowest free name. */
  private add(): number {
    let index = 0;
    while (this.containers.has(index) || this.retiring.has(index)) index++;
    this.containers.set(index, { index, idleSince: this.now() });
    return index;
  }

  private keepMinimum(): void {
    for (let index = 0; index < this.limits.minWarm; index++) {
      if (!this.containers.has(index)) this.containers.set(index, { index, idleSince: this.now() });
    }
  }

  private locateIndex(sessionKey: string): number | undefined {
    for (const socket of this.sockets.values()) if (socket.sessionKey === sessionKey) return socket.index;
    return this.lingering.get(sessionKey)?.index;
  }

  private sessionsOn(index: number): number {
    const keys = new Set<string>();
    for (const socket of this.sockets.values()) if (socket.index === index) keys.add(socket.sessionKey);
    for (const [key, l] of this.lingering) if (l.index === index) keys.add(key);
    return keys.size;
  }

  private socketsOn(index: number): number {
    let n = 0;
    for (const socket of this.sockets.values()) if (socket.index === index) n++;
    return n;
  }

  private markIdleIfEmpty(index: number): void {
    const container = this.containers.get(index);
    if (!container || container.idleSince !== undefined || this.sessionsOn(index) > 0) return;
    container.idleSince = this.now();
  }

  /** When `tick` has something to do next, if ever. */
  nextAt(): number | undefined {
    let next: number | undefined;
    const consider = (at: number) => (next = next === undefined ? at : Math.min(next, at));
    for (const socket of this.sockets.values()) consider(socket.renewedAt + this.limits.leaseMs);
    for (const l of this.lingering.values()) consider(l.until);
    if (this.containers.size > this.limits.minWarm) {
      for (const c of this.containers.values()) {
        if (c.idleSince !== undefined && c.index >= this.limits.minWarm) consider(c.idleSince + this.limits.idleRetireMs);
      }
    }
    return next;
  }
}

function indexOf(instance: string): number | undefined {
  if (!instance.startsWith(AUTOSCALE_PREFIX)) return undefined;
  const n = Number(instance.slice(AUTOSCALE_PREFIX.length));
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}
