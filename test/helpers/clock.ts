/**
 * A manual test clock implementing the product's `Timers` seam: nothing fires until the
 * test advances it, so deadlines and backoffs are asserted on the clock, from both sides,
 * never against wall time.
 *
 * Real sockets and promises still run on Node's own event loop. `settle()` lets every
 * promise chain and already-arrived I/O callback run before the test looks; tests wait for
 * real network events with the fakes' `waitFor`, then move the clock.
 */
import type { Timers } from '../../src/util/timers.ts';

interface Due {
  at: number;
  fn: () => void;
  /** Interval period; undefined for a one-shot timer. */
  every?: number;
  /** Scheduling order, so timers due at the same instant run in the order they were set. */
  order: number;
}

export class ManualClock implements Timers {
  private t: number;
  private seq = 0;
  private readonly due = new Map<number, Due>();

  /** Starts at an arbitrary epoch-like instant (never 0, which code may treat as "unset"). */
  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }

  now = (): number => this.t;
  setTimeout = (fn: () => void, ms: number): unknown => this.add(fn, ms);
  setInterval = (fn: () => void, ms: number): unknown => this.add(fn, ms, Math.max(1, ms));
  clearTimeout = (handle: unknown): void => void this.due.delete(handle as number);
  clearInterval = (handle: unknown): void => void this.due.delete(handle as number);

  /**
   * Moves time forward by `ms`, running every timer that falls due on the way, in order, each
   * at its own instant (timers set by a callback run too when they fall in the window).
   * `advance(0)` runs what is due now (zero-delay timers).
   */
  advance(ms: number): void {
    const end = this.t + ms;
    while (this.fireNext(end));
    this.t = end;
  }

  /**
   * Like `advance`, but lets promise chains and pending I/O callbacks run (`settle`) after each
   * timer, so a timer whose effect is asynchronous (a retry that opens a socket, a drain that
   * awaits) has happened before the next one is considered.
   */
  async advanceAsync(ms: number): Promise<void> {
    const end = this.t + ms;
    do await settle();
    while (this.fireNext(end));
    this.t = end;
    await settle();
  }

  /** Runs the earliest timer due by `end`, moving the clock to it; false when none is. */
  private fireNext(end: number): boolean {
    const next = this.nextDue(end);
    if (!next) return false;
    const [id, d] = next;
    this.t = Math.max(this.t, d.at);
    if (d.every === undefined) this.due.delete(id);
    else d.at += d.every;
    d.fn();
    return true;
  }

  /** Moves to `at` (absolute, on this clock), running what falls due. */
  advanceTo(at: number): void {
    this.advance(Math.max(0, at - this.t));
  }

  /** One-shot timers and intervals pending, soonest first, as delays from now. */
  pending(): { inMs: number; every?: number }[] {
    return [...this.due.values()]
      .sort((a, b) => a.at - b.at || a.order - b.order)
      .map((d) => ({ inMs: d.at - this.t, ...(d.every === undefined ? {} : { every: d.every }) }));
  }

  /** One-shot timers pending (intervals excluded), as delays from now, soonest first. */
  pendingTimeouts(): number[] {
    return this.pending()
      .filter((p) => p.every === undefined)
      .map((p) => p.inMs);
  }

  private nextDue(end: number): [number, Due] | undefined {
    let best: [number, Due] | undefined;
    for (const entry of this.due) {
      const d = entry[1];
      if (d.at > end) continue;
      if (!best || d.at < best[1].at || (d.at === best[1].at && d.order < best[1].order)) best = entry;
    }
    return best;
  }

  private add(fn: () => void, ms: number, every?: number): number {
    const id = ++this.seq;
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    this.due.set(id, { at: this.t + delay, fn, every, order: id });
    return id;
  }
}

/**
 * Lets every queued promise continuation run, and I/O callbacks that have already arrived:
 * `setImmediate` runs after the microtask queue has drained. Not a wait for time to pass.
 */
export async function settle(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
