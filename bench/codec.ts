/**
 * Opus decoding speed and memory: our WASM libopus (src/codec/opus.ts) against native
 * libopus (test/native/opus_ref.c, linked against the same pinned libopus release built
 * natively with cc -O2 by wasm/build.sh --native), on the same
 * packets: both streams of a Videobridge capture and an Ogg Opus file: the shared real ones
 * (jvb-two-speakers.jsonl and speech-10s.ogg, 53.3 s of audio per pass) when ../shared is
 * beside the checkout, else the repository's (test/fixtures/two-speakers.jsonl and
 * samples/speech.ogg).
 *
 *   node --import tsx bench/codec.ts        (npm run bench:codec)
 *   BENCH_ROUNDS=10 node --import tsx bench/codec.ts
 *
 * Speed is the real-time factor: audio seconds decoded per CPU second (process.cpuUsage()
 * for WASM, CLOCK_PROCESS_CPUTIME_ID in the C program). Each configuration runs ROUNDS
 * rounds of 3 WASM passes then 3 native passes (interleaved, so machine noise hits both),
 * after a warm-up; the table shows the best and the median pass.
 */
import { OpusCodec, type OpusDecoder } from '../src/codec/opus.ts';
import type { PcmRate } from '../src/codec/pcm.ts';
import { loadOpusModule } from '../src/runtime/node/wasm.ts';
import { benchFixtures, packetsByTag, readCapture, readOggOpus } from '../test/helpers/fixtures.ts';
import { nativeTiming, type DecodeOp, type SampleFormat } from '../test/helpers/opus-ref.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const PASSES_PER_ROUND = 3;
const TARGET_RATIO = 0.85;
const TARGET_BYTES_PER_DECODER = 32 * 1024;

// One stream after another, with a decoder reset in between (the same in C).
const fixtures = benchFixtures();
const streams = [...packetsByTag(readCapture(fixtures.capture)).values(), readOggOpus(fixtures.speech).packets];
const ops: DecodeOp[] = streams.flatMap((packets, i): DecodeOp[] => [
  ...(i > 0 ? [{ op: 'reset' } as const] : []),
  ...packets.map((packet) => ({ op: 'decode', packet }) as const),
]);
const packetCount = streams.reduce((sum, packets) => sum + packets.length, 0);

const codec = await OpusCodec.instantiate(await loadOpusModule());

type Variant = SampleFormat | 'float+copy';

/** One pass over all streams; returns [samples, CPU seconds]. */
function wasmPass(decoder: OpusDecoder, variant: Variant): [number, number] {
  let samples = 0;
  const start = process.cpuUsage();
  for (const packets of streams) {
    decoder.reset();
    if (variant === 'float') for (const packet of packets) samples += decoder.decodeFloat(packet).length;
    else if (variant === 'int16') for (const packet of packets) samples += decoder.decodeInt16(packet).length;
    else for (const packet of packets) samples += decoder.decodeFloat(packet).slice().length;
  }
  const used = process.cpuUsage(start);
  return [samples, (used.user + used.system) / 1e6];
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

interface Row {
  config: string;
  wasmBest: number;
  wasmMedian: number;
  nativeBest?: number;
  nativeMedian?: number;
}

function measure(rate: PcmRate, variant: Variant, withNative: boolean): Row {
  const decoder = codec.createDecoder(rate);
  const wasm: number[] = [];
  const native: number[] = [];
  let audioSeconds = 0;
  for (let i = 0; i < 3; i++) wasmPass(decoder, variant); // warm-up: JIT tiers, caches
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < PASSES_PER_ROUND; i++) {
      const [samples, seconds] = wasmPass(decoder, variant);
      audioSeconds = samples / rate;
      wasm.push(audioSeconds / seconds);
    }
    if (withNative) {
      // One warm-up pass per process, then the measured ones.
      const timing = nativeTiming(ops, rate, variant === 'int16' ? 'int16' : 'float', PASSES_PER_ROUND + 1);
      if (timing.samples / rate !== audioSeconds) throw new Error(`native decoded ${timing.samples} samples, WASM ${audioSeconds * rate}`);
      for (const seconds of timing.seconds.slice(1)) native.push(timing.samples / rate / seconds);
    }
  }
  decoder.close();
  return {
    config: `${variant}, ${rate / 1000} kHz`,
    wasmBest: Math.max(...wasm),
    wasmMedian: median(wasm),
    ...(withNative ? { nativeBest: Math.max(...native), nativeMedian: median(native) } : {}),
  };
}

/**
 * memory.buffer growth per decoder over `count` decoders in a fresh instance: from the
 * start (`naive`, which the free part of the initial 1 MiB partly absorbs) and once that
 * free part is used up (`steady`; memory then grows one 64 KiB page at a time).
 */
async function bytesPerDecoder(count: number): Promise<{ naive: number; steady: number }> {
  const fresh = await OpusCodec.instantiate(await loadOpusModule());
  const initial = fresh.memoryBytes;
  const decoders: OpusDecoder[] = [];
  while (decoders.length < count) decoders.push(fresh.createDecoder(48000));
  const naive = (fresh.memoryBytes - initial) / count;
  while (fresh.memoryBytes === initial + naive * count) decoders.push(fresh.createDecoder(48000));
  const start = fresh.memoryBytes;
  for (let i = 0; i < count; i++) decoders.push(fresh.createDecoder(48000));
  const steady = (fresh.memoryBytes - start) / count;
  for (const decoder of decoders) decoder.close();
  return { naive, steady };
}

const audioPerPass = ops.filter((op) => op.op === 'decode').length * 0.02;
console.log(`Opus decode: ${codec.version} (WASM) vs system libopus (native), Node ${process.versions.node}`);
console.log(`${packetCount} packets, ${audioPerPass.toFixed(1)} s of audio per pass, ${ROUNDS} rounds × ${PASSES_PER_ROUND} passes`);
console.log('real-time factor = audio seconds per CPU second\n');

const rows: Row[] = [];
for (const rate of [48000, 24000] as const) {
  for (const variant of ['float', 'int16'] as const) rows.push(measure(rate, variant, true));
}
rows.push(measure(48000, 'float+copy', false));

const fmt = (n: number | undefined, digits = 0) => (n === undefined ? '-' : n.toFixed(digits));
const table = rows.map((row) => ({
  config: row.config,
  'WASM best': fmt(row.wasmBest),
  'WASM median': fmt(row.wasmMedian),
  'native best': fmt(row.nativeBest),
  'native median': fmt(row.nativeMedian),
  'ratio (median)': row.nativeMedian === undefined ? '-' : fmt(row.wasmMedian / row.nativeMedian, 2),
  'ratio (best)': row.nativeBest === undefined ? '-' : fmt(row.wasmBest / row.nativeBest, 2),
}));
console.table(table);

const ratios = rows.filter((row) => row.nativeMedian !== undefined).map((row) => row.wasmMedian / row.nativeMedian!);
const worst = Math.min(...ratios);
const copyCost = 1 - rows[4].wasmMedian / rows[0].wasmMedian;
console.log(`WASM/native (median): ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}; target ≥ ${TARGET_RATIO}: ${worst >= TARGET_RATIO ? 'met' : 'NOT met'}`);
console.log(`copying the float output (slice()) costs ${(copyCost * 100).toFixed(1)} % of the decode speed (median)`);

const { naive, steady } = await bytesPerDecoder(1000);
const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
console.log(
  `memory per live mono decoder: ${kb(naive)} (memory.buffer growth over 1,000 decoders / 1,000), ` +
    `${kb(steady)} once the initial memory is used up; libopus state ${kb(codec.decoderStateBytes)}; ` +
    `target ≤ ${kb(TARGET_BYTES_PER_DECODER)}: ${Math.max(naive, steady) <= TARGET_BYTES_PER_DECODER ? 'met' : 'NOT met'}`,
);
