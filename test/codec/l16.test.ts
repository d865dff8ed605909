import { describe, expect, it } from 'vitest';
import { L16Converter } from '../../src/codec/l16.ts';
import type { PcmRate } from '../../src/codec/pcm.ts';

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A tone as little-endian signed 16-bit bytes (written explicitly little-endian). */
function tone(freq: number, rate: number, seconds: number, amp: number): Uint8Array {
  const n = Math.round(rate * seconds);
  const bytes = new Uint8Array(n * 2);
  const dv = new DataView(bytes.buffer);
  for (let i = 0; i < n; i++) dv.setInt16(i * 2, Math.round(amp * Math.sin((2 * Math.PI * freq * i) / rate)), true);
  return bytes;
}

/** Least-squares fit of a sinusoid at `freq`: amplitude and the RMS of what is left. */
function fit(x: Int16Array, freq: number, rate: number): { amp: number; residualRms: number } {
  let cc = 0;
  let ss = 0;
  let cs = 0;
  let xc = 0;
  let xs = 0;
  for (let i = 0; i < x.length; i++) {
    const c = Math.cos((2 * Math.PI * freq * i) / rate);
    const s = Math.sin((2 * Math.PI * freq * i) / rate);
    cc += c * c;
    ss += s * s;
    cs += c * s;
    xc += x[i] * c;
    xs += x[i] * s;
  }
  const det = cc * ss - cs * cs;
  const a = (xc * ss - xs * cs) / det;
  const b = (xs * cc - xc * cs) / det;
  let r = 0;
  for (let i = 0; i < x.length; i++) {
    const e = x[i] - a * Math.cos((2 * Math.PI * freq * i) / rate) - b * Math.sin((2 * Math.PI * freq * i) / rate);
    r += e * e;
  }
  return { amp: Math.hypot(a, b), residualRms: Math.sqrt(r / x.length) };
}

function zeroCrossings(x: Int16Array): number {
  let n = 0;
  for (let i = 1; i < x.length; i++) if (x[i - 1] < 0 !== x[i] < 0) n++;
  return n;
}

function rms(x: Int16Array): number {
  let s = 0;
  for (const v of x) s += v * v;
  return Math.sqrt(s / x.length);
}

function concat(parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function feed(c: L16Converter, bytes: Uint8Array, size: () => number): Int16Array {
  const parts: Int16Array[] = [];
  for (let off = 0; off < bytes.length; ) {
    const n = Math.min(bytes.length - off, size());
    parts.push(c.push(bytes.subarray(off, off + n)));
    off += n;
  }
  return concat(parts);
}

/** Index of the first difference (-1: identical); much faster than toEqual on long typed arrays. */
function firstDiff(a: Int16Array, b: Int16Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/**
 * The documented filter evaluated directly, sample by sample, in floating point: a Kaiser
 * (β = 8) windowed sinc with 20 zero crossings each side at the lower rate, cut-off 0.9 × the
 * lower Nyquist frequency, each polyphase phase scaled to unity DC gain; output n sits at
 * input time n × from / to. No polyphase tables, no streaming, no unrolling: an independent
 * account of what `L16Converter` must output.
 */
function directResample(x: Int16Array, from: number, to: number): Int16Array {
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const g = gcd(from, to);
  const L = to / g;
  const M = from / g;
  const fc = (0.45 * Math.min(from, to)) / (from * L);
  const half = Math.ceil(10 / fc);
  const i0 = (v: number) => {
    let sum = 0;
    let term = 1;
    for (let k = 0; k < 200 && term > 1e-30; k++) {
      sum += term;
      term *= (v * v) / 4 / ((k + 1) * (k + 1));
    }
    return sum;
  };
  const h = (idx: number) => {
    if (idx < 0 || idx > 2 * half) return 0;
    const t = idx - half;
    const sinc = t === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * t) / (Math.PI * t);
    return (sinc * i0(8 * Math.sqrt(1 - (t / half) ** 2))) / i0(8);
  };
  const out = new Int16Array(Math.ceil((x.length * to) / from));
  for (let n = 0; n < out.length; n++) {
    const pos = n * M; // in upsampled samples
    const p = pos % L;
    let norm = 0;
    for (let idx = p; idx <= 2 * half; idx += L) norm += h(idx);
    let y = 0;
    for (let k = Math.floor(pos / L); k >= 0 && pos - k * L <= 2 * half; k--) y += x[k]! * h(pos - k * L);
    out[n] = Math.max(-32768, Math.min(32767, Math.round(y / norm)));
  }
  return out;
}

const RATES: PcmRate[] = [8000, 12000, 16000, 24000, 48000];
const AMP = 10000;

describe('L16Converter', () => {
  it.each([
    [48000, 16000],
    [16000, 24000],
    [8000, 24000],
    [24000, 24000],
    [12000, 16000],
    [16000, 8000],
    [8000, 48000],
    [48000, 8000],
  ] as Array<[PcmRate, PcmRate]>)('440 Hz sine %i → %i: right length, frequency and amplitude, clean', (from, to) => {
    const out = new L16Converter(from, to).push(tone(440, from, 1, AMP));
    expect(out.length).toBe(to); // 1 s in, 1 s out
    // Skip the filter's start-up (≤ 3 ms); analyse 0.9 s of steady state.
    const steady = out.subarray(Math.round(to * 0.05), Math.round(to * 0.95));
    const seconds = steady.length / to;
    expect(Math.abs(zeroCrossings(steady) - 2 * 440 * seconds)).toBeLessThanOrEqual(2);
    const { amp, residualRms } = fit(steady, 440, to);
    expect(Math.abs(amp - AMP) / AMP).toBeLessThan(0.005);
    // No aliases, images or distortion: what is left is rounding noise (-60 dB below the tone).
    expect(residualRms).toBeLessThan(AMP * 1e-3);
  });

  it('every rate pair outputs what the documented filter, evaluated directly, gives (±1 for rounding)', () => {
    const r = mulberry32(7);
    for (const from of RATES) {
      const n = from / 20; // 50 ms
      const bytes = new Uint8Array(n * 2);
      const dv = new DataView(bytes.buffer);
      // Loud noise with full-scale runs, so that clipping is exercised too.
      for (let i = 0; i < n; i++) dv.setInt16(i * 2, i % 97 < 6 ? 32767 : Math.round((r() - 0.5) * 50000), true);
      const x = new Int16Array(n);
      for (let i = 0; i < n; i++) x[i] = dv.getInt16(i * 2, true);
      for (const to of RATES) {
        if (to === from) continue;
        const ours = new L16Converter(from, to).push(bytes);
        const expected = directResample(x, from, to);
        expect(ours.length, `${from} → ${to}`).toBe(expected.length);
        let off = 0;
        for (let i = 0; i < ours.length; i++) {
          expect(Math.abs(ours[i]! - expected[i]!), `${from} → ${to}, sample ${i}`).toBeLessThanOrEqual(1);
          if (ours[i] !== expected[i]) off++;
        }
        // Summation order only moves a sample lying right on a rounding boundary.
        expect(off, `${from} → ${to}: samples one off`).toBeLessThanOrEqual(Math.ceil(ours.length / 200));
      }
    }
  });

  it('24 → 24 is an exact little-endian decode', () => {
    const bytes = tone(440, 24000, 0.1, AMP);
    const out = new L16Converter(24000, 24000).push(bytes);
    const dv = new DataView(bytes.buffer);
    expect(Array.from(out)).toEqual(Array.from({ length: bytes.length / 2 }, (_, i) => dv.getInt16(i * 2, true)));
    expect(Array.from(new L16Converter(16000, 16000).push(new Uint8Array([0x34, 0x12, 0xff, 0xff, 0x00, 0x80, 0xff, 0x7f])))).toEqual([
      0x1234, -1, -32768, 32767,
    ]);
  });

  it('reads unaligned input (odd byteOffset) correctly', () => {
    const backing = new Uint8Array(11);
    backing.set([0x34, 0x12, 0xfe, 0xff], 1);
    expect(Array.from(new L16Converter(8000, 8000).push(backing.subarray(1, 5)))).toEqual([0x1234, -2]);
  });

  it('downsampling 48 → 16 kHz strongly attenuates a 10 kHz tone (anti-aliasing)', () => {
    const out = new L16Converter(48000, 16000).push(tone(10000, 48000, 1, AMP));
    expect(out.length).toBe(16000);
    const steady = out.subarray(800);
    // Without a low-pass it would alias to 6 kHz at full amplitude.
    expect(rms(steady)).toBeLessThan((AMP / Math.SQRT2) * 1e-3); // < -60 dB
    expect(fit(steady, 6000, 16000).amp).toBeLessThan(AMP * 1e-3);
  });

  it('downsampling 24 → 8 kHz attenuates a 5 kHz tone; 3 kHz passes', () => {
    const stop = new L16Converter(24000, 8000).push(tone(5000, 24000, 1, AMP));
    expect(rms(stop.subarray(400))).toBeLessThan((AMP / Math.SQRT2) * 3e-3);
    const pass = new L16Converter(24000, 8000).push(tone(3000, 24000, 1, AMP));
    expect(Math.abs(fit(pass.subarray(400), 3000, 8000).amp - AMP) / AMP).toBeLessThan(0.01);
  });

  it('clips instead of wrapping around on full-scale input', () => {
    const out = new L16Converter(48000, 16000).push(tone(1000, 48000, 0.2, 32767));
    expect(Math.max(...out)).toBeLessThanOrEqual(32767);
    expect(Math.min(...out)).toBeGreaterThanOrEqual(-32768);
    expect(Math.max(...out)).toBeGreaterThan(32000);
  });

  it('slicing (odd byte counts, random splits, 1 byte at a time) gives the same output as whole', () => {
    const r = mulberry32(2024);
    const input = new Uint8Array(48000); // 0.5 s at 48 kHz of noise + tone
    const dv = new DataView(input.buffer);
    for (let i = 0; i < input.length / 2; i++) dv.setInt16(i * 2, Math.round(8000 * Math.sin(i / 7) + (r() - 0.5) * 20000), true);
    for (const from of RATES) {
      for (const to of RATES) {
        const whole = new L16Converter(from, to).push(input);
        expect(whole.length).toBe(Math.ceil(((input.length / 2) * to) / from));
        const odd = feed(new L16Converter(from, to), input, () => 2 * Math.floor(r() * 50) + 1);
        expect(firstDiff(odd, whole)).toBe(-1);
        const random = feed(new L16Converter(from, to), input, () => Math.floor(r() * 700));
        expect(firstDiff(random, whole)).toBe(-1);
      }
    }
    const oneByte = feed(new L16Converter(48000, 16000), input.subarray(0, 4001), () => 1);
    expect(firstDiff(oneByte, new L16Converter(48000, 16000).push(input.subarray(0, 4001)))).toBe(-1);
  });

  it('an odd trailing byte is held for the next push', () => {
    const c = new L16Converter(16000, 16000);
    expect(Array.from(c.push(new Uint8Array([0x01, 0x02, 0x03])))).toEqual([0x0201]);
    expect(Array.from(c.push(new Uint8Array([0x04])))).toEqual([0x0403]);
    expect(Array.from(c.push(new Uint8Array([])))).toEqual([]);
  });

  it('reset() forgets history, phase and a held byte', () => {
    const input = tone(440, 12000, 0.3, AMP);
    const c = new L16Converter(12000, 16000);
    c.push(input.subarray(0, 1001));
    c.reset();
    expect(firstDiff(c.push(input), new L16Converter(12000, 16000).push(input))).toBe(-1);
  });
});
