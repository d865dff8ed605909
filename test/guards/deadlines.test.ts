/**
 * Deadlines, asserted from both sides on the injected clock, end to end: the real server's
 * app on a manual clock, a media-server client and the fake OpenAI Realtime server on real
 * sockets.
 *
 * - The idle commit fires FORCE_COMMIT_TIMEOUT after the last audio: not before, and not
 *   later than one sweep of the session's idle check after it.
 * - A refused OpenAI key is retried after the long auth backoff (30 s), not after the
 *   0.5 s of a transient failure.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TAG_A, type TestClient } from '../helpers/client.ts';
import { settle } from '../helpers/clock.ts';
import { startClockedServer, type ClockedServer } from '../helpers/clocked-server.ts';
import { packetsByTag, readCapture } from '../helpers/fixtures.ts';
import { until } from '../helpers/wait.ts';

const packets = packetsByTag(readCapture()).get(TAG_A)!;

let fake: FakeOpenAI | undefined;
let server: ClockedServer | undefined;
afterEach(async () => {
  await server?.close();
  await fake?.close();
  server = fake = undefined;
});

function sendAudio(client: TestClient, from: number, count: number): void {
  for (let i = from; i < from + count; i++) {
    const payload = Buffer.from(packets[i % packets.length]!).toString('base64');
    client.send({ event: 'media', media: { tag: TAG_A, chunk: i + 1, timestamp: (i + 1) * 960, payload } });
  }
}

describe('the idle commit', () => {
  for (const seconds of [2, 0.5]) {
    it(`fires FORCE_COMMIT_TIMEOUT=${seconds} after the last audio on the clock: not before, and within one idle sweep after`, async () => {
      const timeout = seconds * 1000;
      // The session checks for silences every min(250, timeout / 4) ms.
      const sweep = Math.min(250, Math.max(20, timeout / 4));
      fake = await FakeOpenAI.start();
      server = await startClockedServer({
        OPENAI_API_KEY: fake.apiKey,
        OPENAI_BASE_URL: fake.baseUrl,
        OPENAI_TURN_DETECTION: 'null',
        FORCE_COMMIT_TIMEOUT: String(seconds),
      });
      const client = await server.connect();
      client.send({ event: 'start', start: { tag: TAG_A, mediaFormat: { encoding: 'opus' } } });
      sendAudio(client, 0, 100);
      const f = fake;
      await f.waitFor(() => f.connections[0]?.appends === 100, 'the audio at the provider');
      const commits = () => server!.connector.sentOfType(0, 'input_audio_buffer.commit').length;

      server.clock.advance(timeout - 1);
      await settle();
      expect(commits(), 'committed before FORCE_COMMIT_TIMEOUT').toBe(0);
      expect(client.finals()).toEqual([]);

      server.clock.advance(sweep + 1);
      expect(commits(), `not committed by FORCE_COMMIT_TIMEOUT + ${sweep} ms`).toBe(1);
      // What the user sees: the utterance's final, from that commit.
      await client.waitFor(() => client.finals().length === 1, 'the final');
      expect(f.connections[0]!.commits).toBe(1);
      expect(client.finals()[0]!.transcript[0]!.text).toBe(f.connections[0]!.completed()[0]);

      // Silence goes on: nothing more to commit.
      server.clock.advance(10 * timeout);
      expect(commits()).toBe(1);
    });
  }

  it('waits for the silence: audio still arriving keeps moving the deadline', async () => {
    fake = await FakeOpenAI.start();
    server = await startClockedServer({ OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, OPENAI_TURN_DETECTION: 'null', FORCE_COMMIT_TIMEOUT: '2' });
    const client = await server.connect();
    const f = fake;
    const commits = () => server!.connector.sentOfType(0, 'input_audio_buffer.commit').length;
    for (let step = 0; step < 5; step++) {
      sendAudio(client, step * 10, 10);
      await f.waitFor(() => f.connections[0]?.appends === (step + 1) * 10, 'the audio at the provider');
      server.clock.advance(1_500);
      expect(commits()).toBe(0);
    }
    server.clock.advance(500);
    expect(commits()).toBe(1);
  });
});

describe('an OpenAI auth failure', () => {
  const cases = [
    { name: 'the key refused after the handshake (invalid_api_key, then 3000)', refuse: undefined },
    { name: 'the handshake refused with 401', refuse: 401 },
  ];
  for (const c of cases) {
    it(`is retried after the 30 s auth backoff, not after 0.5 s: ${c.name}`, async () => {
      fake = await FakeOpenAI.start();
      if (c.refuse) fake.faults.refuseHandshake = c.refuse;
      server = await startClockedServer({
        OPENAI_API_KEY: c.refuse ? fake.apiKey : `sk-wrong-${randomUUID()}`,
        OPENAI_BASE_URL: fake.baseUrl,
        OPENAI_TURN_DETECTION: 'null',
      });
      const s = server;
      const client = await s.connect();
      sendAudio(client, 0, 20);
      await until(() => s.connector.attempts.length === 1, 'the first attempt');
      await s.connector.settled();
      await until(() => s.logs.some((l) => l.msg === 'provider connection failed'), 'the failure in the log');
      expect(s.logs.find((l) => l.msg === 'provider connection failed')).toMatchObject({ kind: 'auth', retryInMs: 30_000 });
      // The client is told, once.
      await client.waitFor(() => client.messages.some((m) => m.event === 'error'), 'the error event');
      expect(client.messages.filter((m) => m.event === 'error')).toMatchObject([{ code: 'provider_auth', tag: TAG_A, provider: 'openai' }]);

      // Audio keeps coming; no retry before the 30 s are over.
      for (const step of [500, 1_000, 10_000, 29_999]) {
        s.clock.advanceTo(s.connector.attempts[0]!.at + step);
        sendAudio(client, step, 5);
        await until(() => s.metrics.framesTotal.get() >= 20 + 5 * ([500, 1_000, 10_000, 29_999].indexOf(step) + 1), 'the audio at the server');
        await settle();
        expect(s.connector.attempts, `retried ${step} ms after an auth failure`).toHaveLength(1);
      }
      s.clock.advanceTo(s.connector.attempts[0]!.at + 30_000);
      expect(s.connector.attempts).toHaveLength(2);
      expect(client.closed).toBeUndefined();
    });
  }
});
