/**
 * What the Deepgram and Gemini fakes share: PCM brought to the 24 kHz that
 * `recognize` (test/fakes/openai-realtime.ts) works on, and an energy VAD that splits the
 * stream into utterances and reports their progress every 200 ms.
 */
import { SAMPLE_RATE, recognize } from './openai-realtime.ts';

export { recognize, SAMPLE_RATE };

const FRAME = SAMPLE_RATE / 50; // 20 ms
/** Progress is reported once per recogniser block (200 ms). */
const PROGRESS_FRAMES = 10;

/** Linear interpolation to 24 kHz; exact for 24 kHz, adequate for an energy recogniser otherwise. */
export function to24k(pcm: Int16Array, rate: number): Int16Array {
  if (rate === SAMPLE_RATE) return pcm;
  const out = new Int16Array(Math.floor((pcm.length * SAMPLE_RATE) / rate));
  const step = rate / SAMPLE_RATE;
  for (let i = 0; i < out.length; i++) {
    const x = i * step;
    const i0 = Math.floor(x);
    const a = pcm[i0] ?? 0;
    const b = pcm[i0 + 1] ?? a;
    out[i] = Math.round(a + (b - a) * (x - i0));
  }
  return out;
}

export function levelDb(samples: Int16Array): number {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return 10 * Math.log10(sum / Math.max(1, samples.length) / (32768 * 32768) + 1e-12);
}

export interface SegmenterEvents {
  start(atSample: number): void;
  /** Every 200 ms of an utterance: its audio so far. */
  progress(pcm: Int16Array, startSample: number): void;
  /** `forced`: ended by the client (flush, end of stream) rather than by silence. */
  end(pcm: Int16Array, startSample: number, forced: boolean): void;
}

/** Energy VAD over whole 20 ms frames of a 24 kHz stream. */
export class Segmenter {
  /** Samples received so far. */
  samples = 0;
  private buffer = new Int16Array(SAMPLE_RATE);
  private pending = new Int16Array(FRAME);
  private pendingLength = 0;
  private speechStart: number | undefined;
  private silentFrames = 0;
  private speechFrames = 0;

  constructor(
    private readonly events: SegmenterEvents,
    private readonly speechDb = -42,
    private readonly silenceFrames = 15,
  ) {}

  get inSpeech(): boolean {
    return this.speechStart !== undefined;
  }

  push(pcm: Int16Array): void {
    if (this.samples + pcm.length > this.buffer.length) {
      const bigger = new Int16Array(Math.max(this.buffer.length * 2, this.samples + pcm.length));
      bigger.set(this.buffer.subarray(0, this.samples));
      this.buffer = bigger;
    }
    this.buffer.set(pcm, this.samples);
    let at = 0;
    while (at < pcm.length) {
      const take = Math.min(FRAME - this.pendingLength, pcm.length - at);
      this.pending.set(pcm.subarray(at, at + take), this.pendingLength);
      this.pendingLength += take;
      at += take;
      this.samples += take;
      if (this.pendingLength < FRAME) break;
      this.pendingLength = 0;
      this.frame(levelDb(this.pending) > this.speechDb);
    }
  }

  /** Ends the utterance in progress, if any. */
  forceEnd(): void {
    if (this.speechStart !== undefined) this.finish(this.samples, true);
  }

  private frame(loud: boolean): void {
    if (this.speechStart === undefined) {
      if (!loud) return;
      this.speechStart = this.samples - FRAME;
      this.silentFrames = 0;
      this.speechFrames = 0;
      this.events.start(this.speechStart);
    }
    this.speechFrames++;
    this.silentFrames = loud ? 0 : this.silentFrames + 1;
    if (this.silentFrames >= this.silenceFrames) return this.finish(this.samples, false);
    if (this.speechFrames % PROGRESS_FRAMES === 0) this.events.progress(this.slice(this.speechStart, this.samples), this.speechStart);
  }

  private finish(end: number, forced: boolean): void {
    const start = this.speechStart!;
    this.speechStart = undefined;
    this.events.end(this.slice(start, end), start, forced);
  }

  /** Samples [from, to) of the stream. */
  slice(from: number, to: number): Int16Array {
    return this.buffer.slice(from, Math.min(to, this.samples));
  }
}

/** Concatenated PCM bytes as samples (little-endian hosts, as every CI here is). */
export function pcmFrom(bytes: Uint8Array): Int16Array {
  const even = bytes.length & ~1;
  return new Int16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + even));
}
