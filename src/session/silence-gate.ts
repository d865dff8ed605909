/**
 * What reaches a billed PCM provider: voice, with a little before it (pre-roll, so that a soft
 * onset the detector hears a frame late is not clipped) and after it (hang-over, so that the
 * pauses inside a sentence and its last syllable go too, and a provider's own turn detection
 * hears the silence that ends the turn). Participants who are unmuted but silent still send
 * packets (DTX, comfort noise, room noise): without the gate every one of them is billed.
 *
 * The detector is deliberately cheap: a DTX packet (1–2 bytes) is silence without decoding;
 * otherwise the frame's energy against the larger of a fixed threshold and a tracked noise
 * floor. A neural VAD (Silero on npm) needs onnxruntime-node (~300 MB, native) for a
 * decision this gate takes with a loop over 480 samples; the hang-over absorbs the energy
 * detector's misses inside words.
 */
export interface SilenceGateSettings {
  /** dBFS a frame must exceed to count as voice (also never less than the noise floor + NOISE_MARGIN_DB). */
  thresholdDb: number;
  preRollMs: number;
  hangOverMs: number;
}

/** Voice must stand this far above the tracked background. */
const NOISE_MARGIN_DB = 10;
/** The noise floor follows a quieter background at once, a louder one at this pace (dB per second). */
const NOISE_RISE_DB_PER_S = 1;

export interface GateOutput {
  /**
   * Audio to send; `pcm` is only valid during the call. `position`: its first sample's, as
   * given to `push` (the pre-roll goes later than it came), when known for all of it.
   */
  voice(pcm: Int16Array, arrival: number, position?: number): void;
  /** The hang-over ran out: the utterance's audio has all been passed on. */
  ended(): void;
}

export class SilenceGate {
  /** The last `preRollMs` of gated audio, circular. */
  private readonly ring: Int16Array;
  private ringAt = 0;
  private ringFilled = 0;
  /** Position just after the ring's newest sample; undefined when the ring's positions are not one contiguous run. */
  private ringEnd: number | undefined;
  private open = false;
  /** Audio (ms) since the last voiced frame, while open. */
  private quietMs = 0;
  private noiseDb: number;

  constructor(
    private readonly s: SilenceGateSettings,
    readonly sampleRate: number,
    private readonly out: GateOutput,
  ) {
    this.ring = new Int16Array(Math.round((s.preRollMs * sampleRate) / 1000));
    this.noiseDb = s.thresholdDb - NOISE_MARGIN_DB;
  }

  /** The most the pre-roll holds: positions older than the newest this many are never sent later. */
  get preRollSamples(): number {
    return this.ring.length;
  }

  /** Whether audio is passing (voice, or its hang-over). */
  get passing(): boolean {
    return this.open;
  }

  /**
   * A frame known to be silence without decoding it (a DTX packet). While closed it costs
   * nothing and clears the pre-roll (what came before it is not this utterance's onset);
   * while open it counts towards the hang-over and is passed on as `pcm` when given.
   */
  silence(durationMs: number, arrival: number, pcm?: () => Int16Array): void {
    if (!this.open) {
      this.ringFilled = 0;
      return;
    }
    if (pcm) this.out.voice(pcm(), arrival);
    this.quiet(durationMs);
  }

  /** One decoded frame (any length); `position`, its first sample's (see `voice`). */
  push(pcm: Int16Array, arrival: number, position?: number): void {
    const durationMs = (pcm.length * 1000) / this.sampleRate;
    const db = levelDb(pcm);
    const voiced = db > Math.max(this.s.thresholdDb, this.noiseDb + NOISE_MARGIN_DB);
    if (!voiced) this.trackNoise(db, durationMs);
    if (voiced) {
      if (!this.open) {
        this.open = true;
        this.releasePreRoll(arrival);
      }
      this.quietMs = 0;
      this.out.voice(pcm, arrival, position);
      return;
    }
    if (this.open) {
      this.out.voice(pcm, arrival, position);
      this.quiet(durationMs);
      return;
    }
    this.keep(pcm, position);
  }

  private quiet(durationMs: number): void {
    this.quietMs += durationMs;
    if (this.quietMs < this.s.hangOverMs) return;
    this.open = false;
    this.quietMs = 0;
    this.ringFilled = 0;
    this.out.ended();
  }

  private trackNoise(db: number, durationMs: number): void {
    if (db < this.noiseDb) this.noiseDb = db;
    else this.noiseDb = Math.min(db, this.noiseDb + (NOISE_RISE_DB_PER_S * durationMs) / 1000);
  }

  private keep(pcm: Int16Array, position: number | undefined): void {
    const ring = this.ring;
    if (ring.length === 0) return;
    const contiguous = position !== undefined && (this.ringFilled === 0 || this.ringEnd === position);
    this.ringEnd = contiguous ? position + pcm.length : undefined;
    let from = pcm.length > ring.length ? pcm.length - ring.length : 0;
    while (from < pcm.length) {
      const n = Math.min(pcm.length - from, ring.length - this.ringAt);
      ring.set(pcm.subarray(from, from + n), this.ringAt);
      from += n;
      this.ringAt = (this.ringAt + n) % ring.length;
      this.ringFilled = Math.min(ring.length, this.ringFilled + n);
    }
  }

  /** The pre-roll, oldest first, as (at most) two views of the ring: no copy here. */
  private releasePreRoll(arrival: number): void {
    const filled = this.ringFilled;
    this.ringFilled = 0;
    if (filled === 0) return;
    const start = (this.ringAt - filled + this.ring.length) % this.ring.length;
    const first = Math.min(filled, this.ring.length - start);
    const position = this.ringEnd === undefined ? undefined : this.ringEnd - filled;
    this.out.voice(this.ring.subarray(start, start + first), arrival, position);
    if (filled > first) this.out.voice(this.ring.subarray(0, filled - first), arrival, position === undefined ? undefined : position + first);
  }
}

/** Mean energy of `pcm` in dBFS. */
export function levelDb(pcm: Int16Array): number {
  let sum = 0;
  for (let i = 0; i < pcm.length; i++) {
    const s = pcm[i]!;
    sum += s * s;
  }
  return 10 * Math.log10(sum / Math.max(1, pcm.length) / 1073741824 + 1e-12);
}
