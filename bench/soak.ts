/**
 * Soak (`npm run bench:soak`; not run in CI): the built server (`npm start`'s command, in its
 * own process, as bench/load.ts starts it) in front of the fake OpenAI in timing-only mode on a
 * thread (bench/sinks.ts, counting only, so that its memory stays flat), driven by
 * SOAK_SESSIONS (50) sessions x 2 participants at real-time pace with the capture's packets
 * looped (bench/load.ts's load generator: everyone talks all the time) for SOAK_MINUTES (30).
 *
 * The server's RSS is read from /proc/<pid>/status every 10 s; a line per minute. At the end:
 * min, max, the first window's average (warm-up), the last window's, and whether RSS stayed
 * flat: the last window's average within ±10 % of the second window's (after warm-up). A
 * window is 5 minutes (first 0-5, second 5-10, last the final 5), a third of the run when it
 * is shorter than 15 minutes (SOAK_MINUTES=2: 0-40 s, 40-80 s, 80-120 s). Also the server's
 * CPU (% of one core) and the frames the provider received against those sent. Exit 1 if RSS
 * did not stay flat or the server died.
 *
 *   npm run bench:soak                           (builds dist/ first)
 *   SOAK_MINUTES=2 npm run bench:soak            (a quick check)
 */
import { threadSink } from './sink-thread.ts';
import { TICKS_PER_SECOND, cpuTicks, drive, mediaFrame, openSession, rssKb, startServer, stopServer, capture, type Stream } from './server.ts';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 30);
const SESSIONS = Number(process.env.SOAK_SESSIONS ?? 50);
const SAMPLE_MS = 10_000;
const TOLERANCE = 0.1;

const seconds = Math.round(MINUTES * 60);
const windowSeconds = Math.min(300, seconds / 3);

interface Sample {
  /** Seconds since the load started. */
  t: number;
  rssKb: number;
  ticks: number;
}

const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`;
const average = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const fmt = (n: number) => n.toLocaleString('en-US');

const { tags, base64Packets } = capture();
const sink = await threadSink('openai', { arrivals: false });
const log = { error: [] as string[], warn: 0, raw: [] as string[] };
const server = await startServer(sink, {
  onStdout: () => {},
  onStderr: (line) => {
    if (line.includes('"level":"error"')) log.error.push(line);
    else if (line.includes('"level":"warn"')) log.warn++;
    else if (log.raw.length < 200) log.raw.push(line);
  },
});
let died = false;
void server.exited.then(({ code, signal }) => {
  died = true;
  console.log(`!! the server exited with ${code ?? signal}`);
});

// One throwaway session loads the WASM codec first, as in bench/load.ts.
const warm = await openSession(server.port, 9999);
warm.send(mediaFrame(tags[0]![0], 1, base64Packets[0]![0]!));
await new Promise((r) => setTimeout(r, 500));
warm.close();
await new Promise((r) => setTimeout(r, 300));
const startRss = rssKb(server.pid);
const appendsBefore = (await sink.counts()).appends;

console.log(
  `soak: ${SESSIONS} sessions x ${tags.length} participants (${SESSIONS * tags.length} streams, 50 frames/s each) for ${MINUTES} min; ` +
    `RSS every ${SAMPLE_MS / 1000} s; flat = the last ${windowSeconds} s within ±${TOLERANCE * 100} % of ${windowSeconds}-${2 * windowSeconds} s`,
);
console.log(`server RSS before the load: ${mb(startRss)}`);

const sockets = await Promise.all(Array.from({ length: SESSIONS }, (_, i) => openSession(server.port, i)));
const closedByServer: number[] = [];
let closing = false;
for (const ws of sockets) ws.on('close', (code) => closing || closedByServer.push(code));
const streams: Stream[] = [];
const t0 = performance.now();
const samples: Sample[] = [{ t: 0, rssKb: rssKb(server.pid), ticks: cpuTicks(server.pid) }];
const sentNow = () => streams.reduce((n, s) => n + s.count, 0);

let lastMinute = { t: 0, ticks: samples[0]!.ticks };
const sampler = setInterval(() => {
  if (died) return;
  const t = (performance.now() - t0) / 1000;
  samples.push({ t, rssKb: rssKb(server.pid), ticks: cpuTicks(server.pid) });
  const minute = Math.floor((t + 1) / 60);
  if (minute > Math.floor((lastMinute.t + 1) / 60)) {
    const inMinute = samples.filter((s) => s.t > lastMinute.t - 0.5);
    const now = samples.at(-1)!;
    const cpu = (now.ticks - lastMinute.ticks) / TICKS_PER_SECOND / (now.t - lastMinute.t);
    void sink.counts().then((c) =>
      console.log(
        `min ${String(minute).padStart(3)}  RSS ${mb(now.rssKb)} (minute's average ${mb(average(inMinute.map((s) => s.rssKb)))})  ` +
          `CPU ${(cpu * 100).toFixed(0)} %  sent ${fmt(sentNow())}  received by the provider ${fmt(c.appends - appendsBefore)}`,
      ),
    );
    lastMinute = { t: now.t, ticks: now.ticks };
  }
}, SAMPLE_MS);

await drive(sockets, seconds, { record: false, streams });
clearInterval(sampler);
const wall = (performance.now() - t0) / 1000;
const alive = !died;
if (alive) samples.push({ t: wall, rssKb: rssKb(server.pid), ticks: cpuTicks(server.pid) });
// Let the last frames land.
await new Promise((r) => setTimeout(r, 1000));
const counts = await sink.counts();
const sent = sentNow();
const received = counts.appends - appendsBefore;
const health = alive ? await fetch(`http://127.0.0.1:${server.port}/health`).then((r) => r.text()).catch((e: Error) => e.message) : 'the server is dead';
closing = true;
for (const ws of sockets) ws.close();
await new Promise((r) => setTimeout(r, 500));
if (alive) await stopServer(server);
await sink.close();

// ---------------------------------------------------------------- report
const rss = samples.map((s) => s.rssKb);
const inWindow = (from: number, to: number) => samples.filter((s) => s.t >= from && s.t < to).map((s) => s.rssKb);
const first = inWindow(0, windowSeconds);
const second = inWindow(windowSeconds, 2 * windowSeconds);
const last = samples.filter((s) => s.t >= wall - windowSeconds).map((s) => s.rssKb);
const cpuSeconds = (samples.at(-1)!.ticks - samples[0]!.ticks) / TICKS_PER_SECOND;
const drift = second.length && last.length ? average(last) / average(second) - 1 : NaN;
const flat = Math.abs(drift) <= TOLERANCE;
const w = (from: number, to: number) => `${(from / 60).toFixed(from % 60 ? 1 : 0)}-${(to / 60).toFixed(to % 60 ? 1 : 0)} min`;

console.log('');
console.log(`duration:           ${(wall / 60).toFixed(1)} min, ${samples.length} RSS samples`);
console.log(`server RSS:         min ${mb(Math.min(...rss))}, max ${mb(Math.max(...rss))}`);
console.log(`  first window  (${w(0, windowSeconds)}, warm-up): average ${mb(average(first))}`);
console.log(`  second window (${w(windowSeconds, 2 * windowSeconds)}): average ${mb(average(second))}`);
console.log(`  last window   (${w(wall - windowSeconds, wall)}): average ${mb(average(last))}`);
console.log(`  last vs second: ${drift >= 0 ? '+' : ''}${(drift * 100).toFixed(1)} % (flat within ±${TOLERANCE * 100} %: ${flat ? 'yes' : 'NO'})`);
console.log(`  at each minute mark: ${samples.filter((s, i) => i === 0 || Math.floor(s.t / 60) !== Math.floor(samples[i - 1]!.t / 60) || i === samples.length - 1).map((s) => (s.rssKb / 1024).toFixed(0)).join(' ')} MB`);
console.log(`server CPU:         ${((cpuSeconds / wall) * 100).toFixed(1)} % of a core (${cpuSeconds.toFixed(0)} s over ${wall.toFixed(0)} s)`);
console.log(`frames:             ${fmt(sent)} sent, ${fmt(received)} received by the provider (${((received / sent) * 100).toFixed(2)} %), over ${counts.connections} provider connections`);
console.log(`server:             ${alive ? 'alive' : 'DEAD'}; /health ${health}`);
console.log(`server log:         ${log.error.length} error line(s), ${log.warn} warn line(s)${closedByServer.length ? `; sockets closed by the server: ${closedByServer.join(', ')}` : ''}`);
for (const line of [...log.error.slice(0, 5), ...log.raw.slice(0, 10)]) console.log(`  ${line.slice(0, 300)}`);
const ok = flat && alive;
console.log(ok ? 'soak: PASS (RSS flat)' : `soak: FAIL${alive ? '' : ' the server died;'}${flat ? '' : ` RSS not flat (${(drift * 100).toFixed(1)} %)`}`);
process.exit(ok ? 0 : 1);
