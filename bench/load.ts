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
 * (bench/relay-floor.ts) driven the same way, and the proxy with PASS_THROUGH_BATCH_MS=0
 * (one raw packet per message, as the relay sends). Machine noise hits every figure; compare
 * ratios, not runs.
 *
 * The OpenAI rows run with the silence gate off (every frame is sent: the worst case) and the
 * default PCM_BATCH_MS; `delay` is each frame's, sent → at the provider, so it includes the
 * batching hold, while `lag` is the last frame of each provider message's (the server's own
 * processing). At the largest step a new session and GET /health are timed during the load,
 * with the default MAX_EVENT_LOOP_LAG_MS. BENCH_BASELINE=<commit> also runs that commit's
 * build (extracted with `git archive` to /tmp, built there; no stash, no checkout) on the same
 * OpenAI steps, in the same run, and prints ours ÷ its streams per core.
 *
 *   npm run bench                      (builds dist/ first)
 *   BENCH_SESSIONS=25,50,100 BENCH_PASS_THROUGH_SESSIONS=100 BENCH_SECONDS=20 npm run bench
 *   BENCH_BASELINE=5518f0d npm run bench
 *   BENCH_BATCH_SWEEP=0,40,100,200 npm run bench     (CPU against added latency, per PCM_BATCH_MS)
 */
import { execFileSync, execSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import WebSocket from 'ws';
import { OpusCodec } from '../src/codec/opus.ts';
import { loadOpusModule } from '../src/runtime/node/wasm.ts';
import type { ProviderStreamTiming, TimingSink } from './sinks.ts';
import { ramp, type RampResult } from './ramp.ts';
import { threadSink } from './sink-thread.ts';
import { TICKS_PER_SECOND, capture, cpuTicks, drive, mediaFrame as frame, openSession, rssKb, startServer, stopServer, type Stream } from './server.ts';

const SESSIONS = (process.env.BENCH_SESSIONS ?? '25,50,100,150').split(',').filter(Boolean).map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
/** CPU and RSS are read after this warm-up (connections open, JIT warm). */
const WARMUP_SECONDS = 4;
const PASS_THROUGH_SESSIONS = (process.env.BENCH_PASS_THROUGH_SESSIONS ?? '25,75,150').split(',').filter(Boolean).map(Number);
const TARGETS = { baselineRatio: 1.5, lagP99Ms: 20, lagAtStreams: 200, rssKbPerStream: 150, passThroughVsFloor: 0.9, serveMs: 1000 };
const BASELINE = process.env.BENCH_BASELINE;
/** The OpenAI rows: every frame sent (no silence gate), batching as configured by default. */
const OPENAI_ENV = { SILENCE_GATE: 'false' };
/** BENCH_BATCH_SWEEP=0,40,100,200: the OpenAI path at BENCH_SWEEP_SESSIONS (default 50) under each PCM_BATCH_MS. */
const BATCH_SWEEP = (process.env.BENCH_BATCH_SWEEP ?? '').split(',').filter(Boolean).map(Number);
const SWEEP_SESSIONS = Number(process.env.BENCH_SWEEP_SESSIONS ?? 50);
/** BENCH_RAMP_SESSIONS sessions (2 streams each), one every BENCH_RAMP_EVERY_MS, under the default saturation limits; 0: no ramp. */
const RAMP_SESSIONS = Number(process.env.BENCH_RAMP_SESSIONS ?? 400);
const RAMP_EVERY_MS = Number(process.env.BENCH_RAMP_EVERY_MS ?? 50);
/** The saturation probe runs under the default limit. */
const PROBE_ENV = { MAX_EVENT_LOOP_LAG_MS: '200', MAX_EVENT_LOOP_UTILIZATION: '0.9' };

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

/**
 * Frame delays (ms, sorted) from send to arrival at the provider, each sent stream paired with
 * its provider stream (the session by language, the participant by order). `lastOfMessage`:
 * only the last frame a provider message carries (frames of one message share an arrival),
 * i.e. the server's own lag without the batching hold.
 */
function frameDelays(streams: Stream[], received: ProviderStreamTiming[], fromFrame: number, toFrame: number, lastOfMessage: boolean): number[] {
  const bySession = new Map<number, ProviderStreamTiming[]>();
  for (const r of received) {
    if (Number.isInteger(r.session)) bySession.set(r.session, [...(bySession.get(r.session) ?? []), r]);
  }
  const out: number[] = [];
  for (const stream of streams) {
    const arrivals = bySession.get(stream.session)?.[stream.participant]?.arrivals;
    if (!arrivals) continue;
    const end = Math.min(toFrame, stream.sent.length, arrivals.length);
    for (let i = fromFrame; i < end; i++) {
      if (lastOfMessage && i + 1 < arrivals.length && arrivals[i + 1] === arrivals[i]) continue;
      out.push(Number(arrivals[i]! - stream.sent[i]!) / 1e6);
    }
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
  /** The server's own lag (see lags), over the whole measured part. */
  lag: [number, number];
  appended: number;
  sent: number;
  /** Timed during the load (largest step only): a new session's handshake and GET /health. */
  probe?: { session: string; health: string };
}

/** A new session's handshake and GET /health, timed while the load runs. */
async function probeServing(port: number): Promise<{ session: string; health: string }> {
  const t0 = performance.now();
  const health = await fetch(`http://127.0.0.1:${port}/health`).then(
    (r) => `${r.status} in ${(performance.now() - t0).toFixed(0)} ms`,
    (e: Error) => `failed (${e.message})`,
  );
  const t1 = performance.now();
  const session = await new Promise<string>((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/transcribe?sessionId=probe&sendBack=true`, { perMessageDeflate: false });
    const timer = setTimeout(() => {
      ws.terminate();
      resolve('no answer in 15 s');
    }, 15_000);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve(`opened in ${(performance.now() - t1).toFixed(0)} ms`);
      ws.close();
    });
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      resolve(`${res.statusCode} in ${(performance.now() - t1).toFixed(0)} ms`);
      ws.terminate();
    });
    ws.once('error', () => undefined);
  });
  return { session, health };
}

async function step(sessions: number, makeSink: () => Promise<TimingSink>, entry?: string[], env: Record<string, string> = {}, probe = false): Promise<Step> {
  const sink = await makeSink();
  const server = await startServer(sink, { entry, env: { ...env, ...(probe ? PROBE_ENV : {}) } });
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
    const probed = probe ? await probeServing(server.port) : undefined;
    const streams = await driving;
    const cpuSeconds = (cpuTicks(server.child.pid!) - cpu0) / TICKS_PER_SECOND;
    const wall = (performance.now() - wall0) / 1000;
    const rss = rssKb(server.child.pid!) - baselineRss;
    // Let the last frames land before reading the provider side.
    await new Promise((r) => setTimeout(r, 300));
    const frames = SECONDS * 50;
    await sink.collect?.();
    const received = sink.streams();
    const early = frameDelays(streams, received, WARMUP_SECONDS * 50, WARMUP_SECONDS * 50 + 150, false);
    const late = frameDelays(streams, received, frames - 150, frames, false);
    const lag = frameDelays(streams, received, WARMUP_SECONDS * 50, frames, true);
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
      lag: [percentile(lag, 0.5), percentile(lag, 0.99)],
      probe: probed,
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
      ((r.cpuPerWallSecond / r.streams) * 1000).toFixed(2).padStart(10),
      r.streamsPerCore.toFixed(0).padStart(13),
      (r.streamsPerCore / reference).toFixed(2).padStart(14),
      r.rssKbPerStream.toFixed(0).padStart(14),
      `${r.lag[0].toFixed(2)} / ${r.lag[1].toFixed(2)}`.padStart(17),
      `${r.early[0].toFixed(2)} / ${r.early[1].toFixed(2)}`.padStart(25),
      `${r.late[0].toFixed(2)} / ${r.late[1].toFixed(2)}`.padStart(15),
      `${r.appended}/${r.sent}`.padStart(15),
      keepsPace(r) ? '' : '  BEHIND: not real time',
    ].join(' '),
  );
  if (r.probe) console.log(`         during the load: a new session ${r.probe.session}, GET /health ${r.probe.health}`);
}

const HEADER =
  'sessions streams  server CPU/s  CPU ms/ps  streams/core  vs reference  RSS KB/stream  lag p50/p99 ms  delay p50/p99 ms (early)  (late)   received/sent';

/** Extracts `commit`'s tree to /tmp with `git archive` (the checkout is not touched) and builds it there. */
function baselineEntry(commit: string): string[] {
  const sha = execFileSync('git', ['rev-parse', '--short=12', commit], { encoding: 'utf8' }).trim();
  const dir = `/tmp/opus-bench-baseline-${sha}`;
  const modules = join(dir, 'node_modules');
  // This checkout's packages, linked anew each run: an earlier run's link may point at a checkout since removed.
  rmSync(modules, { force: true });
  if (!existsSync(join(dir, 'dist/runtime/node.js'))) {
    mkdirSync(dir, { recursive: true });
    execSync(`git archive ${sha} | tar -x -C ${dir}`);
    symlinkSync(resolve('node_modules'), modules);
    execFileSync(process.execPath, ['scripts/build.mjs', '--force'], { cwd: dir, stdio: 'inherit' });
  } else symlinkSync(resolve('node_modules'), modules);
  return [join(dir, 'dist/runtime/node.js')];
}

const cost = await decodeOnlyCostPerFrame();
const decodeOnly = 1 / (50 * cost.decode);
const decodeBase64 = 1 / (50 * cost.decodeAndBase64);
console.log(`decode-only limit (same run): ${decodeOnly.toFixed(0)} streams/core (WASM decode to 24 kHz int16), ` +
  `${decodeBase64.toFixed(0)} with base64 of the PCM: the reference of the OpenAI rows`);
console.log(`${SECONDS} s per step, ${WARMUP_SECONDS} s warm-up; every participant talks all the time (50 frames/s)\n`);

console.log('CPU ms/ps: server CPU per participant-second (ms); lag: the last frame of each provider message; delay: every frame, batching hold included\n');
console.log(`OpenAI Realtime (decode to 24 kHz, base64 PCM appends; every frame sent, PCM_BATCH_MS default)\n${HEADER}`);
const rows: Step[] = [];
const baseline: Step[] = [];
const baseEntry = BASELINE ? baselineEntry(BASELINE) : undefined;
for (const n of SESSIONS) {
  const r = await step(n, () => threadSink('openai'), undefined, OPENAI_ENV, n === SESSIONS.at(-1));
  rows.push(r);
  printRow(r, decodeBase64);
  if (baseEntry) baseline.push(await step(n, () => threadSink('openai'), baseEntry, OPENAI_ENV, n === SESSIONS.at(-1)));
}
if (baseEntry) {
  console.log(`\nthe same steps on ${BASELINE}'s build (same run, same reference)\n${HEADER}`);
  baseline.forEach((b) => printRow(b, decodeBase64));
  console.log(`streams per core, ours ÷ ${BASELINE}'s, step by step: ${rows.map((r, i) => (r.streamsPerCore / baseline[i]!.streamsPerCore).toFixed(2)).join(', ')}`);
}

if (BATCH_SWEEP.length > 0) {
  // CPU against the latency batching adds: the default PCM_BATCH_MS is chosen from this.
  console.log(`\nPCM_BATCH_MS sweep at ${SWEEP_SESSIONS} sessions (OpenAI, every frame sent)\n${HEADER}`);
  for (const ms of BATCH_SWEEP) {
    const r = await step(SWEEP_SESSIONS, () => threadSink('openai'), undefined, { ...OPENAI_ENV, PCM_BATCH_MS: String(ms) });
    process.stdout.write(`PCM_BATCH_MS=${ms}\n`);
    printRow(r, decodeBase64);
  }
}

// Pass-through has no decode. Its reference is the least any Node relay does per frame on this
// machine (bench/relay-floor.ts: JSON.parse, base64 decode, one ws.send), at the same load.
console.log(`\nDeepgram, Opus passed through undecoded; reference: the minimal relay at the same load\n${HEADER}`);
const passThrough: Step[] = [];
const floors: Step[] = [];
const unbatched: Step[] = [];
for (const n of PASS_THROUGH_SESSIONS) {
  const floor = await step(n, () => threadSink('deepgram'), ['--import', 'tsx', 'bench/relay-floor.ts']);
  floors.push(floor);
  const r = await step(n, () => threadSink('deepgram'), undefined, {}, n === PASS_THROUGH_SESSIONS.at(-1));
  passThrough.push(r);
  printRow(r, floor.streamsPerCore);
  unbatched.push(await step(n, () => threadSink('deepgram'), undefined, { PASS_THROUGH_BATCH_MS: '0' }));
}
console.log(`\nthe same with PASS_THROUGH_BATCH_MS=0 (one raw packet per provider message, as the relay does)\n${HEADER}`);
unbatched.forEach((r, i) => printRow(r, floors[i]!.streamsPerCore));
console.log(`\nminimal relay (bench/relay-floor.ts: per frame JSON.parse, base64 decode, one ws.send; nothing else)\n${HEADER}`);
for (const floor of floors) printRow(floor, floor.streamsPerCore);

let ramped: RampResult | undefined;
if (RAMP_SESSIONS > 0) {
  console.log(
    `\nsaturation: a session (2 streams) every ${RAMP_EVERY_MS} ms up to ${RAMP_SESSIONS}, under the default MAX_EVENT_LOOP_UTILIZATION and MAX_EVENT_LOOP_LAG_MS; /health and a new session timed once a second`,
  );
  ramped = await ramp({ sessions: RAMP_SESSIONS, everyMs: RAMP_EVERY_MS, env: { ...OPENAI_ENV, ...PROBE_ENV } });
  console.log(
    `  admitted ${ramped.admitted} sessions (${ramped.admitted * 2} streams), refused ${ramped.refused} with 503; server CPU ${ramped.cpuPerWallSecond.toFixed(2)}/s at the end; ` +
      `frames at the provider ${ramped.received}/${ramped.sent} (streams refused alone included); slowest GET /health ${ramped.worstHealthMs.toFixed(0)} ms, slowest handshake ${ramped.worstSessionMs.toFixed(0)} ms\n  last /health: ${ramped.lastHealth}`,
  );
}

const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
console.log('\ntargets:');
if (rows.length > 0) {
  // The marginal cost of a stream: the RSS slope between the smallest and the largest step,
  // free of the fixed part (V8's young generation, buffers) that every step pays once.
  const paced = rows.filter(keepsPace);
  const first = paced[0] ?? rows[0]!;
  const last = paced.at(-1) ?? rows.at(-1)!;
  const slope = rows.length > 1 ? (last.rssKb - first.rssKb) / (last.streams - first.streams) : last.rssKbPerStream;
  const atLag = rows.find((r) => r.streams === TARGETS.lagAtStreams) ?? rows.at(-1)!;
  const best = Math.max(0, ...paced.map((r) => r.streamsPerCore));
  if (baseline.length > 0) {
    const baseBest = Math.max(0, ...baseline.filter(keepsPace).map((r) => r.streamsPerCore));
    console.log(
      `  OpenAI streams/core >= ${TARGETS.baselineRatio}x ${BASELINE}'s (same run): ${best.toFixed(0)} vs ${baseBest.toFixed(0)} = ${(best / baseBest).toFixed(2)}x ` +
        verdict(best / baseBest >= TARGETS.baselineRatio),
    );
  } else console.log(`  OpenAI streams/core: ${best.toFixed(0)} (BENCH_BASELINE=<commit> compares with an earlier build in the same run)`);
  console.log(`  OpenAI lag p99 < ${TARGETS.lagP99Ms} ms at ${atLag.streams} streams: ${atLag.lag[1].toFixed(2)} ${verdict(atLag.lag[1] < TARGETS.lagP99Ms)}`);
  console.log(
    `  OpenAI <= ${TARGETS.rssKbPerStream} KB RSS/stream: ${slope.toFixed(0)} per additional stream (${first.streams} to ${last.streams}), ` +
      `${last.rssKbPerStream.toFixed(0)} at ${last.streams} ${verdict(slope <= TARGETS.rssKbPerStream)}`,
  );
}
if (passThrough.length > 0) {
  const ratios = passThrough.map((r, i) => r.streamsPerCore / floors[i]!.streamsPerCore);
  const worst = Math.min(...ratios);
  console.log(`  Deepgram pass-through >= ${TARGETS.passThroughVsFloor} of the minimal relay (same run, each step): ${ratios.map((x) => x.toFixed(2)).join(', ')} ${verdict(worst >= TARGETS.passThroughVsFloor)}`);
  const raw = unbatched.map((r, i) => r.streamsPerCore / floors[i]!.streamsPerCore);
  console.log(`    (unbatched, PASS_THROUGH_BATCH_MS=0: ${raw.map((x) => x.toFixed(2)).join(', ')} of the relay)`);
}
if (ramped) {
  const ok = ramped.worstHealthMs <= TARGETS.serveMs && ramped.worstSessionMs <= TARGETS.serveMs;
  console.log(`  saturation ramp: /health and new sessions answered within ${TARGETS.serveMs} ms throughout (worst ${ramped.worstHealthMs.toFixed(0)} / ${ramped.worstSessionMs.toFixed(0)} ms) ${verdict(ok)}`);
}
for (const r of [...rows, ...passThrough]) {
  if (!r.probe) continue;
  const ms = (text: string) => Number(/in (\d+) ms/.exec(text)?.[1] ?? Infinity);
  const ok = ms(r.probe.session) <= TARGETS.serveMs && ms(r.probe.health) <= TARGETS.serveMs;
  console.log(`  at ${r.streams} streams a new session and /health answered within ${TARGETS.serveMs} ms (opened or 503): ${verdict(ok)}`);
}
