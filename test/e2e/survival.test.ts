/**
 * What survives what (README, "What survives what"): the repository capture against the fake
 * providers with faults injected, and what the media server and the dispatcher get. Every
 * utterance must come back as exactly one whole final, the same words as without the fault.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeDeepgram } from '../fakes/deepgram.ts';
import { FakeDispatcher } from '../fakes/dispatcher.ts';
import { FakeOpenAI, type FakeRealtimeConnection } from '../fakes/openai-realtime.ts';
import { TAG_A, TAG_B, TestClient, replayJvb } from '../helpers/client.ts';
import { packetsByTag, readCapture, sharedFixture, sharedFixtures, type JvbRecord } from '../helpers/fixtures.ts';
import { opusPacketDurationMs } from '../../src/codec/toc.ts';
import { metricValue, startProxy, type Proxy } from '../helpers/proxy.ts';
import { onlyTag, startProviderServer } from '../helpers/provider-server.ts';
import { loadConfig } from '../../src/config.ts';
import { PROVIDERS } from '../../src/providers/registry.ts';
import { until } from '../helpers/wait.ts';

const capture = readCapture();
const finalsText = (client: TestClient, tag: string) => client.finals(tag).map((f) => f.transcript[0]!.text);
const speechOf = (tag: string) => onlyTag(capture, tag);

/**
 * Resolves once the proxy released `conns` (at least `count` of them) and every utterance they
 * transcribed reached `client` (but for those of a connection the fake closed itself, whose
 * answers never left).
 */
async function allFinals(
  proxy: Proxy,
  client: TestClient,
  tag: string,
  conns: () => FakeRealtimeConnection[],
  count = 1,
  /** A socket of the same session that went before `client` and may have had some of them. */
  earlier?: TestClient,
): Promise<string[]> {
  await proxy.fake.waitFor(() => conns().length >= count && conns().every((c) => c.closedWith !== undefined), 'the provider streams released');
  const transcribed = () =>
    conns()
      .filter((c) => c.closedWith?.by !== 'server')
      .flatMap((c) => c.completed().filter((t) => t.trim() !== '')).length;
  // Counted by message_id: a final sent just before a drop comes again on the next socket (§4.9).
  const distinct = () => new Set([...(earlier?.finals(tag) ?? []), ...client.finals(tag)].map((m) => m.message_id)).size;
  await client.waitFor(() => distinct() >= transcribed(), 'every final');
  return finalsText(client, tag);
}

/** The finals of one tag's speech, sent fast, with no fault: what every faulty run must match. */
async function baselineFinals(proxy: Proxy, tag: string): Promise<string[]> {
  const before = proxy.fake.connections.length;
  const client = await proxy.connect({ sessionId: `baseline-${tag}` });
  await replayJvb(client, { pace: 'fast', records: speechOf(tag) });
  client.send({ event: 'stop', stop: { tag } });
  const texts = await allFinals(proxy, client, tag, () => proxy.fake.connections.slice(before));
  await client.close();
  return texts;
}

describe('a provider that drops mid-utterance', () => {
  let proxy: Proxy;
  let expected: string[];
  beforeAll(async () => {
    proxy = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5' });
    expected = await baselineFinals(proxy, TAG_B);
  });
  afterAll(() => proxy.close());

  it('replays what the dead connection had heard: the utterance comes back whole, nothing twice', async () => {
    expect(expected.length).toBeGreaterThanOrEqual(1);
    // One second into the speech, the connection dies (1011), once.
    // 100 ms appends (PCM_BATCH_MS), queued audio included: one second in.
    proxy.fake.faults = { closeMidUtteranceAfterAppends: 10, closeMidUtteranceTimes: 1 };
    const before = proxy.fake.connections.length;
    const client = await proxy.connect({ sessionId: 'dropped' });
    await replayJvb(client, { pace: 'fast', records: speechOf(TAG_B) });
    await proxy.fake.waitFor(() => proxy.fake.connections.slice(before).some((c) => c.closedWith?.by === 'server'), 'the injected drop');
    client.send({ event: 'stop', stop: { tag: TAG_B } });
    expect(await allFinals(proxy, client, TAG_B, () => proxy.fake.connections.slice(before), 2)).toEqual(expected);
    expect(proxy.fake.connections.length - before).toBe(2);
    const metrics = await proxy.metrics();
    expect(metricValue(metrics, 'transcriber_backend_reconnects_total', { provider: 'openai' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(metrics, 'transcriber_replayed_seconds_total', { provider: 'openai' })).toBeGreaterThan(0.9);
    await client.close();
  });
});

describe('a provider that drops mid-utterance while the speaker goes on', () => {
  it('replays on the connection that replaces it, at real-time pace: same finals, nothing twice', async () => {
    const proxy = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5' });
    try {
      const expected = await baselineFinals(proxy, TAG_B);
      // 100 ms appends (PCM_BATCH_MS): 1.2 s into the utterance.
      proxy.fake.faults = { closeMidUtteranceAfterAppends: 12, closeMidUtteranceTimes: 1 };
      const before = proxy.fake.connections.length;
      const client = await proxy.connect({ sessionId: 'dropped-live' });
      await replayJvb(client, { pace: 'realtime', records: speechOf(TAG_B) });
      expect(proxy.fake.connections.slice(before).filter((c) => c.closedWith?.by === 'server')).toHaveLength(1);
      client.send({ event: 'stop', stop: { tag: TAG_B } });
      expect(await allFinals(proxy, client, TAG_B, () => proxy.fake.connections.slice(before), 2)).toEqual(expected);
      expect(client.messages.filter((m) => m.event === 'error')).toEqual([expect.objectContaining({ code: 'provider_error', tag: TAG_B })]);
      await client.close();
    } finally {
      await proxy.close();
    }
  });
});

describe('a media server that reconnects with the same sessionId', () => {
  let proxy: Proxy;
  let expected: string[];
  beforeAll(async () => {
    proxy = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5', RESUME_GRACE_MS: '5000' });
    expected = await baselineFinals(proxy, TAG_B);
  });
  afterAll(() => proxy.close());

  const finalsCount = async () => metricValue(await proxy.metrics(), 'transcriber_transcripts_total', { kind: 'final' });

  it('ends at once on a normal closure (1000): the client said it is done', async () => {
    const before = proxy.fake.connections.length;
    const client = await proxy.connect({ sessionId: 'done' });
    await replayJvb(client, { pace: 'fast', records: speechOf(TAG_B).slice(0, 40) });
    await proxy.fake.waitFor(() => (proxy.fake.connections[before]?.audioMs ?? 0) >= 30 * 20, 'audio at the provider');
    await client.close();
    // Well inside the 5 s grace: the provider stream is released, nothing waits detached.
    await proxy.fake.waitFor(() => proxy.fake.connections[before]?.closedWith?.by === 'client', 'the provider stream released', 3_000);
    expect(metricValue(await proxy.metrics(), 'transcriber_sessions_detached')).toBe(0);
  });

  it('resumes: the provider stream stays open, the utterance in flight is finished on the new socket', async () => {
    const records = speechOf(TAG_B);
    const half = Math.floor(records.length / 2);
    const before = proxy.fake.connections.length;
    const first = await proxy.connect({ sessionId: 'blip' });
    await replayJvb(first, { pace: 'fast', records: records.slice(0, half) });
    await proxy.fake.waitFor(() => (proxy.fake.connections[before]?.audioMs ?? 0) >= (half - 1) * 20, 'the first half at the provider');
    // The network blips: no close frame, the socket is just gone.
    first.ws.terminate();
    // A reconnect the server sees before it noticed the drop would be a second session (§4.9).
    await until(() => proxy.logs.some((l) => l.msg === 'session detached' && l.session === 'blip'), 'the drop noticed');
    const second = await proxy.connect({ sessionId: 'blip' });
    await replayJvb(second, { pace: 'fast', records: records.slice(half) });
    second.send({ event: 'stop', stop: { tag: TAG_B } });
    // A final may have left on the first socket just before it went: the second socket gets it
    // again, with the same message_id, whether or not it arrived.
    await allFinals(proxy, second, TAG_B, () => proxy.fake.connections.slice(before), 1, first);
    const byId = new Map<string, string>();
    for (const m of [...first.finals(TAG_B), ...second.finals(TAG_B)]) {
      const text = m.transcript[0]!.text;
      if (byId.has(m.message_id)) expect(text).toBe(byId.get(m.message_id));
      else byId.set(m.message_id, text);
    }
    expect([...byId.values()]).toEqual(expected);
    expect(proxy.fake.connections.length - before).toBe(1);
    // The new socket gets its own info first; the resumption is counted and logged.
    expect(second.messages[0]).toMatchObject({ event: 'info', sessionId: 'blip' });
    expect(metricValue(await proxy.metrics(), 'transcriber_sessions_resumed_total')).toBe(1);
    const said = proxy.logs.filter((l) => l.session === 'blip').map((l) => l.msg);
    expect(said).toEqual(expect.arrayContaining(['session detached', 'session resumed']));
    expect(said).not.toContain('session closed');
    await second.close();
  });

  it('holds the finals produced while detached for the new socket: after its info, before anything new, under its flags', async () => {
    const records = speechOf(TAG_B);
    const before = proxy.fake.connections.length;
    const first = await proxy.connect({ sessionId: 'held' });
    await replayJvb(first, { pace: 'fast', records: records.slice(0, 80) });
    await proxy.fake.waitFor(() => (proxy.fake.connections[before]?.audioMs ?? 0) >= 79 * 20, 'the audio at the provider');
    const finalsBefore = await finalsCount();
    const detached = async () => metricValue(await proxy.metrics(), 'transcriber_sessions_detached');
    const detachedBefore = await detached();
    first.ws.terminate();
    // The idle commit goes on while no client is attached: the utterance in flight is finished.
    await until(async () => (await finalsCount()) > finalsBefore, 'a final produced while detached');
    expect(first.finals()).toEqual([]);
    expect(await detached()).toBe(detachedBefore + 1);
    // The client comes back asking for interims too.
    const second = await proxy.connect({ sessionId: 'held', sendBackInterim: 'true' });
    await second.waitFor(() => second.finals(TAG_B).length === 1, 'the held final');
    expect(await detached()).toBe(detachedBefore);
    expect(second.messages.slice(0, 2)).toEqual([
      expect.objectContaining({ event: 'info', sessionId: 'held' }),
      expect.objectContaining({ event: 'transcription-result', is_interim: false, participant: expect.objectContaining({ tag: TAG_B }) }),
    ]);
    // New audio goes on the same participant stream, and this socket's flags now apply.
    await replayJvb(second, { pace: 'fast', records: records.slice(80) });
    second.send({ event: 'stop', stop: { tag: TAG_B } });
    const texts = await allFinals(proxy, second, TAG_B, () => proxy.fake.connections.slice(before));
    expect(texts.length).toBeGreaterThanOrEqual(2);
    expect(second.interims().length).toBeGreaterThan(0);
    expect(proxy.fake.connections.length - before).toBe(1);
    const ids = second.finals().map((m) => m.message_id);
    expect(new Set(ids).size).toBe(ids.length);
    await second.close();
  });

  it('never takes a session another socket holds: a second socket with the same sessionId is a session of its own', async () => {
    const before = proxy.fake.connections.length;
    const one = await proxy.connect({ sessionId: 'twin' });
    const two = await proxy.connect({ sessionId: 'twin' });
    const records = speechOf(TAG_B).slice(0, 40);
    await replayJvb(one, { pace: 'fast', records });
    await replayJvb(two, { pace: 'fast', records });
    await proxy.fake.waitFor(() => proxy.fake.connections.length - before === 2, 'a provider stream for each socket');
    await proxy.fake.waitFor(() => proxy.fake.connections.slice(before).every((c) => c.audioMs >= 39 * 20), 'the audio of both');
    await one.close();
    two.send({ event: 'ping', id: 'still here' });
    await two.waitFor(() => two.messages.some((m) => m.event === 'pong'), 'the pong');
    expect(two.closed).toBeUndefined();
    await two.close();
  });

  it('never resumes a session without a sessionId: its socket gone, the session ends at once', async () => {
    const before = proxy.fake.connections.length;
    const anonymous = await TestClient.connect(`ws://127.0.0.1:${proxy.server.port}/transcribe?sendBack=true`);
    await replayJvb(anonymous, { pace: 'fast', records: speechOf(TAG_B).slice(0, 40) });
    await proxy.fake.waitFor(() => (proxy.fake.connections[before]?.audioMs ?? 0) >= 39 * 20, 'audio at the provider');
    anonymous.ws.terminate();
    await proxy.fake.waitFor(() => proxy.fake.connections[before]!.closedWith !== undefined, 'the provider stream closed');
    expect(proxy.logs.filter((l) => l.session === null).map((l) => l.msg)).not.toContain('session detached');
  });

  it('after the grace period the session ends as before: its utterance reaches the dispatcher, and a new socket starts afresh', async () => {
    const dispatcher = await FakeDispatcher.start();
    // Nothing but the session's end may finish the utterance: no idle commit, no provider VAD.
    const short = await startProxy({
      FORCE_COMMIT_TIMEOUT: '60',
      OPENAI_TURN_DETECTION: 'null',
      RESUME_GRACE_MS: '500',
      DISPATCHER_WS_URL: dispatcher.url(),
    });
    try {
      const first = await short.connect({ sessionId: 'gone', useDispatcher: 'true' });
      await replayJvb(first, { pace: 'fast', records: speechOf(TAG_B).slice(0, 80) });
      await short.fake.waitFor(() => (short.fake.connections[0]?.audioMs ?? 0) >= 79 * 20, 'audio at the provider');
      first.ws.terminate();
      await until(() => short.logs.some((l) => l.msg === 'session detached' && l.session === 'gone'), 'the session detached');
      const conn = short.fake.connections[0]!;
      expect(conn.closedWith).toBeUndefined();
      await short.fake.waitFor(() => conn.closedWith !== undefined, 'the provider stream closed at the expiry');
      expect(conn.commits).toBe(1);
      await dispatcher.waitFor(() => dispatcher.messages().length === 1, 'the final at the dispatcher');
      expect(short.logs.some((l) => l.msg === 'session expired' && l.session === 'gone')).toBe(true);
      expect(first.finals()).toEqual([]);
      // A socket after the grace: a session of its own, with a provider stream of its own.
      const second = await short.connect({ sessionId: 'gone', useDispatcher: 'true' });
      await replayJvb(second, { pace: 'fast', records: speechOf(TAG_B).slice(0, 20) });
      await short.fake.waitFor(() => short.fake.connections.length === 2, 'a new provider stream');
      const metrics = await short.metrics();
      expect(metricValue(metrics, 'transcriber_sessions_resumed_total')).toBe(0);
      expect(metricValue(metrics, 'transcriber_sessions_detached')).toBe(0);
      expect(second.finals()).toEqual([]);
    } finally {
      await short.close();
      await dispatcher.close();
    }
  });

  it('RESUME_GRACE_MS=0: a socket that drops ends its session at once, as before', async () => {
    const short = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5', RESUME_GRACE_MS: '0' });
    try {
      const first = await short.connect({ sessionId: 'gone' });
      await replayJvb(first, { pace: 'fast', records: speechOf(TAG_B).slice(0, 40) });
      await short.fake.waitFor(() => (short.fake.connections[0]?.audioMs ?? 0) >= 30 * 20, 'audio at the provider');
      first.ws.terminate();
      await short.fake.waitFor(() => short.fake.connections[0]?.closedWith !== undefined, 'the provider stream closed');
      expect(short.logs.map((l) => l.msg)).not.toContain('session detached');
    } finally {
      await short.close();
    }
  });
});

/**
 * One tag's speech said `times` over, as one stream (chunks and RTP timestamps go on): longer
 * than PROVIDER_QUEUE_MS, so that a burst of it outruns any queue that drops.
 */
function longStream(tag: string, times: number): string[] {
  const packets = packetsByTag(capture).get(tag)!;
  const frames = [JSON.stringify({ event: 'start', start: { tag, mediaFormat: { encoding: 'opus', sampleRate: 48000, channels: 2 } } })];
  for (let i = 0; i < packets.length * times; i++) {
    const payload = Buffer.from(packets[i % packets.length]!).toString('base64');
    frames.push(JSON.stringify({ event: 'media', media: { tag, chunk: String(i + 1), timestamp: String(i * 960), payload } }));
  }
  return frames;
}

const bytesOf = (pcm: Int16Array) => Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);

describe('a fast sender', () => {
  it('gets every sample to OpenAI, in order, although the provider was still connecting', async () => {
    // Default PROVIDER_QUEUE_MS (10 s): nothing in the environment makes room for the burst.
    const proxy = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5' });
    try {
      const client = await proxy.connect({ sessionId: 'burst' });
      const frames = longStream(TAG_B, 4);
      for (const frame of frames) client.send(frame);
      const want = ((frames.length - 1) * 20 * 24000) / 1000;
      await proxy.fake.waitFor(() => (proxy.fake.connections[0]?.pcm().length ?? 0) >= want, 'every sample at the provider', 30_000);
      expect(proxy.fake.connections.map((c) => c.pcm().length)).toEqual([want]);
      const metrics = await proxy.metrics();
      expect(metricValue(metrics, 'transcriber_provider_queue_dropped_total')).toBe(0);
      expect(metricValue(metrics, 'transcriber_audio_dropped_seconds_total')).toBe(0);
      // Not room made by a queue that grew: the client was paused (backpressure).
      expect(metricValue(metrics, 'transcriber_client_paused_total')).toBeGreaterThanOrEqual(1);
      await client.close();
    } finally {
      await proxy.close();
    }
  });

  it('waits, paused, while its first handshake is refused and retried: nothing is dropped', async () => {
    const proxy = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5' });
    try {
      proxy.fake.faults.refuseNext = { count: 1, status: 503 };
      const client = await proxy.connect({ sessionId: 'burst-refused' });
      const frames = longStream(TAG_B, 4);
      for (const frame of frames) client.send(frame);
      const want = ((frames.length - 1) * 20 * 24000) / 1000;
      await proxy.fake.waitFor(() => (proxy.fake.connections[0]?.pcm().length ?? 0) >= want, 'every sample at the provider', 30_000);
      expect(proxy.fake.handshakes).toBe(2);
      expect(proxy.fake.connections.map((c) => c.pcm().length)).toEqual([want]);
      // The samples in order: the same stream as the fault-free run's.
      const clean = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5', PROVIDER_QUEUE_MS: '120000' });
      try {
        const other = await clean.connect({ sessionId: 'burst-clean' });
        for (const frame of frames) other.send(frame);
        await clean.fake.waitFor(() => (clean.fake.connections[0]?.pcm().length ?? 0) >= want, 'the clean run', 30_000);
        expect(bytesOf(proxy.fake.connections[0]!.pcm()).equals(bytesOf(clean.fake.connections[0]!.pcm()))).toBe(true);
      } finally {
        await clean.close();
      }
      const metrics = await proxy.metrics();
      expect(metricValue(metrics, 'transcriber_provider_queue_dropped_total')).toBe(0);
      expect(metricValue(metrics, 'transcriber_client_paused_total')).toBeGreaterThanOrEqual(1);
      expect(proxy.logs.filter((l) => l.msg.startsWith('audio dropped'))).toEqual([]);
      await client.close();
    } finally {
      await proxy.close();
    }
  });

  it('gets every Opus packet through to Deepgram, in order', async () => {
    const fake = await FakeDeepgram.start();
    const server = await startProviderServer({ DEEPGRAM_API_KEY: fake.apiKey, DEEPGRAM_BASE_URL: fake.baseUrl, FORCE_COMMIT_TIMEOUT: '0.5' });
    try {
      const client = await server.connect({ sessionId: 'burst-dg' });
      const frames = longStream(TAG_B, 4);
      for (const frame of frames) client.send(frame);
      const want = frames.slice(1).map((f) => (JSON.parse(f) as { media: { payload: string } }).media.payload);
      await fake.waitFor(() => (fake.connections[0]?.packets.length ?? 0) >= want.length, 'every packet at Deepgram', 30_000);
      expect(fake.connections.map((c) => c.packets.map((p) => Buffer.from(p).toString('base64')))).toEqual([want]);
      const metrics = await server.metrics();
      expect(metricValue(metrics, 'transcriber_provider_queue_dropped_total')).toBe(0);
      expect(metricValue(metrics, 'transcriber_audio_dropped_seconds_total')).toBe(0);
      await client.close();
    } finally {
      await server.close();
      await fake.close();
    }
  });

  const shared = sharedFixtures.availableFor(import.meta.url, 'the fast sender on the shared 46 s capture');
  it.skipIf(!shared)('gets the whole shared capture (46 s, two speakers) through at full speed: every sample to OpenAI, every packet to Deepgram', async () => {
    const records = readCapture(sharedFixture('jvb-two-speakers.jsonl'));
    const packets = [...packetsByTag(records).values()];
    const ascending = (a: number, b: number) => a - b;

    // OpenAI: each speaker's stream decoded whole, 24 samples a millisecond.
    const proxy = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5' });
    try {
      const client = await proxy.connect({ sessionId: 'shared-burst' });
      for (const record of records) client.send(record.data);
      const want = packets.map((p) => p.reduce((ms, packet) => ms + opusPacketDurationMs(packet), 0) * 24).sort(ascending);
      const got = () => proxy.fake.connections.map((c) => c.pcm().length).sort(ascending);
      await proxy.fake.waitFor(() => got().length === want.length && got().every((n, i) => n >= want[i]!), 'every sample of the capture', 60_000);
      expect(got()).toEqual(want);
      expect(metricValue(await proxy.metrics(), 'transcriber_audio_dropped_seconds_total')).toBe(0);
    } finally {
      await proxy.close();
    }

    // Deepgram: each speaker's packets, passed through, in order.
    const fake = await FakeDeepgram.start();
    const server = await startProviderServer({ DEEPGRAM_API_KEY: fake.apiKey, DEEPGRAM_BASE_URL: fake.baseUrl, FORCE_COMMIT_TIMEOUT: '0.5' });
    try {
      const client = await server.connect({ sessionId: 'shared-burst-dg' });
      for (const record of records) client.send(record.data);
      const total = packets.reduce((n, p) => n + p.length, 0);
      await fake.waitFor(() => fake.connections.reduce((n, c) => n + c.packets.length, 0) >= total, 'every packet at Deepgram', 60_000);
      const base64 = (p: Uint8Array) => Buffer.from(p).toString('base64');
      const received = fake.connections.map((c) => c.packets.map(base64));
      expect(received).toHaveLength(packets.length);
      for (const sent of packets) expect(received.find((frames) => frames[0] === base64(sent[0]!))).toEqual(sent.map(base64));
      expect(metricValue(await server.metrics(), 'transcriber_audio_dropped_seconds_total')).toBe(0);
    } finally {
      await server.close();
      await fake.close();
    }
  });
});

describe('limits by default', () => {
  it('has defaults that protect the provider bill: 32 participants, 100 sessions, 200 provider streams, 64 MB of audio per session', () => {
    const result = loadConfig({ OPENAI_API_KEY: 'sk-x' }, PROVIDERS);
    expect(result.ok && result.config).toMatchObject({
      maxParticipants: 32,
      maxSessions: 100,
      maxProviderConnections: 200,
      maxSessionBufferBytes: 64 << 20,
      providerQueueMs: 10_000,
    });
    const bad = loadConfig({ OPENAI_API_KEY: 'sk-x', MAX_SESSIONS: '-1', MAX_PROVIDER_CONNECTIONS: 'lots', MAX_SESSION_BUFFER_MB: '0' }, PROVIDERS);
    expect(bad.ok ? [] : bad.errors).toEqual([
      expect.stringMatching(/^MAX_SESSIONS: /),
      expect.stringMatching(/^MAX_PROVIDER_CONNECTIONS: /),
      expect.stringMatching(/^MAX_SESSION_BUFFER_MB: must be at least 1/),
    ]);
  });

  it('refuses a tag beyond MAX_PARTICIPANTS (default 32) with 1008, and says why', async () => {
    const proxy = await startProxy({});
    try {
      const client = await proxy.connect({ sessionId: 'many' });
      for (let i = 0; i < 40; i++) client.send({ event: 'start', start: { tag: `t-${i}`, mediaFormat: { encoding: 'opus' } } });
      await client.waitFor(() => client.closed !== undefined, 'the policy close');
      expect(client.closed).toEqual({ code: 1008, reason: 'participant limit of 32 reached' });
      expect(client.messages).toContainEqual(expect.objectContaining({ event: 'error', code: 'too_many_participants' }));
      expect(metricValue(await proxy.metrics(), 'transcriber_refused_total', { reason: 'max_participants' })).toBe(1);
    } finally {
      await proxy.close();
    }
  });

  it('refuses a session beyond MAX_SESSIONS with 503 before the upgrade, naming the setting; one that ends makes room', async () => {
    const proxy = await startProxy({ MAX_SESSIONS: '2', RESUME_GRACE_MS: '0' });
    try {
      const first = await proxy.connect({ sessionId: 'one' });
      await proxy.connect({ sessionId: 'two' });
      const refused = await proxy.connect({ sessionId: 'three' }).then(
        () => undefined,
        (e: { status: number; body: string }) => e,
      );
      expect(refused).toMatchObject({ status: 503, body: 'session limit of 2 reached on this server (MAX_SESSIONS); try again later or another instance' });
      expect(metricValue(await proxy.metrics(), 'transcriber_refused_total', { reason: 'max_sessions' })).toBe(1);
      await first.close();
      await until(async () => metricValue(await proxy.metrics(), 'transcriber_sessions') < 2, 'the first session ended');
      const again = await proxy.connect({ sessionId: 'three' });
      expect(again.messages[0]).toMatchObject({ event: 'info' });
    } finally {
      await proxy.close();
    }
  });

  it('refuses a stream beyond MAX_PROVIDER_CONNECTIONS alone: its error, its frames counted, the session goes on, and it starts once a stream frees', async () => {
    const proxy = await startProxy({ MAX_PROVIDER_CONNECTIONS: '2', FORCE_COMMIT_TIMEOUT: '0.5', FINISH_TIMEOUT_MS: '500' });
    try {
      const a = await proxy.connect({ sessionId: 'holds-two' });
      const media = (tag: string, chunk: number) => ({
        event: 'media',
        media: { tag, chunk, timestamp: chunk * 960, payload: Buffer.from(packetsByTag(capture).get(TAG_B)![chunk]!).toString('base64') },
      });
      for (const tag of ['a-1', 'a-2']) a.send({ event: 'start', start: { tag, mediaFormat: { encoding: 'opus' } } });
      for (const tag of ['a-1', 'a-2']) a.send(media(tag, 1));
      await proxy.fake.waitFor(() => proxy.fake.connections.length === 2, 'two provider streams');

      const b = await proxy.connect({ sessionId: 'wants-one' });
      b.send({ event: 'start', start: { tag: 'b-1', mediaFormat: { encoding: 'opus' } } });
      for (let i = 1; i <= 3; i++) b.send(media('b-1', i));
      b.send({ event: 'ping', id: 1 });
      await b.waitFor(() => b.messages.some((m) => m.event === 'pong'), 'the pong');
      expect(b.closed).toBeUndefined();
      const errors = b.messages.filter((m) => m.event === 'error');
      expect(errors[0]).toMatchObject({
        code: 'too_many_provider_connections',
        tag: 'b-1',
        message: expect.stringContaining('provider connection limit of 2 reached on this server (MAX_PROVIDER_CONNECTIONS)'),
      });
      expect(errors).toHaveLength(4); // the start and each media, answered (throttled after five)
      let metrics = await proxy.metrics();
      expect(metricValue(metrics, 'transcriber_refused_total', { reason: 'max_provider_connections' })).toBe(1);
      expect(metricValue(metrics, 'transcriber_input_errors_total', { reason: 'too_many_provider_connections' })).toBe(4);
      expect(metricValue(metrics, 'transcriber_provider_streams')).toBe(2);
      expect(proxy.fake.connections).toHaveLength(2);

      // One of the first session's streams ends: the refused one starts at its next frame.
      a.send({ event: 'stop', stop: { tag: 'a-1' } });
      await until(async () => metricValue(await proxy.metrics(), 'transcriber_provider_streams') < 2, 'a stream released');
      b.send(media('b-1', 4));
      await proxy.fake.waitFor(() => proxy.fake.connections.length === 3 && proxy.fake.connections[2]!.appends >= 1, 'the refused stream started');
      metrics = await proxy.metrics();
      expect(metricValue(metrics, 'transcriber_provider_streams')).toBe(2);
      expect(metricValue(metrics, 'transcriber_refused_total', { reason: 'max_provider_connections' })).toBe(1);
    } finally {
      await proxy.close();
    }
  });
});
