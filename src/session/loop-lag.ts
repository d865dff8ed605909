import type { Timers } from '../util/timers.ts';

/** How often the probe looks, and how many of its last looks count. */
const PERIOD_MS = 100;
const WINDOW = 5;

/**
 * How far behind the event loop runs, from the drift of a timer: portable (Node, Deno,
 * workerd alike; perf_hooks' monitorEventLoopDelay is Node's only) and cheap (ten wake-ups a
 * second, and only while `active()`, so an idle process keeps no timer alive). Read at the
 * moment of a request, it also counts the look that is overdue now: a loop stalled for
 * seconds reads as such even before its timer fires.
 */
export class LoopLag {
  private timer: unknown;
  private expected = 0;
  private readonly recent = new Array<number>(WINDOW).fill(0);
  /** The busy fraction of each of the same looks, where the runtime can tell. */
  private readonly busy = new Array<number>(WINDOW).fill(0);
  private at = 0;

  /**
   * `utilization`, where the runtime has one (Node's event-loop utilization), returns the
   * fraction of the time since its previous call the loop spent working: it sees saturation
   * coming before the lag does, which only grows once the loop has no idle time left.
   */
  constructor(
    private readonly timers: Timers,
    private readonly active: () => boolean,
    private readonly utilization?: () => number,
  ) {}

  /** The worst lag (ms) of the last half second, the overdue look included: what /health shows. */
  get lagMs(): number {
    if (this.timer === undefined) return 0;
    return Math.max(0, this.timers.now() - this.expected, ...this.recent);
  }

  /**
   * The lag (ms) every look of the last half second had, at least: what decides saturation.
   * Media that saturate the loop delay every look; one stall (a garbage collection, a replay
   * sent at once, a synchronous call) delays one, and must not turn away the sessions that
   * reconnect just then.
   */
  get sustainedMs(): number {
    if (this.timer === undefined) return 0;
    return Math.min(...this.recent);
  }

  /** The busy fraction (0–1) every look of the last half second had, at least; 0 where the runtime cannot tell. */
  get sustainedUtilization(): number {
    if (this.timer === undefined) return 0;
    return Math.min(...this.busy);
  }

  /** Starts looking (a session opened); stops by itself once `active()` is false. */
  watch(): void {
    if (this.timer !== undefined) return;
    // From now: the idle time before the first session must not count.
    this.utilization?.();
    this.expected = this.timers.now() + PERIOD_MS;
    this.timer = this.timers.setTimeout(this.look, PERIOD_MS);
  }

  private readonly look = (): void => {
    const now = this.timers.now();
    this.busy[this.at % WINDOW] = this.utilization?.() ?? 0;
    this.recent[this.at++ % WINDOW] = Math.max(0, now - this.expected);
    if (!this.active()) {
      this.timer = undefined;
      this.recent.fill(0);
      this.busy.fill(0);
      return;
    }
    this.expected = now + PERIOD_MS;
    this.timer = this.timers.setTimeout(this.look, PERIOD_MS);
  };
}
