/**
 * Vosk through the real Node server: the capture replayed by a media-server stand-in, the
 * fake Vosk server (test/fakes/vosk.ts) behind it. Assertions are on what a user sees:
 * messages on the client socket, the PCM, config and `eof` at the fake, log lines, /health
 * and /metrics.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { PROVIDERS } from '../../src/providers/registry.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { FakeVosk, VOSK_EOF, type FakeVoskConnection } from '../fakes/vosk.ts';
import { TAG_B, replayJvb, type Received, type TestClient } from '../helpers/client.ts';
import { packetsByTag, readCapture } from '../helpers/fixtures.ts';
import { metricValue } from '../helpers/proxy.ts';
import { onlyTag, resultsFor, startProviderServer, stopTags, type ProviderServer } from '../helpers/provider-server.ts';
import { until } from '../helpers/wait.ts';

const records = readCapture();
const speakerB = onlyTag(records, TAG_B);
const packetsB = packetsByTag(records).get(TAG_B)!.length;
/** 20 ms of 16 kHz 16-bit PCM. */
const FRAME_BYTES = 640;
/** B's first frames up to the middle of its second utterance (the fake's VAD: frames 154–249). */
const MID_SECOND_UTTERANCE = 200;
const upTo = (frames: number) => speakerB.slice(0, speakerB.findIndex((r) => r.event === 'media') + frames);

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function start(env: Record<string, string> = {}, url?: (fake: FakeVosk) => string): Promise<{ fake: FakeVosk; proxy: ProviderServer }> {
  const fake = await FakeVosk.start();
  closers.push(() => fake.close());
  const proxy = await startProviderServer({
    VOSK_URL: url ? url(fake) : fake.url,
    // Fast replays deliver the whole capture before the first connection is open: hold all of it.
    PROVIDER_QUEUE_MS: '120000',
    FORCE_COMMIT_TIMEOUT: '0.5',
    ...env,
  });
  closers.push(() => proxy.close());
  return { fake, proxy };
}

const errors = (client: TestClient): Received[] => client.messages.filter((m) => m.event === 'error');
const texts = (client: TestClient, kind: 'interim' | 'final') =>
  resultsFor(client, TAG_B)
    .filter((m) => m.is_interim === (kind === 'interim'))
    .map((m) => m.transcript[0]!.text);
const configOf = (conn: FakeVoskConnection) => JSON.parse(conn.texts[0]!) as unknown;
/**
 * The first socket after the `lost`-th that carries audio: an idle flush that came before the
 * loss was noticed may have opened an empty one in between.
 */
async function successor(fake: FakeVosk, lost = 0): Promise<FakeVoskConnection> {
  const find = () => fake.connections.slice(lost + 1).find((c) => c.frames.length > 0);
  await fake.waitFor(() => find() !== undefined, 'a new socket with audio');
  return find()!;
}
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
/**
 * The PCM a socket received, its messages joined: audio that reaches an open socket goes in
 * PCM_BATCH_MS batches, so sockets are compared by their bytes, not their messages.
 */
const pcmOf = (conn: FakeVoskConnection) => Buffer.concat(conn.frames);

describe('Vosk', () => {
  it('streams 16 kHz PCM after a config: every sample reaches Vosk, its partials become interims and its results finals; stop sends eof', async () => {
    const { fake, proxy } = await start();
    const client = await proxy.connect({ sendBackInterim: 'true', lang: 'en' });
    await replayJvb(client, { pace: 'fast', records: speakerB });
    await fake.waitFor(() => fake.bytes === packetsB * FRAME_BYTES, 'all of B’s audio as PCM');
    await client.waitFor(() => client.finals(TAG_B).length > 0, 'a final');
    stopTags(client, TAG_B);
    await fake.waitFor(() => fake.connections.every((c) => c.closedWith !== undefined), 'every socket closed');

    const withAudio = fake.connections.filter((c) => c.frames.length > 0);
    expect(withAudio.length).toBeGreaterThan(0);
    for (const conn of fake.connections) {
      expect(configOf(conn)).toEqual({ config: { sample_rate: 16000, words: true } });
      expect(conn.violations).toEqual([]);
    }
    for (const conn of withAudio) {
      // Whole 20 ms frames; the stream ended by eof (the exact string), answered, then closed by Vosk.
      expect(conn.frames.every((f) => f.length === FRAME_BYTES)).toBe(true);
      expect(conn.texts.at(-1)).toBe(VOSK_EOF);
      expect(conn.closedWith).toMatchObject({ code: 1000, by: 'server' });
    }

    const finals = withAudio.flatMap((c) => c.finalTexts());
    expect(finals.length).toBeGreaterThanOrEqual(2);
    await client.waitFor(() => client.finals(TAG_B).length === finals.length, `${finals.length} finals`);
    expect(texts(client, 'final')).toEqual(finals);
    // Vosk repeats its partial with every frame: each change is one interim.
    expect(texts(client, 'interim')).toEqual(withAudio.flatMap((c) => c.partialTexts()));

    // One message_id per utterance, its interims before its final; the session's lang labels them.
    const results = resultsFor(client, TAG_B);
    const finalIds = results.filter((m) => !m.is_interim).map((m) => m.message_id);
    expect(new Set(finalIds).size).toBe(finalIds.length);
    for (const [i, m] of results.entries()) {
      if (m.is_interim) expect(results.slice(i).some((f) => !f.is_interim && f.message_id === m.message_id)).toBe(true);
    }
    expect(results.every((m) => m.language === 'en')).toBe(true);
    for (const f of client.finals(TAG_B)) expect(f.transcript[0]!.confidence).toBeCloseTo(0.8);
    expect(errors(client)).toEqual([]);
    expect(metricValue(await proxy.metrics(), 'transcriber_backend_errors_total', { provider: 'vosk' })).toBe(0);
  });

  it('an idle flush ends the utterance with eof (its final arrives) and the stream goes on on a new socket, no sample lost or doubled', async () => {
    const { fake, proxy } = await start();
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: upTo(MID_SECOND_UTTERANCE) });
    await fake.waitFor(() => fake.bytes === MID_SECOND_UTTERANCE * FRAME_BYTES, 'the first 200 frames');
    const first = fake.connections[0]!;
    // Cut mid-utterance: Vosk holds words it has not finalised.
    expect(first.sent.at(-1)).toMatchObject({ partial: expect.stringMatching(/\w/) });

    // FORCE_COMMIT_TIMEOUT later: eof, Vosk's answer, the socket closed, a new one ready.
    await fake.waitFor(() => fake.connections.length === 2 && first.closedWith !== undefined, 'the flush');
    expect(first.texts.at(-1)).toBe(VOSK_EOF);
    expect(first.closedWith).toMatchObject({ code: 1000, by: 'server' });
    const cut = first.finalTexts().at(-1)!;
    expect(first.sent.at(-1)).toEqual(expect.objectContaining({ text: cut }));
    await client.waitFor(() => client.finals(TAG_B).length === first.finalTexts().length, 'the finals of the first socket');
    expect(texts(client, 'final')).toEqual(first.finalTexts());

    await replayJvb(client, { pace: 'fast', records: speakerB.slice(upTo(MID_SECOND_UTTERANCE).length) });
    await fake.waitFor(() => fake.bytes === packetsB * FRAME_BYTES, 'the rest of B');
    const second = fake.connections[1]!;
    expect(configOf(second)).toEqual({ config: { sample_rate: 16000, words: true } });
    // Each socket its own part of the stream, to the sample.
    expect(first.bytes).toBe(MID_SECOND_UTTERANCE * FRAME_BYTES);
    expect(second.bytes).toBe((packetsB - MID_SECOND_UTTERANCE) * FRAME_BYTES);
    expect(second.violations).toEqual([]);
    stopTags(client, TAG_B);
    await fake.waitFor(() => fake.connections.every((c) => c.closedWith !== undefined), 'every socket closed');
    const finals = fake.connections.flatMap((c) => c.finalTexts());
    await client.waitFor(() => client.finals(TAG_B).length === finals.length, `${finals.length} finals`);
    expect(texts(client, 'final')).toEqual(finals);
  });

  it('Vosk failing mid-utterance (1011): provider_error once, a new socket, the unfinalised audio replayed byte for byte, and the final arrives', async () => {
    const { fake, proxy } = await start();
    // Frame 60 is in B's first utterance, before any result.
    fake.faults.dropNext = { afterFrames: 60, code: 1011, reason: 'internal error' };
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: speakerB });
    await client.waitFor(() => client.finals(TAG_B).length > 0, 'a final after the failure');

    expect(errors(client)).toEqual([{ event: 'error', code: 'provider_error', message: 'Vosk failed (1011 internal error)', tag: TAG_B, provider: 'vosk' }]);
    const next = await successor(fake);
    const dead = fake.connections[0]!;
    expect(dead.frames).toHaveLength(60);
    expect(dead.finalTexts()).toEqual([]);
    // Nothing of the dead socket was final: the new one hears it all again, first, then the rest.
    expect(configOf(next)).toEqual({ config: { sample_rate: 16000, words: true } });
    expect(dead.frames.every((f, i) => same(f, next.frames[i]!))).toBe(true);
    await fake.waitFor(() => fake.bytes - dead.bytes === packetsB * FRAME_BYTES, 'all of B on the new socket');
    await client.waitFor(() => client.finals(TAG_B).length === next.finalTexts().length, 'the new socket’s finals');
    expect(texts(client, 'final')).toEqual(next.finalTexts());
    expect(proxy.logs.some((l) => l.msg === 'provider connection lost' && l.kind === 'provider' && l.provider === 'vosk')).toBe(true);
    expect(metricValue(await proxy.metrics(), 'transcriber_backend_errors_total', { provider: 'vosk', kind: 'provider' })).toBe(1);
  });

  it('a socket lost after a final: only the audio after that final’s last word is replayed (Vosk’s word times mapped to the stream’s audio)', async () => {
    const { fake, proxy } = await start();
    // Frame 200 is in B's second utterance; the first ended (a result) at frame 130.
    fake.faults.dropNext = { afterFrames: MID_SECOND_UTTERANCE, code: 1001, reason: 'going away' };
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: speakerB });
    const next = await successor(fake);
    const dead = fake.connections[0]!;
    const result = dead.sent.find((m) => Array.isArray(m.result)) as { result: { end: number }[]; text: string };
    expect(result).toBeDefined();
    await client.waitFor(() => client.finals(TAG_B).length >= 2, 'the first utterance’s final and the replayed one’s');
    expect(texts(client, 'final')[0]).toBe(result.text);

    // The frames whose audio ends at or before the last word's end were final; the rest come again.
    const replayedFrom = Math.floor((result.result.at(-1)!.end * 1000) / 20);
    expect(replayedFrom).toBeLessThan(MID_SECOND_UTTERANCE);
    await fake.waitFor(() => next.frames.length >= MID_SECOND_UTTERANCE - replayedFrom, 'the replay');
    expect(dead.frames.slice(replayedFrom).every((f, i) => same(f, next.frames[i]!))).toBe(true);
    await fake.waitFor(() => fake.bytes - dead.bytes === (packetsB - replayedFrom) * FRAME_BYTES, 'the replay and the rest');
    expect(errors(client)).toEqual([{ event: 'error', code: 'provider_error', message: 'Vosk closed the connection (1001 going away)', tag: TAG_B, provider: 'vosk' }]);
  });

  it('word times of a later socket count from where that socket began: a loss after its final replays only what followed', async () => {
    // 60 ms batches do not line up with the fake's 200 ms words: the final ends inside one, of
    // which only the samples after the last word may come again.
    const { fake, proxy } = await start({ PCM_BATCH_MS: '60' });
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: upTo(MID_SECOND_UTTERANCE) });
    await fake.waitFor(() => fake.bytes === MID_SECOND_UTTERANCE * FRAME_BYTES, 'the first 200 frames');
    // The socket the idle flush opens ends the second utterance (a result at its frame ~49), then dies.
    fake.faults.dropNext = { afterFrames: 60, code: 1001, reason: 'going away' };
    await fake.waitFor(() => fake.connections.length === 2, 'the flush');
    await replayJvb(client, { pace: 'fast', records: speakerB.slice(upTo(MID_SECOND_UTTERANCE).length) });
    const second = fake.connections[1]!;
    await fake.waitFor(() => second.closedWith !== undefined, 'the second socket lost');
    const result = second.sent.find((m) => Array.isArray(m.result)) as { result: { end: number }[]; text: string };
    expect(result).toBeDefined();
    await client.waitFor(() => client.finals(TAG_B).some((f) => f.transcript[0]!.text === result.text), 'the second socket’s final');

    const third = await successor(fake, 1);
    // Its words' times are from the second socket's start, 200 frames into the stream: the
    // second socket's bytes from its last word's end on are what comes again.
    const from = Math.round(result.result.at(-1)!.end * 16_000) * 2;
    expect(from).toBeGreaterThan(0);
    await fake.waitFor(() => third.bytes === (packetsB - MID_SECOND_UTTERANCE) * FRAME_BYTES - from, 'the replay and the rest');
    const replayed = pcmOf(second).subarray(from);
    expect(same(replayed, pcmOf(third).subarray(0, replayed.length))).toBe(true);
  });

  it('the connection cut without a close frame, then the reconnection refused: one error for the episode, and the final still arrives', async () => {
    const { fake, proxy } = await start();
    fake.faults.dropNext = { afterFrames: 60 };
    fake.faults.refuseNext = { count: 0, status: 503 };
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: upTo(80) });
    await fake.waitFor(() => fake.connections[0]?.closedWith !== undefined, 'the cut');
    fake.faults.refuseNext.count = 1;
    await until(() => fake.handshakes.some((h) => h.refused === 503), 'the refused reconnection');
    await replayJvb(client, { pace: 'fast', records: speakerB.slice(upTo(80).length) });
    await client.waitFor(() => client.finals(TAG_B).length > 0, 'a final after the outage');

    expect(errors(client)).toEqual([
      { event: 'error', code: 'provider_error', message: expect.stringMatching(/^Vosk closed the connection \(1006/), tag: TAG_B, provider: 'vosk' },
    ]);
    const next = await successor(fake);
    const dead = fake.connections[0]!;
    await fake.waitFor(() => next.frames.length >= dead.frames.length, 'the replay');
    expect(dead.frames.every((f, i) => same(f, next.frames[i]!))).toBe(true);
    await fake.waitFor(() => fake.bytes - dead.bytes === packetsB * FRAME_BYTES, 'all of B after the outage');
    expect(proxy.logs.some((l) => l.msg === 'provider connection failed' && l.kind === 'handshake' && String(l.error).includes('HTTP 503'))).toBe(true);
  });

  it('an unreachable server: provider_unreachable for the participant, and /health degraded naming vosk', async () => {
    const port = await closedPort();
    const { proxy } = await start({}, () => `ws://127.0.0.1:${port}`);
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: upTo(50) });
    await client.waitFor(() => errors(client).length > 0, 'the error');
    expect(errors(client)).toEqual([
      {
        event: 'error',
        code: 'provider_unreachable',
        message: expect.stringMatching(new RegExp(`^Vosk could not be reached: .*ECONNREFUSED 127\\.0\\.0\\.1:${port}`)),
        tag: TAG_B,
        provider: 'vosk',
      },
    ]);
    const res = await fetch(proxy.url('/health'));
    expect(res.status).toBe(503);
    const body = (await res.json()) as { reasons: string[]; providers: string[] };
    expect(body.providers).toEqual(['vosk', 'local']);
    expect(body.reasons).toEqual([expect.stringMatching(/^vosk: unreachable \(Vosk could not be reached: /)]);
  });

  it('credentials in VOSK_URL go as Basic auth, never in the URL, and are masked wherever a refusal quotes them', async () => {
    const password = 'pw-s3cret-0123';
    const token = 'tok-abcdef-456';
    const { fake, proxy } = await start({}, (f) => `ws://jitsi:${password}@127.0.0.1:${f.port}/asr?token=${token}`);
    fake.faults.basicAuth = { user: 'jitsi', password };
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: speakerB });
    await client.waitFor(() => client.finals(TAG_B).length > 0, 'a final through the authenticating server');
    expect(fake.handshakes[0]).toEqual({ url: `/asr?token=${token}`, authorization: `Basic ${Buffer.from(`jitsi:${password}`).toString('base64')}` });

    // The proxy in front now wants another password, and quotes what it got.
    fake.faults.basicAuth = { user: 'jitsi', password: 'another-one' };
    const again = await proxy.connect();
    await replayJvb(again, { pace: 'fast', records: upTo(20) });
    await again.waitFor(() => errors(again).length > 0, 'the refusal');
    expect(errors(again)).toEqual([
      { event: 'error', code: 'provider_auth', message: 'Vosk refused the connection: HTTP 401 (bad credentials Basic *** for /asr?token=***)', tag: TAG_B, provider: 'vosk' },
    ]);
    const seen = JSON.stringify([client.messages, again.messages, proxy.logs, await proxy.metrics()]);
    for (const secret of [password, token, Buffer.from(`jitsi:${password}`).toString('base64')]) expect(seen).not.toContain(secret);
  });

  it('serves ?provider=vosk beside another provider, and is chosen by PROVIDERS_PRIORITY', async () => {
    const openai = await FakeOpenAI.start();
    closers.push(() => openai.close());
    const { fake, proxy } = await start({ OPENAI_API_KEY: openai.apiKey, OPENAI_BASE_URL: openai.baseUrl, PROVIDERS_PRIORITY: 'vosk,openai' });
    const chosen = await proxy.connect({ sessionId: 'by-priority' });
    await chosen.waitFor(() => chosen.messages.length > 0, 'info');
    expect(chosen.messages[0]).toMatchObject({ event: 'info', provider: 'vosk', providersAvailable: ['vosk', 'openai', 'local'] });
    const named = await proxy.connect({ sessionId: 'by-name', provider: 'vosk' });
    await replayJvb(named, { pace: 'fast', records: speakerB });
    await named.waitFor(() => named.finals(TAG_B).length > 0, 'a final from Vosk');
    expect(fake.connections.length).toBeGreaterThan(0);
    expect(openai.connections).toHaveLength(0);
  });
});

describe('Vosk settings', () => {
  const errorsOf = (env: Record<string, string>) => {
    const result = loadConfig(env, PROVIDERS);
    return result.ok ? [] : result.errors;
  };

  it('validates VOSK_URL and VOSK_SAMPLE_RATE, naming the variable', () => {
    expect(errorsOf({ VOSK_URL: 'localhost:2700' })).toEqual([
      'VOSK_URL: must be a URL starting with ws://, wss://, http:// or https:// (e.g. ws://localhost:2700)',
    ]);
    expect(errorsOf({ VOSK_URL: 'ws://localhost:2700', VOSK_SAMPLE_RATE: '44100' })).toEqual([
      'VOSK_SAMPLE_RATE: must be one of 8000, 12000, 16000, 24000, 48000 (the model\'s rate: 16000 for most, 8000 for telephony models)',
    ]);
    // Unset, it is simply not configured.
    expect(errorsOf({ VOSK_SAMPLE_RATE: '44100', OPENAI_API_KEY: 'sk-x' })).toEqual([]);
    const ok = loadConfig({ VOSK_URL: 'http://vosk.internal:2700', VOSK_SAMPLE_RATE: '8000' }, PROVIDERS);
    expect(ok.ok && ok.config.providers.map((p) => p.name)).toEqual(['vosk']);
  });

  it('takes the rate from VOSK_SAMPLE_RATE (8 kHz for telephony models), http:// mapped to ws://', async () => {
    const { fake, proxy } = await start({ VOSK_SAMPLE_RATE: '8000' }, (f) => f.url.replace('ws://', 'http://'));
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: speakerB });
    await fake.waitFor(() => fake.bytes === packetsB * 320, 'all of B at 8 kHz');
    expect(configOf(fake.connections[0]!)).toEqual({ config: { sample_rate: 8000, words: true } });
    await client.waitFor(() => client.finals(TAG_B).length > 0, 'a final');
  });
});

/** A port on 127.0.0.1 where nothing listens. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
