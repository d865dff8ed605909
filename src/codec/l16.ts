/**
 * Streaming conversion of signed 16-bit little-endian mono PCM between the rates of
 * {@link PcmRate}, with a polyphase windowed-sinc (Kaiser) resampler.
 *
 * - Input may be split anywhere (odd byte counts included): feeding slices gives exactly the
 *   same samples as feeding the whole.
 * - Output count is ceil(totalInputSamples * to / from) minus what was already returned, so the
 *   stream keeps its duration; the filter adds a small constant latency (≤ ~3 ms, its group delay).
 * - Downsampling low-passes at ~0.9 × the output Nyquist frequency (anti-aliasing); upsampling
 *   low-passes at ~0.9 × the input Nyquist frequency (anti-imaging). Stopband ≈ -80 dB.
 * - Equal rates: a plain little-endian decode (host-endianness independent).
 */

import type { PcmRate } from './pcm.ts';

/** Zero crossings of the sinc kept on each side of the centre (at the lower of the two rates). */
const ZERO_CROSSINGS = 20;
/** Cut-off as a fraction of the lower Nyquist frequency. */
const ROLLOFF = 0.9;
/** Kaiser β for ~80 dB stopband attenuation. */
const KAISER_BETA = 8;

interface Filter {
  /** Upsampling factor. */
  L: number;
  /** Downsampling factor. */
  M: number;
  /** Taps per phase. */
  K: number;
  /** L phases of K taps, each reversed so that y = Σ taps[p*K + m] * x[i0 - K + 1 + m]. */
  taps: Float64Array;
}

const filters = new Map<number, Filter>();

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Modified Bessel function of the first kind, order 0. */
function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 50; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-16) break;
  }
  return sum;
}

function designFilter(from: number, to: number): Filter {
  const key = from * 100000 + to;
  const cached = filters.get(key);
  if (cached) return cached;
  const g = gcd(from, to);
  const L = to / g;
  const M = from / g;
  const up = from * L; // rate of the (virtual) upsampled signal
  const fc = (0.5 * Math.min(from, to) * ROLLOFF) / up; // cycles per upsampled sample
  const half = Math.ceil(ZERO_CROSSINGS / (2 * fc)); // half length in upsampled samples
  const N = 2 * half + 1;
  const K = Math.ceil(Math.ceil(N / L) / 4) * 4; // padded with zeros to a multiple of 4 (unrolled loop)
  const h = new Float64Array(K * L); // zero-padded to K*L
  const i0b = besselI0(KAISER_BETA);
  for (let n = 0; n < N; n++) {
    const t = n - half;
    const sinc = t === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * t) / (Math.PI * t);
    const r = t / half;
    h[n] = sinc * (besselI0(KAISER_BETA * Math.sqrt(Math.max(0, 1 - r * r))) / i0b);
  }
  // Polyphase split, each phase normalised to unity DC gain, reversed for a forward dot product.
  const taps = new Float64Array(K * L);
  for (let p = 0; p < L; p++) {
    let sum = 0;
    for (let j = 0; j < K; j++) sum += h[p + j * L];
    for (let j = 0; j < K; j++) taps[p * K + (K - 1 - j)] = h[p + j * L] / sum;
  }
  const f = { L, M, K, taps };
  filters.set(key, f);
  return f;
}

export class L16Converter {
  readonly fromRate: PcmRate;
  readonly toRate: PcmRate;
  private readonly filter: Filter | undefined;
  /** A pending low byte when an input ended mid-sample (-1: none). */
  private carry = -1;
  /** work[0, K-1) holds the last K-1 input samples; new samples go after them. */
  private work: Float64Array;
  /** Upsampled-domain position of the next output, relative to the first new sample of a push. */
  private acc = 0;

  constructor(fromRate: PcmRate, toRate: PcmRate) {
    this.fromRate = fromRate;
    this.toRate = toRate;
    this.filter = fromRate === toRate ? undefined : designFilter(fromRate, toRate);
    this.work = new Float64Array(this.filter ? this.filter.K - 1 + 1024 : 0);
  }

  /** Forget buffered state (history, odd byte, phase). */
  reset(): void {
    this.carry = -1;
    this.acc = 0;
    this.work.fill(0);
  }

  /** Convert the next bytes; returns the samples they complete at `toRate` (a new array). */
  push(bytes: Uint8Array): Int16Array {
    const f = this.filter;
    const len = bytes.length;
    const total = len + (this.carry >= 0 ? 1 : 0);
    const count = total >> 1; // samples completed by this input
    if (!f) {
      const out = new Int16Array(count);
      let i = 0;
      let o = 0;
      if (this.carry >= 0 && len > 0) {
        out[o++] = ((this.carry | (bytes[0] << 8)) << 16) >> 16;
        i = 1;
      }
      for (; o < count; o++, i += 2) out[o] = ((bytes[i] | (bytes[i + 1] << 8)) << 16) >> 16;
      if (len > 0) this.carry = total & 1 ? bytes[len - 1] : -1;
      return out;
    }

    const { L, M, K, taps } = f;
    const hist = K - 1;
    if (this.work.length < hist + count) {
      const bigger = new Float64Array(hist + count + (count >> 1));
      bigger.set(this.work.subarray(0, hist));
      this.work = bigger;
    }
    const w = this.work;
    // Decode the new samples after the history.
    let i = 0;
    let o = hist;
    if (this.carry >= 0 && len > 0) {
      w[o++] = ((this.carry | (bytes[0] << 8)) << 16) >> 16;
      i = 1;
    }
    for (const stop = hist + count; o < stop; o++, i += 2) w[o] = ((bytes[i] | (bytes[i + 1] << 8)) << 16) >> 16;
    if (len > 0) this.carry = total & 1 ? bytes[len - 1] : -1;

    // Outputs n with upsampled position acc + n*M < count*L.
    const limit = count * L;
    let acc = this.acc;
    const nOut = acc < limit ? Math.ceil((limit - acc) / M) : 0;
    const out = new Int16Array(nOut);
    for (let n = 0; n < nOut; n++, acc += M) {
      const p = acc % L;
      const i0 = (acc - p) / L; // newest input used: w[hist + i0]
      const t = p * K;
      let y0 = 0;
      let y1 = 0;
      let y2 = 0;
      let y3 = 0;
      for (let m = 0; m < K; m += 4) {
        y0 += taps[t + m] * w[i0 + m];
        y1 += taps[t + m + 1] * w[i0 + m + 1];
        y2 += taps[t + m + 2] * w[i0 + m + 2];
        y3 += taps[t + m + 3] * w[i0 + m + 3];
      }
      const y = y0 + y1 + (y2 + y3);
      const r = Math.round(y);
      out[n] = r > 32767 ? 32767 : r < -32768 ? -32768 : r;
    }
    this.acc = acc - limit;
    // Keep the last K-1 samples as history.
    if (count > 0) w.copyWithin(0, count, count + hist);
    return out;
  }
}
