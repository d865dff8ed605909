/**
 * What the replay buffer (issue 16/21) costs per participant stream for decoded Opus: the
 * decode history (packets, call records, a decoder snapshot every 10 s) plus one span entry
 * per 100 ms message, against the reference measured in the same run, the PCM the buffer
 * kept before (one 100 ms Uint8Array per message plus its entry). Heap and ArrayBuffer
 * bytes after a full GC, so the figures do not depend on CPU load. Also the price of a
 * replay: rebuilding the held audio, against decoding it live in the same run.
 *
 *   npm run bench:replay      (BENCH_REPLAY_STREAMS=50 BENCH_REPLAY_SECONDS=30 by default)
 */
import { OpusCodec } from '../src/codec/opus.ts';
import { loadOpusModule } from '../src/runtime/node/wasm.ts';
import { DecodeHistory, type PcmSource } from '../src/session/decode-history.ts';
import { packetsByTag, readCapture } from '../test/helpers/fixtures.ts';

const STREAMS = Number(process.env.BENCH_REPLAY_STREAMS ?? 50);
const SECONDS = Number(process.env.BENCH_REPLAY_SECONDS ?? 30);
const RATE = 24000;
const FRAME = RATE / 50;
const BATCH_FRAMES = 5;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc (npm run bench:replay does)');

function used(): number {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const codec = await OpusCodec.instantiate(await loadOpusModule());
const capture = [...packetsByTag(readCapture()).values()].flat();
const frames = SECONDS * 50;
const packets = Array.from({ length: frames }, (_, i) => capture[i % capture.length]!);

interface Entry {
  durationMs: number;
  arrival: number;
  serial: number;
  endMs: number;
}

/** The buffer as it was: the PCM of each 100 ms message. */
function pcmBuffers(): (Entry & { audio: Uint8Array })[][] {
  const all: (Entry & { audio: Uint8Array })[][] = [];
  for (let s = 0; s < STREAMS; s++) {
    const decoder = codec.createDecoder(RATE);
    const entries: (Entry & { audio: Uint8Array })[] = [];
    let batch = new Uint8Array(BATCH_FRAMES * FRAME * 2);
    for (let i = 0; i < frames; i++) {
      const pcm = decoder.decodeInt16(packets[i]!);
      batch.set(new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength), (i % BATCH_FRAMES) * FRAME * 2);
      if (i % BATCH_FRAMES === BATCH_FRAMES - 1) {
        entries.push({ audio: batch, durationMs: 100, arrival: i * 20, serial: 1, endMs: (i + 1) * 20 });
        batch = new Uint8Array(BATCH_FRAMES * FRAME * 2);
      }
    }
    decoder.close();
    all.push(entries);
  }
  return all;
}

/** The buffer now: a decode history and the spans of each 100 ms message. */
function spanBuffers(): { history: DecodeHistory; entries: (Entry & { source: PcmSource; start: number; end: number })[] }[] {
  const all: { history: DecodeHistory; entries: (Entry & { source: PcmSource; start: number; end: number })[] }[] = [];
  for (let s = 0; s < STREAMS; s++) {
    const decoder = codec.createDecoder(RATE);
    // Nothing finalised: every position stays needed (the bench's provider never sends a final).
    const history = new DecodeHistory(codec, decoder, { oldestNeeded: () => 0 });
    const entries: (Entry & { source: PcmSource; start: number; end: number })[] = [];
    for (let i = 0; i < frames; i++) {
      history.decode(decoder, packets[i]!);
      if (i % BATCH_FRAMES === BATCH_FRAMES - 1) {
        const end = history.position;
        entries.push({ source: history, start: end - BATCH_FRAMES * FRAME, end, durationMs: 100, arrival: i * 20, serial: 1, endMs: (i + 1) * 20 });
      }
    }
    decoder.close();
    all.push({ history, entries });
  }
  return all;
}

function measure<T>(build: () => T): { kbPerStream: number; held: T } {
  const before = used();
  const held = build();
  const after = used();
  return { kbPerStream: (after - before) / 1024 / STREAMS, held };
}

// Warm both paths up, then measure each on its own.
measure(() => (pcmBuffers(), spanBuffers()));
const pcm = measure(pcmBuffers);
const pcmKb = pcm.kbPerStream;
pcm.held.length = 0;
const spans = measure(spanBuffers);
const spanKb = spans.kbPerStream;

// A replay: every span of one stream rebuilt in order, against decoding the same packets live.
const one = spans.held[0]!;
const liveStart = performance.now();
for (let round = 0; round < 5; round++) {
  const decoder = codec.createDecoder(RATE);
  for (const packet of packets) decoder.decodeInt16(packet);
  decoder.close();
}
const liveMs = (performance.now() - liveStart) / 5;
const rebuildStart = performance.now();
let rebuilt = 0;
for (let round = 0; round < 5; round++) {
  const reader = one.history.reader();
  for (const e of one.entries) rebuilt += reader.read(e.start, e.end).length;
  reader.close();
}
const rebuildMs = (performance.now() - rebuildStart) / 5;
if (rebuilt !== 5 * frames * FRAME) throw new Error(`rebuilt ${rebuilt} samples, expected ${5 * frames * FRAME}`);

console.log(`replay buffer for ${SECONDS} s of decoded Opus at 24 kHz (100 ms messages), ${STREAMS} streams, after GC:`);
console.log(`  PCM (reference, as before):   ${pcmKb.toFixed(0).padStart(6)} KB/stream  ${(pcmKb / SECONDS).toFixed(1).padStart(5)} KB per second of audio`);
console.log(
  `  decode history + spans:       ${spanKb.toFixed(0).padStart(6)} KB/stream  ${(spanKb / SECONDS).toFixed(1).padStart(5)} KB per second of audio  (${(pcmKb / spanKb).toFixed(1)}x smaller; ${one.history.snapshots} snapshots)`,
);
console.log(`  rebuilding it all for a replay: ${(rebuildMs / liveMs).toFixed(2)}x the time decoding it live took (same run)`);
