/**
 * Gemini Live through the real Node server: the JVB capture replayed by a media-server
 * stand-in, the fake Live API (test/fakes/gemini-live.ts) behind it. Assertions are on
 * messages on the client socket, what the fake received, log lines and /metrics.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeGeminiLive, type FakeGeminiConnection, type FakeGeminiOptions } from '../fakes/gemini-live.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TAG_A, TAG_B, replayJvb, type TestClient } from '../helpers/client.ts';
import { packetsByTag, readCapture } from '../helpers/fixtures.ts';
import { metricValue } from '../helpers/proxy.ts';
import { onlyTag, resultsFor, startProviderServer, type ProviderServer } from '../helpers/provider-server.ts';
import { until } from '../helpers/wait.ts';

const records = readCapture();
const packets = packetsByTag(records);
/** 20 ms at 16 kHz per packet. */
const samplesOf = (tag: string) => packets.get(tag)!.length * 320;

let fake: FakeGeminiLive | undefined;
let openai: FakeOpenAI | undefined;
let proxy: ProviderServer | undefined;
afterEach(async () => {
  await proxy?.close();
  await fake?.close();
  await openai?.close();
  proxy = fake = openai = undefined;
});

async function start(env: Record<string, string> = {}, options: FakeGeminiOptions = {}, apiKey?: string) {
  fake = await FakeGeminiLive.start(options);
  proxy = await startProviderServer({
    GEMINI_API_KEY: apiKey ?? fake.apiKey,
    GEMINI_BASE_URL: fake.baseUrl,
    PROVIDER_QUEUE_MS: '120000',
    FORCE_COMMIT_TIMEOUT: '0.5',
    ...env,
  });
  return { fake, proxy };
}

type Json = Record<string, unknown>;
interface Seen {
  kind: 'interim' | 'final';
  text: string;
}

/** What a client must see for what the fake sent on one connection (transcribe mode). */
function expectedFrom(sent: Json[]): Seen[] {
  const out: Seen[] = [];
  let text = '';
  for (const m of sent) {
    const content = m.serverContent as Json | undefined;
    if (!content) continue;
    const interim = (content.interimInputTranscription as { text?: string } | undefined)?.text;
    const settled = (content.inputTranscription as { text?: string } | undefined)?.text;
    if (interim) out.push({ kind: 'interim', text: (text = interim) });
    if (settled) out.push({ kind: 'interim', text: (text = settled) });
    if (content.turnComplete === true || content.generationComplete === true) {
      if (text) out.push({ kind: 'final', text });
      text = '';
    }
  }
  return out;
}

const seen = (client: TestClient, tag: string): Seen[] =>
  resultsFor(client, tag).map((m) => ({ kind: m.is_interim ? 'interim' : 'final', text: m.transcript[0]!.text }));

const connectionFor = (f: FakeGeminiLive, tag: string): FakeGeminiConnection => {
  const conn = f.connections.find((c) => c.samples === samplesOf(tag));
  if (!conn) throw new Error(`no connection with all of ${tag}'s audio`);
  return conn;
};

const logsWith = (p: ProviderServer, text: string) => p.logs.filter((l) => JSON.stringify(l).includes(text));

describe('Gemini Live', () => {
  it('replays the JVB capture: setup first, 16 kHz PCM after setupComplete, transcripts for both participants', async () => {
    const { fake, proxy } = await start();
    const client = await proxy.connect({ sendBackInterim: 'true', lang: 'en' });
    await replayJvb(client, { pace: 'fast' });
    await fake.waitFor(() => fake.connections.reduce((n, c) => n + c.samples, 0) === samplesOf(TAG_A) + samplesOf(TAG_B), 'all the audio');
    // Each stream is done once the idle flush has ended its last turn.
    await fake.waitFor(() => fake.connections.every((c) => c.audioStreamEnds > 0), 'the idle flushes');

    expect(fake.connections).toHaveLength(2);
    for (const tag of [TAG_A, TAG_B]) {
      const conn = connectionFor(fake, tag);
      expect(conn.violations).toEqual([]);
      expect(conn.received[0]).toBe('setup');
      expect(conn.setup).toEqual({
        model: 'models/gemini-3.5-transcribe-live',
        generationConfig: { responseModalities: ['TEXT'] },
        inputAudioTranscription: { languageCodes: ['en'] },
      });
      expect(conn.url.searchParams.get('key')).toBe(fake.apiKey);
      // Every turn the fake transcribed reaches the client, interims as whole hypotheses.
      const want = expectedFrom(conn.sent);
      await client.waitFor(() => resultsFor(client, tag).length >= want.length, `${tag}'s results`);
      expect(want.some((e) => e.kind === 'final')).toBe(true);
      expect(seen(client, tag)).toEqual(want);
      for (const m of resultsFor(client, tag)) {
        expect(m.participant).toEqual({ id: tag.split('-')[0], tag });
        expect(m.language).toBe('en');
      }
    }
    const finals = client.finals();
    expect(new Set(finals.map((f) => f.message_id)).size).toBe(finals.length);
    // The key travels in the URL: it must never reach a log line.
    expect(JSON.stringify(proxy.logs)).not.toContain(fake.apiKey);
  });

  it('accumulates the settled fragments of a conversational Live model into whole-hypothesis interims', async () => {
    const { fake, proxy } = await start({ GEMINI_MODEL: 'gemini-live-conversational' }, { mode: 'conversational' });
    fake.model = 'models/gemini-live-conversational';
    const client = await proxy.connect({ sendBackInterim: 'true' });
    await replayJvb(client, { pace: 'fast', records: onlyTag(records, TAG_B) });
    await fake.waitFor(() => fake.connections[0]?.samples === samplesOf(TAG_B), 'all of B');
    const conn = fake.connections[0]!;
    await fake.waitFor(() => conn.audioStreamEnds > 0, 'the idle flush');
    await client.waitFor(() => client.finals(TAG_B).length >= conn.turns.length && conn.turns.length > 0, 'every turn');

    expect(conn.violations).toEqual([]);
    expect(client.finals(TAG_B).map((f) => f.transcript[0]!.text)).toEqual(conn.turns.map((t) => t.text));
    // Within an utterance each interim extends the previous one by a word.
    for (const final of client.finals(TAG_B)) {
      const interims = client.interims().filter((i) => i.message_id === final.message_id).map((i) => i.transcript[0]!.text);
      expect(interims.length).toBeGreaterThan(0);
      for (let i = 1; i < interims.length; i++) expect(interims[i]!.startsWith(`${interims[i - 1]} `)).toBe(true);
      expect(interims.at(-1)).toBe(final.transcript[0]!.text);
    }
  });
});

describe('Gemini goAway', () => {
  it('moves to a new connection at once when little time is left, finishing the turn in flight on the old one: no final lost, no audio lost', async () => {
    const { fake, proxy } = await start();
    const client = await proxy.connect();
    const a = onlyTag(records, TAG_A);
    await replayJvb(client, { pace: 'fast', records: a.slice(0, 200) });
    await fake.waitFor(() => (fake.connections[0]?.samples ?? 0) >= 199 * 320, 'the first audio');
    const old = fake.connections[0]!;
    // Less time than the proxy needs to let a retiring connection finish: rotate now.
    old.goAway(1_000);
    await replayJvb(client, { pace: 'fast', records: a.slice(200) });
    await fake.waitFor(() => fake.connections.reduce((n, c) => n + c.samples, 0) === samplesOf(TAG_A), 'all of A across connections');
    await fake.waitFor(() => old.closedWith !== undefined, 'the old connection closed');
    await fake.waitFor(() => fake.connections.at(-1)!.audioStreamEnds > 0, 'the idle flush of the new connection');
    const turns = fake.connections.flatMap((c) => c.turns.map((t) => t.text));
    await client.waitFor(() => client.finals(TAG_A).length >= turns.length, 'a final for every turn');

    expect(fake.connections.length).toBeGreaterThanOrEqual(2);
    // The old connection was told the audio ended, and left before the service's cap.
    expect(old.received.at(-1)).toBe('audioStreamEnd');
    expect(old.closedWith).toMatchObject({ by: 'client', code: 1000 });
    expect(client.finals(TAG_A).map((f) => f.transcript[0]!.text)).toEqual(turns);
    for (const c of fake.connections) expect(c.violations).toEqual([]);
    expect(logsWith(proxy, 'provider connection lost')).toEqual([]);
    expect(metricValue(await proxy.metrics(), 'transcriber_backend_errors_total', { provider: 'gemini' })).toBe(0);
  });

  it('with time to spare, waits for the end of the utterance in flight before moving', async () => {
    const { fake, proxy } = await start();
    const client = await proxy.connect();
    const a = onlyTag(records, TAG_A);
    await replayJvb(client, { pace: 'fast', records: a.slice(0, 120) });
    await fake.waitFor(() => (fake.connections[0]?.samples ?? 0) >= 119 * 320, 'the first audio');
    const old = fake.connections[0]!;
    old.goAway(60_000);
    // At the pace of speech, so that turns end (and finals arrive) between frames.
    const speech = a.filter((r, i) => i >= 120 && r.receivedAt - records[0]!.receivedAt < 9_000);
    await replayJvb(client, { pace: 'realtime', records: speech });
    await replayJvb(client, { pace: 'fast', records: a.slice(120 + speech.length) });
    await fake.waitFor(() => fake.connections.reduce((n, c) => n + c.samples, 0) === samplesOf(TAG_A), 'all of A across connections');
    await fake.waitFor(() => old.closedWith !== undefined, 'the old connection closed');
    await fake.waitFor(() => fake.connections.at(-1)!.audioStreamEnds > 0, 'the idle flush of the new connection');
    const turns = fake.connections.flatMap((c) => c.turns.map((t) => t.text));
    await client.waitFor(() => client.finals(TAG_A).length >= turns.length, 'a final for every turn');

    expect(fake.connections.length).toBeGreaterThanOrEqual(2);
    // Every turn on the old connection ended by itself (silence): none was cut in two.
    expect(old.turns.length).toBeGreaterThan(0);
    expect(old.turns.every((t) => !t.forced)).toBe(true);
    expect(old.closedWith).toMatchObject({ by: 'client', code: 1000 });
    expect(client.finals(TAG_A).map((f) => f.transcript[0]!.text)).toEqual(turns);
  });
});

describe('Gemini failures', () => {
  it('bad key: the service’s 1007 is a clear auth error (never the key), counted, not retried in a loop; another session goes on', async () => {
    openai = await FakeOpenAI.start();
    const badKey = 'AIza-wrong-key-0a1b2c3d4e';
    const { fake, proxy } = await start({ OPENAI_API_KEY: openai.apiKey, OPENAI_BASE_URL: openai.baseUrl }, {}, badKey);
    const victim = await proxy.connect({ provider: 'gemini' });
    const other = await proxy.connect({ provider: 'openai' });
    const window = onlyTag(records, TAG_A).filter((r) => r.receivedAt - records[0]!.receivedAt < 3_000);
    await Promise.all([replayJvb(victim, { pace: 'realtime', records: window }), replayJvb(other, { pace: 'fast' })]);

    expect(fake.handshakes).toHaveLength(1);
    expect(fake.connections[0]!.closedWith).toMatchObject({ code: 1007, by: 'server' });
    const failed = logsWith(proxy, 'Gemini refused the session (1007 API key not valid. Please pass a valid API key.)');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ level: 'warn', provider: 'gemini', kind: 'auth' });
    expect(JSON.stringify(proxy.logs)).not.toContain(badKey);
    expect(metricValue(await proxy.metrics(), 'transcriber_backend_errors_total', { provider: 'gemini', kind: 'auth' })).toBe(1);

    await other.waitFor(() => other.finals(TAG_A).length > 0 && other.finals(TAG_B).length > 0, 'the other session’s finals');
    expect(victim.closed).toBeUndefined();
    // OpenAI is configured too, so the victim fails over to it (docs/PROTOCOL.md §5.6): its
    // finals come from there, whenever they arrive (waited for, not raced against the other's).
    expect(victim.messages.filter((m) => m.event === 'provider-switched')).toEqual([
      { event: 'provider-switched', tag: TAG_A, from: 'gemini', to: 'openai', reason: 'auth' },
    ]);
    await victim.waitFor(() => victim.finals(TAG_A).length > 0, 'the victim’s finals from OpenAI');
    expect(fake.handshakes).toHaveLength(1);
    expect(JSON.stringify(victim.messages)).not.toContain(badKey);
  });

  it('an unknown model is refused at setup, not retried soon', async () => {
    const { fake, proxy } = await start({ GEMINI_MODEL: 'gemini-no-such-model' });
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: onlyTag(records, TAG_A).slice(0, 50) });
    await until(() => logsWith(proxy, 'is not found for API version v1beta').length > 0, 'the refusal in the log');
    expect(fake.connections[0]!.setup?.model).toBe('models/gemini-no-such-model');
    expect(logsWith(proxy, 'is not found for API version v1beta')[0]).toMatchObject({ kind: 'handshake', retryInMs: 30_000 });
  });

  it('a refused handshake is retried with backoff, not in a tight loop, and the participant recovers', async () => {
    const { fake, proxy } = await start();
    fake.faults.refuseHandshake = 503;
    const client = await proxy.connect();
    const a = onlyTag(records, TAG_A);
    const window = a.filter((r) => r.receivedAt - records[0]!.receivedAt < 3_000);
    await replayJvb(client, { pace: 'realtime', records: window });

    // Counts, not times. The backoff waits 0.25–0.5, 0.5–1, 1–2, 2–4, 4–8, 8–16 s (0.5 s doubling,
    // jittered): the replay lasts at least its 3 s, so at least 2 attempts; a seventh needs over
    // 15.75 s, five times the replay, which a slow CI machine does not come near. A tight loop
    // would make hundreds.
    // An attempt may be in flight as the replay ends: wait until the proxy has logged each one.
    const refused = () => logsWith(proxy, 'Gemini handshake failed: handshake refused with HTTP 503');
    await until(() => refused().length === fake.handshakes.length, 'each attempt logged');
    const attempts = fake.handshakes.length;
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThanOrEqual(6);
    expect(refused()).toHaveLength(attempts);
    expect(metricValue(await proxy.metrics(), 'transcriber_backend_errors_total', { provider: 'gemini', kind: 'handshake' })).toBe(attempts);

    fake.faults.refuseHandshake = undefined;
    await replayJvb(client, { pace: 'fast', records: a.slice(window.length) });
    await client.waitFor(() => client.finals(TAG_A).length > 0, 'finals once Gemini accepts', 40_000);
  });

  it('a connection dying mid-turn delivers the turn’s latest transcript as its final, reconnects, and leaves the other participant alone', async () => {
    const { fake, proxy } = await start();
    const client = await proxy.connect({ sendBackInterim: 'true' });
    await replayJvb(client, { pace: 'fast', records: onlyTag(records, TAG_B) });
    await fake.waitFor(() => fake.connections[0]?.samples === samplesOf(TAG_B), 'all of B');
    // B is done once its idle flush has ended its last turn.
    await fake.waitFor(() => fake.connections[0]!.audioStreamEnds > 0, 'B’s audioStreamEnd');
    await client.waitFor(() => client.finals(TAG_B).length >= fake.connections[0]!.turns.length, 'B’s finals');
    const bFinals = client.finals(TAG_B).length;

    // Audio queued while the connection opens goes frame by frame, the rest in 100 ms messages
    // (PCM_BATCH_MS): well into the turn, before the 100 frames are all sent.
    fake.faults.closeAfterAudio = { messages: 30, code: 1011, reason: 'Internal error encountered.' };
    const a = onlyTag(records, TAG_A);
    await replayJvb(client, { pace: 'fast', records: a.slice(0, 100) });
    await until(() => logsWith(proxy, 'Gemini closed the connection (1011 Internal error encountered.)').length > 0, 'the loss in the log');
    const dead = fake.connections[1]!;
    // What the client last saw of the cut turn became its final.
    expect(dead.closedWith).toMatchObject({ code: 1011, by: 'server' });
    expect(dead.inTurn).toBe(true);
    const lastInterim = client.interims().filter((m) => m.participant.tag === TAG_A).at(-1)!;
    await client.waitFor(() => client.finals(TAG_A).some((f) => f.message_id === lastInterim.message_id), 'the cut turn’s final');
    expect(client.finals(TAG_A).find((f) => f.message_id === lastInterim.message_id)!.transcript[0]!.text).toBe(lastInterim.transcript[0]!.text);

    fake.faults.closeAfterAudio = undefined;
    await replayJvb(client, { pace: 'fast', records: a.slice(100) });
    await until(() => fake!.connections.length >= 3, 'a reconnect');
    await client.waitFor(() => client.finals(TAG_A).length >= 2, 'finals after the reconnect');
    expect(client.finals(TAG_B)).toHaveLength(bFinals);
    expect(metricValue(await proxy.metrics(), 'transcriber_backend_errors_total', { provider: 'gemini', kind: 'closed' })).toBe(1);
  });
});
