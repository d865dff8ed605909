/** How far (ms) an arrival may stray from real-time pace before it gets its own point. */
const TOLERANCE_MS = 20;
/** Points kept; when full, the older half is forgotten. */
const MAX_POINTS = 1024;

/**
 * Maps an offset in a provider connection's audio to when that audio reached the proxy, so a
 * transcript's `timestamp` is the arrival of the utterance's first audio.
 *
 * Audio arrives at real-time pace most of the time, so the mapping is piecewise linear: a
 * point is stored only where the pace breaks (a silence, a burst), and a stream that flows
 * steadily costs a few numbers rather than one pair per 20 ms frame.
 */
export class Timeline {
  private offsets: number[] = [];
  private arrivals: number[] = [];
  private totalMs = 0;

  /** Audio of `durationMs` that arrived at `arrivalMs` was sent. */
  record(durationMs: number, arrivalMs: number): void {
    const last = this.offsets.length - 1;
    const predicted = last < 0 ? NaN : this.arrivals[last]! + (this.totalMs - this.offsets[last]!);
    if (!(Math.abs(arrivalMs - predicted) <= TOLERANCE_MS)) {
      if (this.offsets.length === MAX_POINTS) {
        this.offsets = this.offsets.slice(MAX_POINTS / 2);
        this.arrivals = this.arrivals.slice(MAX_POINTS / 2);
      }
      this.offsets.push(this.totalMs);
      this.arrivals.push(arrivalMs);
    }
    this.totalMs += durationMs;
  }

  get durationMs(): number {
    return this.totalMs;
  }

  /** Arrival time of the audio at `offsetMs`; the oldest known when it was forgotten. */
  arrivalAt(offsetMs: number): number | undefined {
    const n = this.offsets.length;
    if (n === 0) return undefined;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.offsets[mid]! <= offsetMs) lo = mid;
      else hi = mid - 1;
    }
    const estimate = this.arrivals[lo]! + Math.max(0, offsetMs - this.offsets[lo]!);
    // Never later than the next point: audio that came in a burst arrived before it.
    return lo + 1 < n ? Math.min(estimate, this.arrivals[lo + 1]!) : estimate;
  }
}
