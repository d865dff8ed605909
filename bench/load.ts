/**
 * Load benchmark (`npm run bench`): the built Node server (dist/, its own process) in front
 * of a provider that only records arrivals (bench/sinks.ts, on a thread of this process): OpenAI
 * Realtime (decoded PCM), then Deepgram (Opus passed through), driven by N sessions
 * x 2 participants at real-time pace with the JVB capture's packets. Every participant talks
 * all the time (its packets looped, one every 20 ms): the worst case, with no DTX pauses.
 *
 * For each N it prints the server's CPU per wall second, participant streams per core
 * (streams / CPU fraction), RSS per stream, and the delay from a frame leaving the load
 * generator to its append reaching the fake (p50 / p99; both ends read the system's
 * monotonic clock), early and late in the run: a late p99 far above the early one is a
 * growing backlog. Next to it, measured in the same run, a reference per provider, so the
 * proxy's own overhead shows as a ratio: for OpenAI the decode-only limit (WASM libopus to
 * 24 kHz int16, plus the base64 its wire needs); for pass-through the minimal relay
 * (bench/relay-floor.ts) driven the same way. Machine noise hits every figure; compare
 * ratios, not runs.
 *
 *   npm run bench                      (builds dist/ first)
 *   BENCH_SESSIONS=25,50,100 BENCH_PASS_THROUGH_SESSIONS=100 BENCH_SECONDS=20 npm run bench
 */
import { OpusCodec } from '../src/codec/opus.ts';
import { loadOpusModule } from '../src/runtime/node/wasm.ts';
import type { ProviderStreamTiming, TimingSink } from './sinks.ts';
import { threadSink } from './sink-thread.ts';
import { TICKS_PER_SECOND, capture, cpuTicks, drive, mediaFrame as frame, openSession, rssKb, startServer, stopServer, type Stream } from './server.ts';

const SESSIONS = (process.env.BENCH_SESSIONS ?? '25,50,100,150').split(',').filter(Boolean).map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
/** CPU and RSS are read after this warm-up (connections open, JIT warm). */
const WARMUP_SECONDS = 4;
const PASS_THROUGH_SESSIONS = (process.env.BENCH_PASS_THROUGH_SESSIONS ?? '50,150,300').split(',').filter(Boolean).map(Number);
const TARGETS = { streamsPerCore: 250, p99Ms: 5, rssKbPerStream: 150, passThroughStreamsPerCore: 1500 };

const { tags, base64Packets } = capture();

// ---------------------------------------------------------------- decode-only reference

/** CPU seconds per 20 ms frame: WASM decode to 24 kHz int16, then base64 of the PCM. */
async function decodeOnlyCostPerFrame(): Promise<{ decode: number; decodeAndBase64: number }> {
  const codec = await OpusCodec.instantiate(await loadOpusModule());
  const decoder = codec.createDecoder(24000);
  const all = tags.flatMap(([, packets]) => packets);
  const run = (withBase64: boolean) => {
    const start = process.cpuUsage();
    let frames = 0;
    for (let pass = 0; pass < 6; pass++) {
      for (const packet of all) {
        const pcm = decoder.decodeInt16(packet);
        if (withBase64) Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength).toString('base64');
        frames++;
      }
    }
    const used = process.cpuUsage(start);
    return (used.user + used.system) / 1e6 / frames;
  };
  run(true); // warm-up
  const decode = Math.min(run(false), run(false));
  const decodeAndBase64 = Math.min(run(true), run(true));
  decoder.close();
  return { decode, decodeAndBase64 };
}

/** Pairs each sent stream with its provider stream: the session by language, the participant by order. */
function delays(streams: Stream[], received: ProviderStreamTiming[], fromFrame: number, toFrame: number): number[] {
  const bySession = new Map<number, ProviderStreamTiming[]>();
  for (const r of received) {
    if (Number.isInteger(r.session)) bySession.set(r.session, [...(bySession.get(r.session) ?? []), r]);
  }
  const out: number[] = [];
  for (const stream of streams) {
    const arrivals = bySession.get(stream.session)?.[stream.participant]?.arrivals;
    if (!arrivals) continue;
    const end = Math.min(toFrame, stream.sent.length, arrivals.length);
    for (let i = fromFrame; i < end; i++) out.push(Number(arrivals[i]! - stream.sent[i]!) / 1e6);
  }
  return out.sort((a, b) => a - b);
}

const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]! : NaN);

// ---------------------------------------------------------------- the run

interface Step {
  sessions: number;
  streams: number;
  cpuPerWallSecond: number;
  streamsPerCore: number;
  rssKbPerStream: number;
  rssKb: number;
  early: [number, number];
  late: [number, number];
  appended: number;
  sent: number;
}

async function step(sessions: number, makeSink: () => Promise<TimingSink>, entry?: string[]): Promise<Step> {
  const sink = await makeSink();
  const server = await startServer(sink, { entry });
  try {
    // One throwaway session loads the WASM codec, so the baseline RSS includes it.
    const warm = await openSession(server.port, 9999);
    warm.send(frame(tags[0]![0], 1, base64Packets[0]![0]!));
    await new Promise((r) => setTimeout(r, 500));
    warm.close();
    await new Promise((r) => setTimeout(r, 300));
    const baselineRss = rssKb(server.child.pid!);

    const sockets = await Promise.all(Array.from({ length: sessions }, (_, i) => openSession(server.port, i)));
    const driving = drive(sockets, SECONDS);
    await new Promise((r) => setTimeout(r, WARMUP_SECONDS * 1000));
    const cpu0 = cpuTicks(server.child.pid!);
    const wall0 = performance.now();
    const streams = await driving;
    const cpuSeconds = (cpuTicks(server.child.pid!) - cpu0) / TICKS_PER_SECOND;
    const wall = (performance.now() - wall0) / 1000;
    const rss = rssKb(server.child.pid!) - baselineRss;
    // Let the last frames land before reading the provider side.
    await new Promise((r) => setTimeout(r, 300));
    const frames = SECONDS * 50;
    await sink.collect?.();
    const received = sink.streams();
    const early = delays(streams, received, WARMUP_SECONDS * 50, WARMUP_SECONDS * 50 + 150);
    const late = delays(streams, received, frames - 150, frames);
    for (const ws of sockets) ws.close();
    const count = streams.length;
    const cpuFraction = cpuSeconds / wall;
    return {
      sessions,
      streams: count,
      cpuPerWallSecond: cpuFraction,
      streamsPerCore: count / cpuFraction,
      rssKbPerStream: rss / count,
      rssKb: rss,
      early: [percentile(early, 0.5), percentile(early, 0.99)],
      late: [percentile(late, 0.5), percentile(late, 0.99)],
      appended: received.reduce((n, r) => n + r.arrivals.length, 0),
      sent: streams.reduce((n, s) => n + s.sent.length, 0),
    };
  } finally {
    await stopServer(server);
    await sink.close();
  }
}

/** A step counts only if the server kept real-time pace: everything arrived, without a backlog. */
const keepsPace = (r: Step) => r.appended >= r.sent * 0.999 && r.late[0] < 50;

function printRow(r: Step, reference: number): void {
  console.log(
    [
      String(r.sessions).padStart(8),
      String(r.streams).padStart(7),
      r.cpuPerWallSecond.toFixed(2).padStart(13),
      r.streamsPerCore.toFixed(0).padStart(13),
      (r.streamsPerCore / reference).toFixed(2).padStart(14),
      r.rssKbPerStream.toFixed(0).padStart(14),
      `${r.early[0].toFixed(2)} / ${r.early[1].toFixed(2)}`.padStart(25),
      `${r.late[0].toFixed(2)} / ${r.late[1].toFixed(2)}`.padStart(15),
      `${r.appended}/${r.sent}`.padStart(15),
      keepsPace(r) ? '' : '  BEHIND: not real time',
    ].join(' '),
  );
}

const HEADER = 'sessions streams  server CPU/s  streams/core  vs reference  RSS KB/stream  delay p50/p99 ms (early)  (late)   received/sent';

const cost = await decodeOnlyCostPerFrame();
const decodeOnly = 1 / (50 * cost.decode);
const decodeBase64 = 1 / (50 * cost.decodeAndBase64);
console.log(`decode-only limit (same run): ${decodeOnly.toFixed(0)} streams/core (WASM decode to 24 kHz int16), ` +
  `${decodeBase64.toFixed(0)} with base64 of the PCM: the reference of the OpenAI rows`);
console.log(`${SECONDS} s per step, ${WARMUP_SECONDS} s warm-up; every participant talks all the time (50 frames/s)\n`);

console.log(`OpenAI Realtime (decode to 24 kHz, base64 PCM appends)\n${HEADER}`);
const rows: Step[] = [];
for (const n of SESSIONS) {
  const r = await step(n, () => threadSink('openai'));
  rows.push(r);
  printRow(r, decodeBase64);
}

// Pass-through has no decode. Its reference is the least any Node relay does per frame on this
// machine (bench/relay-floor.ts: JSON.parse, base64 decode, one ws.send), at the same load.
console.log(`\nDeepgram, Opus passed through undecoded; reference: the minimal relay at the same load\n${HEADER}`);
const passThrough: Step[] = [];
const floors: Step[] = [];
for (const n of PASS_THROUGH_SESSIONS) {
  const floor = await step(n, () => threadSink('deepgram'), ['--import', 'tsx', 'bench/relay-floor.ts']);
  floors.push(floor);
  const r = await step(n, () => threadSink('deepgram'));
  passThrough.push(r);
  printRow(r, floor.streamsPerCore);
}
console.log(`\nminimal relay (bench/relay-floor.ts: per frame JSON.parse, base64 decode, one ws.send; nothing else)\n${HEADER}`);
for (const floor of floors) printRow(floor, floor.streamsPerCore);

const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
console.log('\ntargets:');
if (rows.length > 0) {
  // The marginal cost of a stream: the RSS slope between the smallest and the largest step,
  // free of the fixed part (V8's young generation, buffers) that every step pays once.
  const paced = rows.filter(keepsPace);
  const first = paced[0] ?? rows[0]!;
  const last = paced.at(-1) ?? rows.at(-1)!;
  const slope = rows.length > 1 ? (last.rssKb - first.rssKb) / (last.streams - first.streams) : last.rssKbPerStream;
  const at100 = rows.find((r) => r.streams === 100) ?? rows.at(-1)!;
  const best = Math.max(0, ...rows.filter(keepsPace).map((r) => r.streamsPerCore));
  console.log(`  OpenAI >= ${TARGETS.streamsPerCore} streams/core: ${best.toFixed(0)} ${verdict(best >= TARGETS.streamsPerCore)}`);
  console.log(`  OpenAI p99 < ${TARGETS.p99Ms} ms at ${at100.streams} streams: ${at100.late[1].toFixed(2)} ${verdict(at100.late[1] < TARGETS.p99Ms)}`);
  console.log(
    `  OpenAI <= ${TARGETS.rssKbPerStream} KB RSS/stream: ${slope.toFixed(0)} per additional stream (${first.streams} to ${last.streams}), ` +
      `${last.rssKbPerStream.toFixed(0)} at ${last.streams} ${verdict(slope <= TARGETS.rssKbPerStream)}`,
  );
}
if (passThrough.length > 0) {
  const best = Math.max(0, ...passThrough.filter(keepsPace).map((r) => r.streamsPerCore));
  const floor = Math.max(0, ...floors.filter(keepsPace).map((r) => r.streamsPerCore));
  console.log(
    `  Deepgram pass-through >= ${TARGETS.passThroughStreamsPerCore} streams/core: ${best.toFixed(0)} ${verdict(best >= TARGETS.passThroughStreamsPerCore)}` +
      ` (the minimal relay's best on this machine: ${floor.toFixed(0)})`,
  );
}
