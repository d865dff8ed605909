/**
 * Failover (docs/PROTOCOL.md §5.6): a participant whose provider keeps failing moves to the
 * next one in PROVIDERS_PRIORITY with the audio it had, the client is told, the other
 * participants stay where they are.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeDeepgram } from '../fakes/deepgram.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TAG_A, TAG_B, replayJvb } from '../helpers/client.ts';
import { packetsByTag, readCapture } from '../helpers/fixtures.ts';
import { settle } from '../helpers/clock.ts';
import { startClockedServer } from '../helpers/clocked-server.ts';
import { metricValue } from '../helpers/proxy.ts';
import { onlyTag, startProviderServer, type ProviderServer } from '../helpers/provider-server.ts';

const capture = readCapture();
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function start(env: Record<string, string> = {}): Promise<{ openai: FakeOpenAI; deepgram: FakeDeepgram; proxy: ProviderServer }> {
  const openai = await FakeOpenAI.start();
  const deepgram = await FakeDeepgram.start();
  const proxy = await startProviderServer({
    OPENAI_API_KEY: openai.apiKey,
    OPENAI_BASE_URL: openai.baseUrl,
    DEEPGRAM_API_KEY: deepgram.apiKey,
    DEEPGRAM_BASE_URL: deepgram.baseUrl,
    // PCM at 16 kHz: what OpenAI was to get (24 kHz) is carried over, resampled.
    DEEPGRAM_ENCODING: 'linear16',
    PROVIDERS_PRIORITY: 'openai,deepgram',
    FORCE_COMMIT_TIMEOUT: '0.5',
    ...env,
  });
  closers.push(() => openai.close(), () => deepgram.close(), () => proxy.close());
  return { openai, deepgram, proxy };
}

describe('failover', () => {
  it('moves a participant whose key is refused to the next provider with its audio; the other participant stays', async () => {
    const { openai, deepgram, proxy } = await start();
    // The first handshake (speaker A's) is refused as a revoked key would be; B's is accepted.
    openai.faults = { refuseNext: { count: 1, status: 401 } };
    const client = await proxy.connect({ sessionId: 'failover' });
    await replayJvb(client, { pace: 'fast', records: onlyTag(capture, TAG_A) });
    await client.waitFor(() => client.messages.some((m) => m.event === 'provider-switched'), 'the switch');
    await replayJvb(client, { pace: 'fast', records: onlyTag(capture, TAG_B) });
    client.send({ event: 'stop', stop: { tag: TAG_A } });
    client.send({ event: 'stop', stop: { tag: TAG_B } });
    await client.waitFor(() => client.finals(TAG_A).length > 0 && client.finals(TAG_B).length > 0, 'finals for both');

    expect(client.messages.filter((m) => m.event === 'provider-switched')).toEqual([
      { event: 'provider-switched', tag: TAG_A, from: 'openai', to: 'deepgram', reason: 'auth' },
    ]);
    expect(client.messages.filter((m) => m.event === 'error')).toEqual([
      expect.objectContaining({ code: 'provider_auth', tag: TAG_A, provider: 'openai' }),
    ]);
    // A's audio, all of it (what was queued for OpenAI included), reached Deepgram at 16 kHz.
    const aMs = packetsByTag(capture).get(TAG_A)!.length * 20;
    await deepgram.waitFor(() => deepgram.connections.length === 1, 'one Deepgram connection');
    const bytes = () => deepgram.connections[0]!.frames.reduce((n, f) => n + f.length, 0);
    await deepgram.waitFor(() => bytes() >= ((aMs - 5) * 16000 * 2) / 1000, "all of A's audio at Deepgram");
    expect(Math.abs(bytes() / 2 / 16 - aMs)).toBeLessThan(5);
    // B never left OpenAI.
    expect(openai.connections.filter((c) => c.authorized)).toHaveLength(1);
    expect(metricValue(await proxy.metrics(), 'transcriber_provider_switches_total', { from: 'openai', to: 'deepgram', reason: 'auth' })).toBe(1);
  });

  it('goes back to the provider asked for at the first utterance boundary 60 s after the switch (on the clock)', async () => {
    const openai = await FakeOpenAI.start();
    const deepgram = await FakeDeepgram.start();
    const server = await startClockedServer({
      OPENAI_API_KEY: openai.apiKey,
      OPENAI_BASE_URL: openai.baseUrl,
      OPENAI_TURN_DETECTION: 'null',
      DEEPGRAM_API_KEY: deepgram.apiKey,
      DEEPGRAM_BASE_URL: deepgram.baseUrl,
      FORCE_COMMIT_TIMEOUT: '2',
    });
    closers.push(() => openai.close(), () => deepgram.close(), () => server.close());
    openai.faults = { refuseNext: { count: 1, status: 401 } };
    const packets = packetsByTag(capture).get(TAG_B)!;
    const client = await server.connect({ sessionId: 'probe' });
    let chunk = 0;
    const say = (n: number) => {
      for (let i = 0; i < n; i++, chunk++) {
        const payload = Buffer.from(packets[chunk % packets.length]!).toString('base64');
        client.send({ event: 'media', media: { tag: TAG_B, chunk: chunk + 1, timestamp: (chunk + 1) * 960, payload } });
      }
    };
    const switches = () => client.messages.filter((m) => m.event === 'provider-switched');
    say(50);
    await client.waitFor(() => switches().length === 1, 'the failover');
    // Deepgram takes Opus here: the PCM made for OpenAI cannot go to it, and is said to be lost.
    expect(server.logs.find((l) => l.msg === 'participant moved to the next provider')).toMatchObject({ to: 'deepgram', reason: 'auth', carriedMs: 0, lostMs: 1000 });
    say(50);
    await deepgram.waitFor(() => (deepgram.connections[0]?.packets.length ?? 0) >= 50, 'the audio at Deepgram');
    // An utterance boundary before 60 s: it stays on Deepgram.
    server.clock.advance(2_500);
    await settle();
    expect(switches()).toHaveLength(1);
    say(50);
    await deepgram.waitFor(() => deepgram.connections[0]!.packets.length >= 100, 'more audio at Deepgram');
    // Past 60 s, the next utterance's end is the boundary where the preferred one is tried again.
    server.clock.advance(60_000);
    await settle();
    expect(switches()).toHaveLength(1);
    say(50);
    await deepgram.waitFor(() => deepgram.connections.reduce((n, c) => n + c.packets.length, 0) >= 150, 'the utterance at Deepgram');
    server.clock.advance(2_500);
    await settle();
    await client.waitFor(() => switches().length === 2, 'the probe back');
    expect(switches()[1]).toEqual({ event: 'provider-switched', tag: TAG_B, from: 'deepgram', to: 'openai', reason: 'probe' });
    say(50);
    await openai.waitFor(() => openai.connections.some((c) => c.authorized && c.audioMs >= 50 * 20), 'the next utterance at OpenAI');
  });

  it('from Deepgram, which got Opus as Ogg pages, to OpenAI: the pages it never took are decoded, and all of the audio goes on', async () => {
    const { openai, deepgram, proxy } = await start({ PROVIDERS_PRIORITY: 'deepgram,openai', DEEPGRAM_ENCODING: 'opus', PROVIDER_QUEUE_MS: '120000' });
    deepgram.faults = { refuseNext: { count: 1, status: 401, dgError: 'Invalid credentials.' } };
    const client = await proxy.connect({ sessionId: 'failover-ogg' });
    await replayJvb(client, { pace: 'fast', records: onlyTag(capture, TAG_A) });
    await client.waitFor(() => client.messages.some((m) => m.event === 'provider-switched'), 'the switch');
    expect(client.messages.find((m) => m.event === 'provider-switched')).toEqual({ event: 'provider-switched', tag: TAG_A, from: 'deepgram', to: 'openai', reason: 'auth' });
    const aMs = packetsByTag(capture).get(TAG_A)!.length * 20;
    expect(proxy.logs.find((l) => l.msg === 'participant moved to the next provider')).toMatchObject({ to: 'openai', carriedMs: aMs, lostMs: 0 });
    await openai.waitFor(() => openai.connections.some((c) => c.authorized && c.audioMs >= aMs), "all of A's audio at OpenAI");
    await client.waitFor(() => client.finals(TAG_A).length > 0, 'finals from OpenAI');
  });

  it('stays put with a single provider: it retries, as before', async () => {
    const openai = await FakeOpenAI.start();
    const proxy = await startProviderServer({ OPENAI_API_KEY: openai.apiKey, OPENAI_BASE_URL: openai.baseUrl, FORCE_COMMIT_TIMEOUT: '0.5' });
    closers.push(() => openai.close(), () => proxy.close());
    openai.faults = { refuseNext: { count: 1, status: 401 } };
    const client = await proxy.connect({ sessionId: 'alone' });
    await replayJvb(client, { pace: 'fast', records: onlyTag(capture, TAG_B).slice(0, 30) });
    await client.waitFor(() => client.messages.some((m) => m.event === 'error'), 'the error');
    expect(client.messages.some((m) => m.event === 'provider-switched')).toBe(false);
  });
});
