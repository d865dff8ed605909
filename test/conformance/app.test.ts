/**
 * The app's observable behaviour, one suite run against every runtime (Node, Deno, workerd):
 * over a real WebSocket, against the fake OpenAI Realtime server in this process. The last
 * tests compare the runtimes' transcripts with each other: of the repository's capture, and
 * of the shared real Videobridge capture when it is beside the checkout.
 */
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { FakeRealtimeConnection } from '../fakes/openai-realtime.ts';
import { TAG_A, TestClient, replayJvb } from '../helpers/client.ts';
import { captureParticipants, readCapture, sharedFixture, sharedFixtures, type JvbRecord } from '../helpers/fixtures.ts';
import { until } from '../helpers/wait.ts';
import { LAUNCHERS, appBehindFakeOpenAI } from './launchers.ts';

const capture = readCapture();
const shared = sharedFixtures.availableFor(import.meta.url, 'the cross-runtime finals of the real Videobridge capture');

const transcriptionOf = (c: FakeRealtimeConnection) =>
  (c.sessionUpdates[0] as { audio?: { input?: { transcription?: { language?: string } } } } | undefined)?.audio?.input?.transcription;
/** Finals per runtime, `tag: text`, for the cross-runtime comparison: of the repository's capture, of the shared one. */
const finalsByRuntime = new Map<string, string[]>();
const realFinalsByRuntime = new Map<string, string[]>();

describe.each(LAUNCHERS)('on $runtime', ({ runtime, start }) => {
  // Node and Deno servers also run the keyless `local` provider; the Worker has no room for it.
  const providers = runtime === 'workerd' ? ['openai'] : ['openai', 'local'];
  const known = runtime === 'workerd' ? 'openai, deepgram, gemini, vosk' : 'openai, deepgram, gemini, vosk, local';

  const running = appBehindFakeOpenAI(start, {
    FORCE_COMMIT_TIMEOUT: '0.5',
    // A fast replay delivers the whole capture while the provider connection opens.
    PROVIDER_QUEUE_MS: '60000',
    MAX_PARTICIPANTS: '4',
    // Every frame to the provider, one message each (the suite counts appends and compares
    // every runtime's finals; test/e2e/silence.test.ts covers the gate and batching), and no
    // saturation limit on a machine the three runtimes share.
    SILENCE_GATE: 'false',
    PCM_BATCH_MS: '0',
    MAX_EVENT_LOOP_LAG_MS: '0',
    MAX_EVENT_LOOP_UTILIZATION: '0',
  });
  const ws = (query: string, path = '/transcribe') => `${running.app.origin.replace('http', 'ws')}${path}?${query}`;

  it('answers /health with its runtime', async () => {
    const res = await fetch(`${running.app.origin}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', runtime, providers });
  });

  it('serves the caption page at /', async () => {
    const res = await fetch(`${running.app.origin}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=UTF-8');
    const html = await res.text();
    expect(html).toContain('<main id="captions" aria-live="polite"');
    expect(html).toContain("new URL('transcribe?'");
  });

  it('answers 426 without an upgrade, 404 elsewhere, and 400 with a one-line reason for bad parameters', async () => {
    expect((await fetch(`${running.app.origin}/transcribe`)).status).toBe(426);
    expect((await fetch(`${running.app.origin}/elsewhere`)).status).toBe(404);
    for (const [query, reason] of [
      ['sessionId=x', 'no output: set sendBack=true (and sendBackInterim=true for interims) or useDispatcher=true'],
      ['sendBack=true&provider=nope', `provider "nope" is unknown; known providers: ${known}`],
      ['sendBack=true&provider=gemini', `provider "gemini" is not configured: set GEMINI_API_KEY (configured: ${providers.join(', ')})`],
      ['sendBack=true&encoding=mp3', 'encoding must be opus or ogg-opus (got "mp3")'],
      // Every problem at once, on one line.
      [
        'sendBack=maybe&lang=english!&encoding=mp3',
        'lang must be a BCP-47 or ISO 639-1 code such as en or pt-BR (got "english!"); encoding must be opus or ogg-opus (got "mp3"); ' +
          'sendBack must be true or false (or 1, 0, yes, no, on, off), got "maybe"',
      ],
    ]) {
      const refused = await TestClient.connect(ws(query!)).then(
        () => undefined,
        (e: { status?: number; body?: string }) => e,
      );
      expect(refused, query).toMatchObject({ status: 400, body: reason });
    }
    // Booleans as the environment reads them.
    const accepted = await TestClient.connect(ws('sessionId=yes&sendBack=YES&sendBackInterim=0'));
    await accepted.close();
  });

  it('answers each bad frame with one error event naming the problem, and carries on', async () => {
    const client = await TestClient.connect(ws('sessionId=garbage&sendBack=true'));
    const bad: [code: string, frame: string | Uint8Array, message: string][] = [
      ['invalid_json', 'not json', 'message is not JSON'],
      ['binary_frame', new Uint8Array([1, 2, 3]), 'binary frames are not accepted; send JSON text frames'],
      ['too_large', JSON.stringify({ event: 'ping', pad: 'x'.repeat(300_000) }), 'message of 300025 bytes exceeds the 262144-byte limit (MAX_MESSAGE_BYTES)'],
      ['bad_base64', JSON.stringify({ event: 'media', media: { tag: TAG_A, payload: '@@@' } }), 'media payload is not valid base64'],
      ['invalid_media', JSON.stringify({ event: 'media', media: { tag: TAG_A } }), 'media: media.payload: Invalid key: Expected "payload" but received undefined'],
      [
        'invalid_start',
        JSON.stringify({ event: 'start', start: { tag: 'x-1', mediaFormat: { encoding: 'mp3' } } }),
        'start: start.mediaFormat.encoding: Invalid type: Expected ("opus" | "ogg-opus" | "ogg" | "l16") but received "mp3"',
      ],
      ['invalid_stop', JSON.stringify({ event: 'stop', stop: {} }), 'stop: stop.tag: Invalid key: Expected "tag" but received undefined'],
      ['unknown_event', JSON.stringify({ event: 'juggle' }), 'unknown event "juggle"; events are start, media, stop, ping, info, usage'],
    ];
    // Raw: TestClient.send would turn the binary frame into JSON text.
    for (const [, frame] of bad) client.ws.send(frame);
    client.send({ event: 'ping', id: 'after' });
    await client.waitFor(() => client.messages.some((m) => m.event === 'pong'), 'the pong');
    expect(client.messages.slice(1)).toEqual([
      ...bad.map(([code, , message]) => (code === 'bad_base64' ? { event: 'error', code, message, tag: TAG_A } : { event: 'error', code, message })),
      { event: 'pong', id: 'after' },
    ]);
    expect(client.closed).toBeUndefined();
    await client.close();
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
    expect(client.messages[0]).toMatchObject({ event: 'info', runtime, provider: 'openai', providersAvailable: providers, sessionId: 'conf' });
    expect(client.messages[1]).toEqual({ event: 'pong', id: 42 });
    await client.close();
  });

  /**
   * Replays `records` on two sessions, one with interims and garbage in between, and checks
   * what came back; returns the finals as `tag: text`, sorted.
   */
  async function transcribe(records: JvbRecord[], sessionId: string): Promise<string[]> {
    const [a, b] = captureParticipants(records) as [{ tag: string; id: string }, { tag: string; id: string }];
    const mark = running.fake.connections.length;
    const withInterims = await TestClient.connect(ws(`sessionId=${sessionId}&sendBack=true&sendBackInterim=true`));
    const finalsOnly = await TestClient.connect(ws(`sessionId=${sessionId}-2&sendBack=true`));
    let n = 0;
    const every = Math.max(1, Math.floor(records.length / 10));
    const withGarbage = (data: string) => {
      // About ten times over the capture: a non-JSON frame, bad base64, an unknown event.
      if (++n % every === 0) {
        withInterims.send('not json');
        withInterims.send({ event: 'media', media: { tag: a.tag, chunk: 1, timestamp: 1, payload: '@@@' } });
        withInterims.send({ event: 'juggle' });
      }
      return data;
    };
    await Promise.all([
      replayJvb(withInterims, { pace: 'fast', records, map: (r) => withGarbage(r.data) }),
      replayJvb(finalsOnly, { pace: 'fast', records }),
    ]);
    for (const client of [withInterims, finalsOnly]) {
      await client.waitFor(() => client.finals(a.tag).length > 0 && client.finals(b.tag).length > 0, 'finals for both participants');
    }
    // Every utterance the provider completed came back, once: wait for all the audio and
    // for each stream's last utterance to be closed first.
    const mine = () => running.fake.connections.slice(mark);
    const completed = () => mine().flatMap((c) => c.completed()).filter((t) => t !== '');
    const media = records.filter((r) => r.event === 'media').length;
    await running.fake.waitFor(() => mine().reduce((sum, c) => sum + c.appends, 0) === 2 * media, 'all the audio');
    await running.fake.waitFor(() => mine().every((c) => !c.speaking), 'every utterance closed (by silence or the idle commit)');
    await until(() => withInterims.finals().length + finalsOnly.finals().length === completed().length, 'every final');
    expect(withInterims.finals(a.tag)[0]!.participant).toEqual(a);
    expect(withInterims.finals(b.tag)[0]!.participant).toEqual(b);
    expect(withInterims.interims().length).toBeGreaterThan(0);
    expect(finalsOnly.interims()).toEqual([]);
    expect(withInterims.closed).toBeUndefined();
    for (const conn of mine()) {
      expect(conn.violations).toEqual([]);
      // One auth form only: the header, which every runtime's connector can set.
      expect(conn.headers.authorization).toBe(`Bearer ${running.fake.apiKey}`);
      expect(conn.protocols).toEqual([]);
    }
    const words = (c: TestClient) => c.finals().map((f) => `${f.participant.tag}: ${f.transcript[0]!.text}`);
    expect(words(withInterims).sort()).toEqual(words(finalsOnly).sort());
    await Promise.all([withInterims.close(), finalsOnly.close()]);
    return words(finalsOnly).sort();
  }

  it('transcribes the capture for both participants, interims only when asked, surviving bad input', async () => {
    finalsByRuntime.set(runtime, await transcribe(capture, 'replay'));
  });

  it.skipIf(!shared)('transcribes the shared real Videobridge capture the same way', async () => {
    realFinalsByRuntime.set(runtime, await transcribe(readCapture(sharedFixture('jvb-two-speakers.jsonl')), 'real'));
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
    // still be arriving at the running.fake.
    const client = await TestClient.connect(ws('sessionId=stopper&sendBack=true&lang=fr'));
    const mine = () => running.fake.connections.find((c) => transcriptionOf(c)?.language === 'fr');
    // 3 s of speaker A, then stop: the final comes from the stop, not from a silence.
    await replayJvb(client, { pace: 'fast', records: capture.filter((r) => r.tag === TAG_A).slice(0, 151) });
    await running.fake.waitFor(() => mine()?.appends === 150, 'the audio');
    const conn = mine()!;
    expect(conn.commits).toBe(0);
    client.send({ event: 'stop', stop: { tag: TAG_A } });
    await running.fake.waitFor(() => conn.closedWith !== undefined, 'the provider stream to close');
    expect(conn.commits).toBe(1);
    expect(conn.closedWith).toMatchObject({ by: 'client', code: 1000 });
    // The utterance in flight at the stop was completed and delivered before the close.
    const texts = conn.completed().filter((t) => t !== '');
    expect(texts.length).toBeGreaterThan(0);
    await client.waitFor(() => client.finals().length === texts.length, 'the flushed final');
    expect(client.finals().map((f) => f.transcript[0]!.text)).toEqual(texts);
    await client.close();
  });

  it('resumes a session whose socket dropped: the same provider stream, its info, the final made meanwhile, then new audio', async ({ skip }) => {
    skip(
      runtime === 'workerd',
      'the Worker transcribing in its own isolate does not resume (RESUME_GRACE_MS is 0 there): workerd lets no request use a socket another request opened, so a provider stream cannot outlive its client socket',
    );
    const speech = capture.filter((r) => r.tag === TAG_A);
    const query = 'sessionId=resumer&sendBack=true&lang=de';
    const mine = () => running.fake.connections.filter((c) => transcriptionOf(c)?.language === 'de');
    const first = await TestClient.connect(ws(query));
    // 2 s of speaker A (its start and 100 packets).
    await replayJvb(first, { pace: 'fast', records: speech.slice(0, 101) });
    await running.fake.waitFor(() => mine()[0]?.appends === 100, 'the audio');
    // The socket is just gone (no close frame); the idle commit finishes the utterance meanwhile.
    first.ws.terminate();
    await running.fake.waitFor(() => mine()[0]!.completed().some((t) => t !== ''), 'the utterance completed');
    const second = await TestClient.connect(ws(query));
    await second.waitFor(() => second.finals().length === 1, 'the final made while detached');
    expect(second.messages[0]).toMatchObject({ event: 'info', runtime, sessionId: 'resumer' });
    expect(second.messages[1]).toMatchObject({ event: 'transcription-result', is_interim: false });
    expect(second.finals()[0]!.transcript[0]!.text).toBe(mine()[0]!.completed().find((t) => t !== ''));
    expect(first.finals()).toEqual([]);
    // New audio goes on the same provider stream.
    await replayJvb(second, { pace: 'fast', records: speech.slice(101, 151) });
    await running.fake.waitFor(() => mine()[0]!.appends === 150, 'the new audio on the same stream');
    expect(mine()).toHaveLength(1);
    await second.close();
  });
});

describe('across runtimes', () => {
  const sameFinals = (byRuntime: Map<string, string[]>) => {
    const [first, ...rest] = [...byRuntime.values()];
    expect(byRuntime.size).toBe(LAUNCHERS.length);
    expect(first!.length).toBeGreaterThan(0);
    for (const other of rest) expect(other).toEqual(first);
  };

  it('every runtime produced the same finals from the same capture', () => sameFinals(finalsByRuntime));

  it.skipIf(!shared)('every runtime produced the same finals from the shared real capture', () => sameFinals(realFinalsByRuntime));
});
