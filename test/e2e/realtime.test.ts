/**
 * Real-time pacing, as media servers send: the repository's Videobridge capture at its
 * recorded pace, and the widely used health check that streams an Ogg Opus file
 * (samples/speech.ogg) as 200-byte slices labelled `opus`. This file takes about the
 * capture's length plus the sample's; vitest runs it beside the others.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SPEECH_OGG_PATH, readCapture } from '../helpers/fixtures.ts';
import { ID_A, ID_B, TAG_A, TAG_B, replayJvb, type TestClient } from '../helpers/client.ts';
import { startProxy, type Proxy } from '../helpers/proxy.ts';

let proxy: Proxy;
beforeAll(async () => {
  proxy = await startProxy(); // production defaults: FORCE_COMMIT_TIMEOUT 2 s, 10 s queue
});
afterAll(() => proxy.close());

async function streamOggSlices(client: TestClient): Promise<void> {
  const ogg = readFileSync(SPEECH_OGG_PATH);
  const tag = 'cafe01-a0';
  client.send({ event: 'start', start: { tag, mediaFormat: { encoding: 'opus', sampleRate: 48000, channels: 1 } } });
  let chunk = 0;
  const t0 = performance.now();
  for (let at = 0; at < ogg.length; at += 200) {
    const due = chunk * 20 - (performance.now() - t0);
    if (due > 1) await new Promise((r) => setTimeout(r, due));
    client.send({
      event: 'media',
      media: { tag, chunk: ++chunk, timestamp: chunk * 960, payload: ogg.subarray(at, at + 200).toString('base64') },
    });
  }
}

it('the capture at real-time pace: finals for both participants while they speak, interims only when asked', async () => {
  const [withInterims, finalsOnly] = await Promise.all([
    proxy.connect({ sessionId: 'rt-interim', sendBackInterim: 'true' }),
    proxy.connect({ sessionId: 'rt-finals' }),
  ]);
  const capture = readCapture();
  const lastA = capture.filter((r) => r.tag === TAG_A).at(-1)!.receivedAt;
  const started = Date.now() - capture[0]!.receivedAt;
  await Promise.all([replayJvb(withInterims, { pace: 'realtime', records: capture }), replayJvb(finalsOnly, { pace: 'realtime', records: capture })]);
  for (const client of [withInterims, finalsOnly]) {
    await client.waitFor(() => client.finals(TAG_A).length >= 2 && client.finals(TAG_B).length > 0, 'finals for both');
    expect(client.finals(TAG_A)[0]!.participant).toEqual({ id: ID_A, tag: TAG_A });
    expect(client.finals(TAG_B)[0]!.participant).toEqual({ id: ID_B, tag: TAG_B });
  }
  expect(withInterims.interims().length).toBeGreaterThan(0);
  expect(finalsOnly.interims()).toEqual([]);
  // Speaker B's finals came back while the call was going on, not at the end of it.
  const firstB = withInterims.finals(TAG_B)[0]!;
  expect(firstB.timestamp).toBeLessThan(lastA + started);
  // Both sessions heard the same audio and got the same words.
  const words = (c: TestClient) => c.finals().map((f) => `${f.participant.tag}: ${f.transcript[0]!.text}`).sort();
  expect(words(withInterims)).toEqual(words(finalsOnly));
});

it('an Ogg Opus file as 200-byte slices labelled opus, 20 ms apart: a final within 10 s of the last slice', async () => {
  const client = await proxy.connect({ sessionId: 'health-check' });
  await streamOggSlices(client);
  // The health check's own deadline, counted from the last slice: it is the contract under test,
  // so it stays at 10 s. The proxy needs FORCE_COMMIT_TIMEOUT (2 s) and a round trip to the fake
  // on 127.0.0.1, a fifth of it; only a machine stalled for 8 s could fail it.
  await client.waitFor(() => client.finals('cafe01-a0').length > 0, 'a final', 10_000);
  expect(client.finals('cafe01-a0')[0]!.transcript[0]!.text.split(' ').length).toBeGreaterThan(3);
});
