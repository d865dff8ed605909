/**
 * Memory per participant when the Worker transcribes by itself (`npm run bench:worker`):
 * the app under workerd (miniflare) with the fake OpenAI server, one client connection to
 * which participants are added in steps, each streaming JVB packets at real-time pace.
 * workerd runs the isolate in its own process, so that process's RSS, read from /proc
 * after each step, bounds what the isolate holds per participant (its heap, the shared
 * WASM memory with one decoder each, and one provider socket each).
 *
 * Prints the RSS slope per participant and the participants that fit in workerd's 128 MB
 * isolate limit next to the baseline, which is what MAX_PARTICIPANTS defaults to on workerd.
 */
import { readFileSync, readdirSync } from 'node:fs';
import WebSocket from 'ws';
import { FakeOpenAI } from '../test/fakes/openai-realtime.ts';
import { benchFixtures, packetsByTag, readCapture } from '../test/helpers/fixtures.ts';
import { startWorker } from '../test/runtimes/workerd-harness.ts';

const STEPS = (process.env.BENCH_PARTICIPANTS ?? '0,25,50,100,150').split(',').map(Number);
const ISOLATE_LIMIT_MB = 128;

const packets = [...packetsByTag(readCapture(benchFixtures().capture)).values()].flat().map((p) => Buffer.from(p).toString('base64'));

/** workerd processes started by this process (miniflare's child). */
function workerdPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && stat.includes('(workerd)')) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

const fake = await FakeOpenAI.start({ timingOnly: true });
const worker = await startWorker('src/runtime/workerd.ts', {
  vars: { TRANSCRIBE_IN_WORKER: 'true', OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, OPENAI_TURN_DETECTION: 'null', LOG_LEVEL: 'warn', MAX_PARTICIPANTS: '100000' },
});
const [pid] = workerdPids();
if (pid === undefined) throw new Error('workerd process not found');

const ws = new WebSocket(`${worker.url.origin.replace('http', 'ws')}/transcribe?sessionId=mem&sendBack=true`);
await new Promise((resolve, reject) => {
  ws.once('open', resolve);
  ws.once('error', reject);
});

let participants = 0;
let chunk = 0;
// Every participant sends one packet every 20 ms, as long as the run lasts.
const pump = setInterval(() => {
  chunk++;
  for (let p = 0; p < participants; p++) {
    const payload = packets[(chunk + p * 7) % packets.length];
    ws.send(`{"event":"media","media":{"tag":"p${p}-0","chunk":${chunk},"timestamp":${chunk * 960},"payload":"${payload}"}}`);
  }
}, 20);

console.log('participants  workerd RSS MB  fake connections');
const rows: [number, number][] = [];
for (const step of STEPS) {
  participants = step;
  await new Promise((r) => setTimeout(r, 4000));
  const rss = rssMb(pid);
  rows.push([step, rss]);
  console.log(`${String(step).padStart(12)}  ${rss.toFixed(1).padStart(14)}  ${String(fake.connections.length).padStart(16)}`);
}
clearInterval(pump);
ws.close();

const [[n0, base], [n1, top]] = [rows[0]!, rows.at(-1)!];
const perParticipantMb = (top - base) / (n1 - n0);
console.log(`\n${(perParticipantMb * 1024).toFixed(0)} KB per participant (RSS slope ${n0} to ${n1}); ` +
  `baseline ${base.toFixed(1)} MB; fits ${Math.floor((ISOLATE_LIMIT_MB - base) / perParticipantMb)} participants under the ${ISOLATE_LIMIT_MB} MB isolate limit`);
await worker.dispose();
await fake.close();
