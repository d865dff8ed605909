/**
 * The app's observable behaviour, one suite run against every runtime (Node, Deno, workerd):
 * over a real WebSocket, against the fake OpenAI Realtime server in this process. The last
 * test compares the runtimes' transcripts with each other.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { FakeOpenAI, type FakeRealtimeConnection } from '../fakes/openai-realtime.ts';
import { TAG_A, TAG_B, TestClient, replayJvb } from '../helpers/client.ts';
import { readJvbCapture } from '../helpers/fixtures.ts';
import { until } from '../helpers/wait.ts';
import { LAUNCHERS, type RunningApp } from './launchers.ts';

const capture = readJvbCapture();

const transcriptionOf = (c: FakeRealtimeConnection) =>
  (c.sessionUpdates[0] as { audio?: { input?: { transcription?: { language?: string } } } } | undefined)?.audio?.input?.transcription;
/** Finals per runtime, `tag: text`, for the cross-runtime comparison. */
const finalsByRuntime = new Map<string, string[]>();

describe.each(LAUNCHERS)('on $runtime', ({ runtime, start }) => {
  let fake: FakeOpenAI;
  let app: RunningApp;
  let ws: (query: string, path?: string) => string;

  beforeAll(async () => {
    fake = await FakeOpenAI.start();
    app = await start({
      OPENAI_API_KEY: fake.apiKey,
      OPENAI_BASE_URL: fake.baseUrl,
      FORCE_COMMIT_TIMEOUT: '0.5',
      // A fast replay delivers the whole capture while the provider connection opens.
      PROVIDER_QUEUE_MS: '60000',
      MAX_PARTICIPANTS: '4',
      // The launchers learn the port from the info-level 'listening' line.
      LOG_LEVEL: 'info',
    });
    ws = (query, path = '/transcribe') => `${app.origin.replace('http', 'ws')}${path}?${query}`;
  });

  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  it('answers /health with its runtime', async () => {
    const res = await fetch(`${app.origin}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', runtime, providers: ['openai'] });
  });

  it('answers 426 without an upgrade, 404 elsewhere, and 400 with a one-line reason for bad parameters', async () => {
    expect((await fetch(`${app.origin}/transcribe`)).status).toBe(426);
    expect((await fetch(`${app.origin}/elsewhere`)).status).toBe(404);
    for (const [query, reason] of [
      ['sessionId=x', 'No transcription output method specified'],
      ['sendBack=true&provider=nope', 'provider "nope" is not configured'],
      ['sendBack=true&encoding=mp3', 'encoding must be opus or ogg-opus'],
    ]) {
      const refused = await TestClient.connect(ws(query!)).then(
        () => undefined,
        (e: { status?: number; body?: string }) => e,
      );
      expect(refused, query).toMatchObject({ status: 400, body: expect.stringContaining(reason!) });
    }
  });

  it("agrees to the client's subprotocol and accepts /transcribe under any prefix", async () => {
    const socket = new WebSocket(ws('sessionId=sub&sendBack=true', '/mounted/here/transcribe'), ['jitsi-transcriber']);
    const info = new Promise<string>((resolve) => socket.once('message', (data) => resolve(data.toString())));
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    expect(socket.protocol).toBe('jitsi-transcriber');
    expect(JSON.parse(await info)).toMatchObject({ event: 'info', runtime, sessionId: 'sub' });
    socket.close(1000);
    await new Promise((resolve) => socket.once('close', resolve));
  });

  it('sends info first, and answers ping with pong', async () => {
    const client = await TestClient.connect(ws('sessionId=conf&sendBack=true'));
    client.send({ event: 'ping', id: 42 });
    await client.waitFor(() => client.messages.length >= 2, 'info and pong');
    expect(client.messages[0]).toMatchObject({ event: 'info', runtime, provider: 'openai', providersAvailable: ['openai'], sessionId: 'conf' });
    expect(client.messages[1]).toEqual({ event: 'pong', id: 42 });
    await client.close();
  });

  it('transcribes the JVB capture for both participants, interims only when asked, surviving bad input', async () => {
    const withInterims = await TestClient.connect(ws('sessionId=replay&sendBack=true&sendBackInterim=true'));
    const finalsOnly = await TestClient.connect(ws('sessionId=replay-2&sendBack=true'));
    let n = 0;
    const withGarbage = (data: string) => {
      // Every 200th frame: a non-JSON frame, bad base64, an unknown event.
      if (++n % 200 === 0) {
        withInterims.send('not json');
        withInterims.send({ event: 'media', media: { tag: TAG_A, chunk: 1, timestamp: 1, payload: '@@@' } });
        withInterims.send({ event: 'juggle' });
      }
      return data;
    };
    await Promise.all([
      replayJvb(withInterims, { pace: 'fast', records: capture, map: (r) => withGarbage(r.data) }),
      replayJvb(finalsOnly, { pace: 'fast', records: capture }),
    ]);
    for (const client of [withInterims, finalsOnly]) {
      await client.waitFor(() => client.finals(TAG_A).length > 0 && client.finals(TAG_B).length > 0, 'finals for both participants');
    }
    // Every utterance the provider completed came back, once: wait for all the audio and
    // for each stream's last utterance to be closed first.
    const completed = () => fake.connections.flatMap((c) => c.completed()).filter((t) => t !== '');
    const media = capture.filter((r) => r.event === 'media').length;
    await fake.waitFor(() => fake.connections.reduce((sum, c) => sum + c.appends, 0) === 2 * media, 'all the audio');
    await fake.waitFor(() => fake.connections.every((c) => !c.speaking), 'every utterance closed (by silence or the idle commit)');
    await until(() => withInterims.finals().length + finalsOnly.finals().length === completed().length, 'every final');
    expect(withInterims.finals(TAG_A)[0]!.participant).toEqual({ id: 'aaaaaaaa', tag: TAG_A });
    expect(withInterims.interims().length).toBeGreaterThan(0);
    expect(finalsOnly.interims()).toEqual([]);
    expect(withInterims.closed).toBeUndefined();
    for (const conn of fake.connections) {
      expect(conn.violations).toEqual([]);
      // One auth form only: the header, which every runtime's connector can set.
      expect(conn.headers.authorization).toBe(`Bearer ${fake.apiKey}`);
      expect(conn.protocols).toEqual([]);
    }
    const words = (c: TestClient) => c.finals().map((f) => `${f.participant.tag}: ${f.transcript[0]!.text}`);
    expect(words(withInterims).sort()).toEqual(words(finalsOnly).sort());
    finalsByRuntime.set(runtime, words(finalsOnly).sort());
    await Promise.all([withInterims.close(), finalsOnly.close()]);
  });

  it('closes with 1008 and a clear reason when a connection exceeds its participant limit', async () => {
    const client = await TestClient.connect(ws('sessionId=crowd&sendBack=true'));
    const packet = capture.find((r) => r.event === 'media')!;
    const payload = JSON.parse(packet.data).media.payload as string;
    for (let p = 0; p < 5; p++) client.send({ event: 'media', media: { tag: `p${p}-0`, chunk: 1, timestamp: 960, payload } });
    await client.waitFor(() => client.closed !== undefined, 'the close');
    expect(client.closed).toEqual({ code: 1008, reason: 'participant limit of 4 reached' });
  });

  it('flushes a tag\'s utterance on stop', async () => {
    // The session's language marks its provider connection: earlier tests' connections may
    // still be arriving at the fake.
    const client = await TestClient.connect(ws('sessionId=stopper&sendBack=true&lang=fr'));
    const mine = () => fake.connections.find((c) => transcriptionOf(c)?.language === 'fr');
    // 3 s of speaker A, then stop: the final comes from the stop, not from a silence.
    await replayJvb(client, { pace: 'fast', records: capture.filter((r) => r.tag === TAG_A).slice(0, 151) });
    await fake.waitFor(() => mine()?.appends === 150, 'the audio');
    const conn = mine()!;
    expect(conn.commits).toBe(0);
    client.send({ event: 'stop', stop: { tag: TAG_A } });
    await fake.waitFor(() => conn.closedWith !== undefined, 'the provider stream to close');
    expect(conn.commits).toBe(1);
    expect(conn.closedWith).toMatchObject({ by: 'client', code: 1000 });
    // The utterance in flight at the stop was completed and delivered before the close.
    const texts = conn.completed().filter((t) => t !== '');
    expect(texts.length).toBeGreaterThan(0);
    await client.waitFor(() => client.finals().length === texts.length, 'the flushed final');
    expect(client.finals().map((f) => f.transcript[0]!.text)).toEqual(texts);
    await client.close();
  });
});

describe('across runtimes', () => {
  it('every runtime produced the same finals from the same capture', () => {
    const [first, ...rest] = [...finalsByRuntime.values()];
    expect(finalsByRuntime.size).toBe(LAUNCHERS.length);
    expect(first!.length).toBeGreaterThan(0);
    for (const other of rest) expect(other).toEqual(first);
  });
});
