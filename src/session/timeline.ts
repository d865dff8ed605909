/**
 * Maps an offset in a provider connection's audio to when that audio reached the proxy, so a
 * transcript's `timestamp` is the arrival of the utterance's first audio. A ring of
 * (offset, arrival) pairs, one per frame; older frames are forgotten.
 */
export class Timeline {
  private readonly offsets: Float64Array;
  private readonly arrivals: Float64Array;
  private start = 0;
  private size = 0;
  private totalMs = 0;

  constructor(private readonly capacity = 8192) {
    this.offsets = new Float64Array(capacity);
    this.arrivals = new Float64Array(capacity);
  }

  /** Audio of `durationMs` that arrived at `arrivalMs` was sent. */
  record(durationMs: number, arrivalMs: number): void {
    const i = (this.start + this.size) % this.capacity;
    this.offsets[i] = this.totalMs;
    this.arrivals[i] = arrivalMs;
    if (this.size < this.capacity) this.size++;
    else this.start = (this.start + 1) % this.capacity;
    this.totalMs += durationMs;
  }

  get durationMs(): number {
    return this.totalMs;
  }

  /** Arrival time of the audio at `offsetMs`; the oldest known when it was forgotten. */
  arrivalAt(offsetMs: number): number | undefined {
    if (this.size === 0) return undefined;
    let lo = 0;
    let hi = this.size - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.offsets[(this.start + mid) % this.capacity]! <= offsetMs) lo = mid;
      else hi = mid - 1;
    }
    return this.arrivals[(this.start + lo) % this.capacity];
  }
}
