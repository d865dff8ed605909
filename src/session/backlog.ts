import type { SessionContext } from './ports.ts';

/**
 * How long one participant's provider may keep the client socket paused in one outage (from
 * its first queued audio). A fast sender (a file, a media server catching up after a stall) is
 * paused while the provider connects or comes back within its first backoff steps, which is
 * what pausing is for: it loses nothing and waits a second or two. Beyond, the provider is
 * down rather than slow, and the pause would only hurt: one socket carries every participant
 * of the session, so it would stall the others' audio (whose providers are fine) and the
 * client's own close, for as long as the backoff lasts (up to 30 s a try). So the socket is
 * read again and that participant's audio is buffered, up to the session's hard bound.
 */
export const MAX_HOLD_MS = 5_000;

/** One provider stream's queue, as the session's backlog sees it. */
export interface HeldAudio {
  /** Arrival of its oldest queued audio; undefined when nothing is queued. */
  oldestArrival(): number | undefined;
  /** Drops its oldest queued audio (the stream counts and reports it); returns the bytes freed. */
  dropOldest(): number;
}

/** Where the session stops and resumes reading its client (SessionShell.readFromClient). */
export interface ClientFlow {
  pause(): void;
  resume(): void;
}

/**
 * The audio one session holds for its providers while they connect or back off
 * (docs/PROTOCOL.md §4.10). Nothing is dropped at a participant's PROVIDER_QUEUE_MS: its
 * queue reaching that mark pauses the client socket (backpressure) instead, for at most
 * MAX_HOLD_MS per outage, and the socket is read again once no queue holds it. What every
 * queue of the session holds together is bounded by MAX_SESSION_BUFFER_MB: beyond it, and
 * only then, the session's oldest audio is dropped, from whichever queue holds it.
 */
export class SessionBacklog {
  private bytes = 0;
  private readonly queues = new Set<HeldAudio>();
  /** Queues at the mark, by when their provider's outage began. */
  private readonly holders = new Map<HeldAudio, number>();
  private paused = false;
  private pausedAt = 0;
  private timer: unknown;
  private timerAt = Infinity;
  private ended = false;

  constructor(
    private readonly ctx: Pick<SessionContext, 'limits' | 'timers' | 'log' | 'metrics'>,
    private readonly flow?: ClientFlow,
  ) {}

  /** Bytes held by all of the session's queues. */
  get heldBytes(): number {
    return this.bytes;
  }

  /** Whether the client socket is paused. */
  get isPaused(): boolean {
    return this.paused;
  }

  /** `queue` now holds `bytes` more; beyond the session's bound, the session's oldest audio goes. */
  add(queue: HeldAudio, bytes: number): void {
    this.queues.add(queue);
    this.bytes += bytes;
    while (this.bytes > this.ctx.limits.maxSessionBufferBytes) {
      const victim = this.oldest();
      if (!victim) break;
      const freed = victim.dropOldest();
      if (freed <= 0) break;
      this.bytes -= freed;
    }
  }

  /** `queue` let go of `bytes` (sent to its provider). */
  remove(bytes: number): void {
    this.bytes = Math.max(0, this.bytes - bytes);
  }

  /**
   * Whether `queue` holds the client socket paused: `outageSince` (when its provider's outage
   * began) while its queue is at PROVIDER_QUEUE_MS or more, undefined once it is below or sent.
   */
  hold(queue: HeldAudio, outageSince: number | undefined): void {
    if (outageSince === undefined) {
      if (!this.holders.delete(queue)) return;
    } else {
      if (this.holders.get(queue) === outageSince) return;
      this.holders.set(queue, outageSince);
    }
    this.evaluate();
  }

  /** The stream of `queue` ended; `bytes` it still held are gone with it. */
  leave(queue: HeldAudio, bytes: number): void {
    this.queues.delete(queue);
    this.remove(bytes);
    this.hold(queue, undefined);
  }

  /** Session end: the client is read again (its close handshake must get through), and no timer is left behind. */
  close(): void {
    this.ended = true;
    this.holders.clear();
    this.clearTimer();
    if (this.paused) {
      this.paused = false;
      this.flow?.resume();
    }
  }

  private oldest(): HeldAudio | undefined {
    let best: HeldAudio | undefined;
    let bestArrival = Infinity;
    for (const q of this.queues) {
      const arrival = q.oldestArrival();
      if (arrival !== undefined && arrival < bestArrival) {
        best = q;
        bestArrival = arrival;
      }
    }
    return best;
  }

  /** Pauses while a queue may still hold the socket, resumes once none does. */
  private evaluate(): void {
    if (this.ended) return;
    const now = this.ctx.timers.now();
    let next = Infinity;
    let holding = false;
    for (const since of this.holders.values()) {
      const until = since + MAX_HOLD_MS;
      if (until > now) {
        holding = true;
        next = Math.min(next, until);
      }
    }
    if (holding && !this.paused) {
      this.paused = true;
      this.pausedAt = now;
      if (this.flow) {
        this.ctx.metrics.clientPauses.inc();
        this.ctx.log.debug('client socket paused: a provider queue is full', { queueMs: this.ctx.limits.providerQueueMs });
        this.flow.pause();
      }
    } else if (!holding && this.paused) {
      this.paused = false;
      if (this.flow) {
        const pausedMs = now - this.pausedAt;
        // Held too long: that provider is down, and the session's other participants go on.
        if (this.holders.size) this.ctx.log.info('client socket read again: a provider is unavailable for too long to wait', { pausedMs });
        else this.ctx.log.debug('client socket resumed', { pausedMs });
        this.flow.resume();
      }
    }
    if (next === Infinity) this.clearTimer();
    else if (next !== this.timerAt) {
      this.clearTimer();
      this.timerAt = next;
      this.timer = this.ctx.timers.setTimeout(() => {
        this.timer = undefined;
        this.timerAt = Infinity;
        this.evaluate();
      }, next - now);
    }
  }

  private clearTimer(): void {
    if (this.timer !== undefined) this.ctx.timers.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }
}
