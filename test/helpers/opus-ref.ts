/**
 * The native reference decoder (test/native/opus_ref.c linked against the same pinned
 * libopus release as wasm/opus.wasm, compiled natively by `wasm/build.sh --native`) and
 * the same operations replayed on the WASM decoder, for tests and bench/codec.ts. The
 * binary is built on demand into node_modules/.cache/opus-ref/ (about 10 s, once).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { OpusError, type OpusCodec } from '../../src/codec/opus.ts';
import type { PcmRate } from '../../src/codec/pcm.ts';

const SOURCE = fileURLToPath(new URL('../native/opus_ref.c', import.meta.url));
const CACHE_DIR = fileURLToPath(new URL('../../node_modules/.cache/opus-ref/', import.meta.url));
const BINARY = `${CACHE_DIR}opus_ref`;
const BUILD_SCRIPT = fileURLToPath(new URL('../../wasm/build.sh', import.meta.url));
const INSTALL_HINT = 'it needs a C compiler (cc) and apt-get to fetch the pinned libopus source';

export type DecodeOp =
  | { op: 'decode'; packet: Uint8Array }
  | { op: 'conceal'; samples: number }
  | { op: 'recover'; packet: Uint8Array; samples: number }
  | { op: 'reset' };

export type SampleFormat = 'float' | 'int16';

export interface DecodeRun<F extends SampleFormat> {
  /** libopus's return value per decode/conceal/recover op: samples, or a negative error code. */
  results: number[];
  /** All decoded samples, concatenated. */
  pcm: F extends 'float' ? Float32Array : Int16Array;
}

/** The path of the compiled reference, (re)building it if missing or older than its source. */
export function opusRefBinary(): string {
  const built = statSync(BINARY, { throwIfNoEntry: false });
  if (built !== undefined && built.mtimeMs >= statSync(SOURCE).mtimeMs) return BINARY;
  mkdirSync(CACHE_DIR, { recursive: true });
  // Built under a unique name, then renamed: concurrent test workers may race here.
  const temporary = `${BINARY}.${process.pid}.tmp`;
  const build = spawnSync('bash', [BUILD_SCRIPT, '--native', temporary, SOURCE], { encoding: 'utf8' });
  if (build.error !== undefined || build.status !== 0) {
    rmSync(temporary, { force: true });
    const why = build.error?.message ?? build.stderr.trim().split('\n').slice(-5).join('\n');
    throw new Error(`cannot build the native Opus reference; ${INSTALL_HINT}\n${why}`);
  }
  renameSync(temporary, BINARY);
  return BINARY;
}

let status: { available: true } | { available: false; reason: string } | undefined;

/**
 * Whether the native reference can be had here, building it if needed (once per process):
 * tests that compare with it go behind `it.skipIf(!nativeReference().available)`.
 */
export function nativeReference(): { available: true } | { available: false; reason: string } {
  if (status === undefined) {
    try {
      opusRefBinary();
      status = { available: true };
    } catch (error) {
      // One line: what is missing, then the build's last word on it.
      const lines = (error as Error).message.split('\n').filter((line) => line.trim() !== '');
      status = { available: false, reason: lines.length > 1 ? `${lines[0]} (${lines.at(-1)!.trim()})` : (lines[0] ?? 'cannot build the native Opus reference') };
    }
  }
  return status;
}

const OP_CODES = { decode: 0x44, conceal: 0x4c, recover: 0x46, reset: 0x52 } as const; // D L F R

/** Serialises ops in opus_ref's input format: u8 op, u32le arg, u32le length, bytes. */
export function encodeOps(ops: readonly DecodeOp[]): Uint8Array {
  let size = 0;
  for (const op of ops) size += 9 + ('packet' in op ? op.packet.length : 0);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  let at = 0;
  for (const op of ops) {
    const packet = 'packet' in op ? op.packet : undefined;
    view.setUint8(at, OP_CODES[op.op]);
    view.setUint32(at + 1, 'samples' in op ? op.samples : 0, true);
    view.setUint32(at + 5, packet?.length ?? 0, true);
    if (packet !== undefined) bytes.set(packet, at + 9);
    at += 9 + (packet?.length ?? 0);
  }
  return bytes;
}

/** Replays `ops` on one native libopus decoder (mono, at `sampleRate`). */
export function nativeDecode<F extends SampleFormat>(ops: readonly DecodeOp[], sampleRate: PcmRate, format: F): DecodeRun<F> {
  const args = ['--rate', String(sampleRate), ...(format === 'int16' ? ['--int16'] : [])];
  const run = spawnSync(opusRefBinary(), args, { input: encodeOps(ops), maxBuffer: 1 << 30 });
  if (run.error !== undefined || run.status !== 0) {
    throw new Error(`opus_ref failed: ${run.error?.message ?? run.stderr.toString()}`);
  }
  const out = run.stdout;
  const width = format === 'float' ? 4 : 2;
  const results: number[] = [];
  const chunks: Uint8Array[] = [];
  let at = 0;
  while (at < out.length) {
    const result = out.readInt32LE(at);
    at += 4;
    results.push(result);
    if (result > 0) {
      chunks.push(out.subarray(at, at + result * width));
      at += result * width;
    }
  }
  const bytes = Buffer.concat(chunks);
  const aligned = new Uint8Array(bytes).buffer; // a fresh, aligned copy
  const pcm = format === 'float' ? new Float32Array(aligned) : new Int16Array(aligned);
  return { results, pcm: pcm as DecodeRun<F>['pcm'] };
}

/** Replays `ops` on one decoder of `codec`, in the same shape as `nativeDecode`. */
export function wasmDecode<F extends SampleFormat>(
  codec: OpusCodec,
  ops: readonly DecodeOp[],
  sampleRate: PcmRate,
  format: F,
): DecodeRun<F> {
  const decoder = codec.createDecoder(sampleRate);
  const float = format === 'float';
  const results: number[] = [];
  const chunks: (Float32Array | Int16Array)[] = [];
  try {
    for (const op of ops) {
      if (op.op === 'reset') {
        decoder.reset();
        continue;
      }
      try {
        let pcm: Float32Array | Int16Array;
        if (op.op === 'decode') pcm = float ? decoder.decodeFloat(op.packet) : decoder.decodeInt16(op.packet);
        else if (op.op === 'conceal') pcm = float ? decoder.concealFloat(op.samples) : decoder.conceal(op.samples);
        else pcm = float ? decoder.recoverFloat(op.packet, op.samples) : decoder.recover(op.packet, op.samples);
        results.push(pcm.length);
        chunks.push(pcm.slice());
      } catch (error) {
        if (!(error instanceof OpusError)) throw error;
        results.push(error.code);
      }
    }
  } finally {
    decoder.close();
  }
  const total = chunks.reduce((sum, c) => sum + c.length, 0);
  const pcm = float ? new Float32Array(total) : new Int16Array(total);
  let at = 0;
  for (const chunk of chunks) {
    pcm.set(chunk, at);
    at += chunk.length;
  }
  return { results, pcm: pcm as DecodeRun<F>['pcm'] };
}

export interface NativeTiming {
  /** Samples decoded per pass. */
  samples: number;
  /** CPU seconds of each pass. */
  seconds: number[];
}

/** Encodes 48 kHz mono PCM as 20 ms packets carrying in-band FEC (native libopus). */
export function nativeEncodeWithFec(pcm: Int16Array): Uint8Array[] {
  const input = new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  const run = spawnSync(opusRefBinary(), ['--encode-fec'], { input, maxBuffer: 1 << 28 });
  if (run.error !== undefined || run.status !== 0) {
    throw new Error(`opus_ref --encode-fec failed: ${run.error?.message ?? run.stderr.toString()}`);
  }
  const packets: Uint8Array[] = [];
  for (let at = 0; at < run.stdout.length; ) {
    const length = run.stdout.readUInt32LE(at);
    packets.push(new Uint8Array(run.stdout.subarray(at + 4, at + 4 + length)));
    at += 4 + length;
  }
  return packets;
}

/** Times `passes` replays of `ops` in the native reference (CPU time, measured in C). */
export function nativeTiming(ops: readonly DecodeOp[], sampleRate: PcmRate, format: SampleFormat, passes: number): NativeTiming {
  const args = ['--rate', String(sampleRate), '--time', String(passes), ...(format === 'int16' ? ['--int16'] : [])];
  const run = spawnSync(opusRefBinary(), args, { input: encodeOps(ops), encoding: 'buffer' });
  if (run.error !== undefined || run.status !== 0) {
    throw new Error(`opus_ref --time failed: ${run.error?.message ?? run.stderr.toString()}`);
  }
  return JSON.parse(run.stdout.toString()) as NativeTiming;
}

/** Signal-to-noise ratio of `actual` against `reference`, in dB (Infinity if identical). */
export function snrDb(reference: ArrayLike<number>, actual: ArrayLike<number>): number {
  if (reference.length !== actual.length) throw new Error(`length ${actual.length} != ${reference.length}`);
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < reference.length; i++) {
    signal += reference[i] * reference[i];
    const d = reference[i] - actual[i];
    noise += d * d;
  }
  return noise === 0 ? Infinity : 10 * Math.log10(signal / noise);
}

/** Largest absolute sample difference. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${b.length} != ${a.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}
