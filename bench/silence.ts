/**
 * What the silence gate saves (`npm run bench:silence`): the built server (its own process) in
 * front of the fake OpenAI, which keeps what it is sent; each recording sent as fast as the
 * socket takes it (the gate's decisions do not depend on pace), once with the gate on (the
 * default) and once with SILENCE_GATE=false, the reference in the same run.
 *
 * - long pauses (test/helpers/long-pauses.ts; needs opusenc): the sentences of
 *   samples/speech.ogg separated by 20 s of -62 dBFS noise, not DTX. Printed: audio seconds
 *   sent per second of speech (the sentences' duration), and the finals.
 * - the capture (bench fixtures: the shared real one when present): two participants; no
 *   ground truth of where the speech is, so sent ÷ received, and the finals.
 */
import WebSocket from 'ws';
import { OpusCodec } from '../src/codec/opus.ts';
import { loadOpusModule } from '../src/runtime/node/wasm.ts';
import { FakeOpenAI } from '../test/fakes/openai-realtime.ts';
import { benchFixtures, packetsByTag, readCapture } from '../test/helpers/fixtures.ts';
import { longPauses, opusencAvailable } from '../test/helpers/long-pauses.ts';
import { startServer, stopServer } from './server.ts';

interface Sent {
  tag: string;
  packets: Uint8Array[];
}

interface Outcome {
  sentSeconds: number;
  finals: number;
  commits: number;
}

async function run(streams: Sent[], env: Record<string, string>): Promise<Outcome> {
  const fake = await FakeOpenAI.start();
  const server = await startServer(
    { env: { OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl }, streams: () => [], counts: async () => ({ appends: 0, connections: 0, open: 0, violations: [] }), close: async () => undefined },
    { env: { FORCE_COMMIT_TIMEOUT: '2', PROVIDER_QUEUE_MS: '120000', ...env } },
  );
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/transcribe?sessionId=silence&sendBack=true`, { perMessageDeflate: false });
    const finals: unknown[] = [];
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as { event?: string; is_interim?: boolean };
      if (m.event === 'transcription-result' && !m.is_interim) finals.push(m);
    });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    for (const s of streams) ws.send(JSON.stringify({ event: 'start', start: { tag: s.tag, mediaFormat: { encoding: 'opus', sampleRate: 48000, channels: 1 } } }));
    const longest = Math.max(...streams.map((s) => s.packets.length));
    for (let i = 0; i < longest; i++) {
      for (const s of streams) {
        const p = s.packets[i];
        if (p) ws.send(JSON.stringify({ event: 'media', media: { tag: s.tag, chunk: i + 1, timestamp: i * 960, payload: Buffer.from(p).toString('base64') } }));
      }
      // Let the server keep up: 50 frames a burst, then a breath.
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5));
      // 3 s in (the first voice), the provider connection opens before more is sent: audio
      // queued while one opens keeps no utterance boundaries.
      if (i === 149) {
        const t0 = performance.now();
        while (!fake.connections.some((c) => c.sessionUpdates.length > 0) && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
      }
    }
    for (const s of streams) ws.send(JSON.stringify({ event: 'stop', stop: { tag: s.tag } }));
    // The stop commits and the fake answers at once; a little more for the finals to arrive.
    await new Promise((r) => setTimeout(r, 3000));
    ws.close();
    return {
      sentSeconds: fake.connections.reduce((n, c) => n + c.audioMs, 0) / 1000,
      finals: finals.length,
      commits: fake.connections.reduce((n, c) => n + c.commits, 0),
    };
  } finally {
    await stopServer(server);
    await fake.close();
  }
}

const codec = await OpusCodec.instantiate(await loadOpusModule());
const report = (name: string, on: Outcome, off: Outcome, speechSeconds: number | undefined, receivedSeconds: number) => {
  console.log(`\n${name}: ${receivedSeconds.toFixed(1)} s received${speechSeconds ? `, ${speechSeconds.toFixed(1)} s of it speech` : ''}`);
  for (const [label, o] of [
    ['gate on (default)', on],
    ['SILENCE_GATE=false', off],
  ] as const) {
    const perSpeech = speechSeconds ? `, ${(o.sentSeconds / speechSeconds).toFixed(2)} s per second of speech` : '';
    console.log(
      `  ${label.padEnd(19)} sent ${o.sentSeconds.toFixed(1).padStart(6)} s (${((100 * o.sentSeconds) / receivedSeconds).toFixed(0)} % of what was received${perSpeech}); ${o.finals} finals, ${o.commits} commits by the proxy`,
    );
  }
};

if (opusencAvailable()) {
  const lp = longPauses(codec);
  const streams = [{ tag: 'speaker-1', packets: lp.packets }];
  const received = lp.packets.length * 0.02;
  report('long pauses, server VAD (default turn detection)', await run(streams, {}), await run(streams, { SILENCE_GATE: 'false' }), lp.speechSeconds, received);
  report(
    'long pauses, OPENAI_TURN_DETECTION=null',
    await run(streams, { OPENAI_TURN_DETECTION: 'null' }),
    await run(streams, { OPENAI_TURN_DETECTION: 'null', SILENCE_GATE: 'false' }),
    lp.speechSeconds,
    received,
  );
} else console.log('long pauses: skipped, opusenc (opus-tools) is not installed');

const capture = [...packetsByTag(readCapture(benchFixtures().capture)).entries()].map(([tag, packets]) => ({ tag, packets }));
const receivedCapture = capture.reduce((n, s) => n + s.packets.length, 0) * 0.02;
report('the capture, server VAD', await run(capture, {}), await run(capture, { SILENCE_GATE: 'false' }), undefined, receivedCapture);
