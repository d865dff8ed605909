/**
 * Shutdown (docs/PROTOCOL.md §6.1): the real entries (`npm start`'s and Deno's) in their own
 * processes, sent SIGTERM while a participant is mid-utterance. Only the drain can end the
 * utterance (no idle commit within 60 s, no provider VAD), and the fake OpenAI is made slow to
 * answer so that the drain lasts long enough to be looked at.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeDispatcher } from '../fakes/dispatcher.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TAG_B, TestClient, replayJvb } from '../helpers/client.ts';
import { readCapture } from '../helpers/fixtures.ts';
import { onlyTag } from '../helpers/provider-server.ts';
import { until } from '../helpers/wait.ts';
import { ENTRIES } from '../helpers/entries.ts';
/** 1.6 s of speaker B, one utterance. */
const speech = onlyTag(readCapture(), TAG_B).slice(0, 80);



describe.each(['node', 'deno'] as const)('SIGTERM to the %s server while a final is pending', (runtime) => {
  let fake: FakeOpenAI;
  let dispatcher: FakeDispatcher;
  beforeAll(async () => {
    fake = await FakeOpenAI.start();
    dispatcher = await FakeDispatcher.start();
  });
  afterEach(() => {
    fake.faults = {};
  });
  afterAll(async () => {
    await fake.close();
    await dispatcher.close();
  });

  /** The entry with a participant mid-utterance, its audio at the provider. */
  async function midUtterance(env: Record<string, string> = {}) {
    const server = await ENTRIES[runtime]({
      OPENAI_API_KEY: fake.apiKey,
      OPENAI_BASE_URL: fake.baseUrl,
      FORCE_COMMIT_TIMEOUT: '60',
      OPENAI_TURN_DETECTION: 'null',
      DISPATCHER_WS_URL: dispatcher.url(),
      LOG_LEVEL: 'info',
      // The utterance must still be pending at the signal: no local end of speech commits it.
      SILENCE_GATE: 'false',
      ...env,
    });
    const sessionId = `drain-${runtime}-${Math.random().toString(36).slice(2, 8)}`;
    const ws = (query: string) => `ws://127.0.0.1:${server.port}/transcribe?${query}`;
    const client = await TestClient.connect(ws(`sessionId=${sessionId}&sendBack=true&useDispatcher=true`));
    const before = fake.connections.length;
    await replayJvb(client, { pace: 'fast', records: speech });
    await fake.waitFor(() => (fake.connections[before]?.audioMs ?? 0) >= (speech.length - 2) * 20, 'the utterance at the provider');
    return { server, client, ws, origin: `http://127.0.0.1:${server.port}` };
  }

  it('drains: refuses new sessions (503) and says so on /health, ignores a second signal, delivers the final, closes with 1001, exits 0', async () => {
    const { server, client, ws, origin } = await midUtterance();
    // The provider takes 1.5 s to answer: the drain lasts at least that long.
    fake.faults = { answerDelayMs: 1500 };
    server.signal('SIGTERM');
    await until(() => server.logs.some((l) => l.msg === 'shutting down'), 'the shutdown to begin');

    const health = await fetch(`${origin}/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'draining', runtime, sessions: 1 });
    const refused = await TestClient.connect(ws('sessionId=latecomer&sendBack=true')).then(
      () => undefined,
      (e: { status?: number; body?: string }) => e,
    );
    expect(refused).toMatchObject({ status: 503, body: 'server is shutting down' });

    // Impatience does not cut the drain short.
    server.signal('SIGTERM');
    server.signal('SIGINT');
    await new Promise((r) => setTimeout(r, 200));
    expect(client.closed).toBeUndefined();

    await client.waitFor(() => client.closed !== undefined, 'the close after the drain');
    expect(await server.exited).toBe(0);
    expect(client.finals(TAG_B)).toHaveLength(1);
    expect(client.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    const final = client.finals(TAG_B)[0]!;
    expect(dispatcher.messages().map((m) => m.messageId)).toContain(final.message_id);
    expect(server.logs.filter((l) => l.msg === 'shutting down')).toHaveLength(1);
    expect(server.logs.some((l) => l.msg === 'sessions drained')).toBe(true);
  });

  it('waits for pending finals no longer than DRAIN_TIMEOUT_MS', async () => {
    const { server, client } = await midUtterance({ DRAIN_TIMEOUT_MS: '300' });
    // A provider that would answer long after the drain's bound.
    fake.faults = { answerDelayMs: 20_000 };
    const t0 = performance.now();
    server.signal('SIGTERM');
    await client.waitFor(() => client.closed !== undefined, 'the close after the drain');
    expect(client.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(await server.exited).toBe(0);
    expect(client.finals()).toEqual([]);
    // The drain's 300 ms, then the dispatcher's (empty) queue and the close handshakes.
    expect(performance.now() - t0).toBeLessThan(5_000);
  });
});
