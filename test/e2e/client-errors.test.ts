/**
 * What the client is told when things go wrong (PROTOCOL.md, Errors): provider trouble once
 * per episode per participant, with its tag and provider and never the key; and every bad
 * frame answered with an `error` naming the problem, throttled, counted and logged.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeDeepgram } from '../fakes/deepgram.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TAG_A, TAG_B, replayJvb, type Received, type TestClient } from '../helpers/client.ts';
import { readCapture } from '../helpers/fixtures.ts';
import { onlyTag, startProviderServer, type ProviderServer } from '../helpers/provider-server.ts';
import { metricValue, startProxy } from '../helpers/proxy.ts';
import { until } from '../helpers/wait.ts';

const capture = readCapture();
const FAST = { FORCE_COMMIT_TIMEOUT: '0.5', PROVIDER_QUEUE_MS: '60000' };

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const errors = (client: TestClient): Received[] => client.messages.filter((m) => m.event === 'error');

let pings = 0;
/** Every message the server produced before this point has arrived: the socket keeps order. */
async function settle(client: TestClient): Promise<void> {
  const id = `settle-${++pings}`;
  client.send({ event: 'ping', id });
  await client.waitFor(() => client.messages.some((m) => m.event === 'pong' && m.id === id), 'pong');
}

/** The proxy's failed connection attempts for one session so far. */
const failures = (proxy: ProviderServer, session: string) =>
  proxy.logs.filter((l) => (l.msg === 'provider connection failed' || l.msg === 'provider connection lost') && l.session === session);

/** A port on 127.0.0.1 where nothing listens. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const speakerA = onlyTag(capture, TAG_A);

describe('provider trouble reaches the client', () => {
  it('a wrong OpenAI key: one provider_auth error for the participant, without the key, and nothing else', async () => {
    const wrong = 'sk-wrong-0123456789abcdef';
    const proxy = await startProxy({ ...FAST, OPENAI_API_KEY: wrong });
    closers.push(() => proxy.close());
    proxy.fake.faults.echoKey = true;
    const client = await proxy.connect({ sessionId: 'wrong-key' });
    await replayJvb(client, { pace: 'fast', records: speakerA.slice(0, 150) });
    await client.waitFor(() => errors(client).length > 0, 'the error');
    // The fake did quote the key back; it was masked before anything left the proxy.
    expect(JSON.stringify(proxy.fake.connections[0]!.sent)).toContain(wrong);
    await replayJvb(client, { pace: 'fast', records: speakerA.slice(150) });
    await settle(client);

    expect(errors(client)).toEqual([
      {
        event: 'error',
        code: 'provider_auth',
        message: 'OpenAI error invalid_api_key: Incorrect API key provided: ***. You can find your API key at https://platform.openai.com/account/api-keys.',
        tag: TAG_A,
        provider: 'openai',
      },
    ]);
    expect(client.messages.map((m) => m.event)).toEqual(['info', 'error', 'pong']);
    expect(JSON.stringify(client.messages)).not.toContain(wrong);
    expect(JSON.stringify(proxy.logs)).not.toContain(wrong);
  });

  it('retries are one episode: one provider_rate_limited for many refused handshakes; after recovery a new failure is a new episode', async () => {
    const proxy = await startProxy(FAST);
    closers.push(() => proxy.close());
    proxy.fake.faults.refuseHandshake = 429;
    const client = await proxy.connect({ sessionId: 'limited' });
    await replayJvb(client, { pace: 'fast', records: speakerA.slice(0, 100) });
    await until(() => failures(proxy, 'limited').length >= 3, 'three refused attempts');
    await settle(client);
    expect(errors(client)).toEqual([
      {
        event: 'error',
        code: 'provider_rate_limited',
        message: 'OpenAI refused the connection: HTTP 429 (refused by fault injection)',
        tag: TAG_A,
        provider: 'openai',
      },
    ]);

    // Recovered: the next attempt is accepted and the queued audio transcribed.
    proxy.fake.faults.refuseHandshake = undefined;
    await replayJvb(client, { pace: 'fast', records: speakerA.slice(100, 200) });
    await client.waitFor(() => client.finals(TAG_A).length > 0, 'finals once the provider accepts');
    expect(errors(client)).toHaveLength(1);

    // A new episode: the connection drops, and the reconnection is refused with another status.
    proxy.fake.faults.refuseHandshake = 401;
    const before = failures(proxy, 'limited').length;
    proxy.fake.connections[0]!.close(1011, 'server_error');
    await until(() => failures(proxy, 'limited').length > before, 'the loss noticed');
    await replayJvb(client, { pace: 'fast', records: speakerA.slice(200) });
    await until(() => failures(proxy, 'limited').some((l) => l.kind === 'auth'), 'the refused reconnection');
    await settle(client);
    expect(errors(client).map((e) => [e.code, e.message])).toEqual([
      ['provider_rate_limited', 'OpenAI refused the connection: HTTP 429 (refused by fault injection)'],
      ['provider_error', 'OpenAI closed the connection (1011 server_error)'],
    ]);
  });

  it('an unreachable provider (a closed port): one provider_unreachable, however many attempts', async () => {
    const port = await closedPort();
    const proxy = await startProviderServer({ ...FAST, OPENAI_API_KEY: 'sk-unused', OPENAI_BASE_URL: `ws://127.0.0.1:${port}/v1` });
    closers.push(() => proxy.close());
    const client = await proxy.connect({ sessionId: 'nowhere' });
    await replayJvb(client, { pace: 'fast', records: speakerA.slice(0, 150) });
    await until(() => failures(proxy, 'nowhere').length >= 3, 'three failed attempts');
    await settle(client);
    expect(errors(client)).toEqual([
      {
        event: 'error',
        code: 'provider_unreachable',
        message: expect.stringMatching(new RegExp(`^OpenAI could not be reached: .*ECONNREFUSED 127\\.0\\.0\\.1:${port}`)),
        tag: TAG_A,
        provider: 'openai',
      },
    ]);
    expect(client.results()).toEqual([]);
  });

  it('a wrong Deepgram key: one provider_auth per participant, without the key; a session on another provider is untouched', async () => {
    const wrong = 'dg-wrong-key-0123456789';
    const deepgram = await FakeDeepgram.start();
    const openai = await FakeOpenAI.start();
    closers.push(() => openai.close(), () => deepgram.close());
    deepgram.faults.echoKey = true;
    const proxy = await startProviderServer({
      ...FAST,
      DEEPGRAM_API_KEY: wrong,
      DEEPGRAM_BASE_URL: deepgram.baseUrl,
      OPENAI_API_KEY: openai.apiKey,
      OPENAI_BASE_URL: openai.baseUrl,
    });
    closers.push(() => proxy.close());
    const victim = await proxy.connect({ sessionId: 'dg-victim', provider: 'deepgram' });
    const other = await proxy.connect({ sessionId: 'oa-other', provider: 'openai' });
    await Promise.all([replayJvb(victim, { pace: 'fast', records: capture }), replayJvb(other, { pace: 'fast', records: capture })]);
    await victim.waitFor(() => errors(victim).length === 2, 'an error for each participant');
    await other.waitFor(() => other.finals(TAG_A).length > 0 && other.finals(TAG_B).length > 0, 'the other session\'s finals');
    await Promise.all([settle(victim), settle(other)]);

    const expected = (tag: string) => ({
      event: 'error',
      code: 'provider_auth',
      message: 'Deepgram refused the connection: HTTP 401 (Invalid credentials: ***.)',
      tag,
      provider: 'deepgram',
    });
    expect(errors(victim).sort((a, b) => String(a.tag).localeCompare(String(b.tag)))).toEqual([TAG_A, TAG_B].sort().map(expected));
    // OpenAI is configured too: each participant fails over to it, alone (docs/PROTOCOL.md §5.6).
    const switches = victim.messages.filter((m) => m.event === 'provider-switched');
    expect(switches.sort((a, b) => String(a.tag).localeCompare(String(b.tag)))).toEqual(
      [TAG_A, TAG_B].sort().map((tag) => ({ event: 'provider-switched', tag, from: 'deepgram', to: 'openai', reason: 'auth' })),
    );
    expect(errors(other)).toEqual([]);
    expect(other.messages.some((m) => m.event === 'provider-switched')).toBe(false);
    expect(JSON.stringify([victim.messages, proxy.logs])).not.toContain(wrong);
  });

  it('one participant\'s refused handshake is told for that participant only; both are transcribed', async () => {
    const proxy = await startProxy(FAST);
    closers.push(() => proxy.close());
    proxy.fake.faults.refuseNext = { count: 1, status: 503 };
    const client = await proxy.connect({ sessionId: 'one-refused' });
    await replayJvb(client, { pace: 'fast', records: capture });
    await client.waitFor(() => client.finals(TAG_A).length > 0 && client.finals(TAG_B).length > 0, 'finals for both');
    await settle(client);
    expect(errors(client)).toHaveLength(1);
    expect(errors(client)[0]).toMatchObject({ code: 'provider_error', message: 'OpenAI refused the connection: HTTP 503 (refused by fault injection)', provider: 'openai' });
    expect([TAG_A, TAG_B]).toContain(errors(client)[0]!.tag);
  });
});

describe('bad socket messages are answered', () => {
  it('with one error per frame, naming the problem, counted by reason and logged with session and tag', async () => {
    const proxy = await startProxy({ ...FAST, MAX_MESSAGE_BYTES: '1024' });
    closers.push(() => proxy.close());
    const client = await proxy.connect({ sessionId: 'garbage' });
    const bad: [code: string, frame: string | Uint8Array, message: string, tag?: string][] = [
      ['invalid_json', 'hello', 'message is not JSON'],
      ['invalid_json', '42', 'message is not a JSON object'],
      ['binary_frame', new Uint8Array([1, 2, 3]), 'binary frames are not accepted; send JSON text frames'],
      ['too_large', JSON.stringify({ event: 'ping', pad: 'x'.repeat(2000) }), 'message of 2025 bytes exceeds the 1024-byte limit (MAX_MESSAGE_BYTES)'],
      ['bad_base64', JSON.stringify({ event: 'media', media: { tag: 'cafe-1', payload: '!!!' } }), 'media payload is not valid base64', 'cafe-1'],
      ['invalid_media', JSON.stringify({ event: 'media', media: { tag: 'cafe-1' } }), 'media: media.payload: Invalid key: Expected "payload" but received undefined'],
      [
        'invalid_start',
        JSON.stringify({ event: 'start', start: { tag: 'cafe-1', mediaFormat: { encoding: 'mp3' } } }),
        'start: start.mediaFormat.encoding: Invalid type: Expected ("opus" | "ogg-opus" | "ogg" | "l16") but received "mp3"',
      ],
      ['invalid_stop', JSON.stringify({ event: 'stop', stop: {} }), 'stop: stop.tag: Invalid key: Expected "tag" but received undefined'],
      ['unknown_event', JSON.stringify({ event: 'dance' }), 'unknown event "dance"; events are start, media, stop, ping, info, usage'],
      ['unknown_event', JSON.stringify({ tag: 'x' }), 'message has no "event" string; events are start, media, stop, ping, info, usage'],
    ];
    // Sent raw: TestClient.send would turn the binary frame into JSON text.
    for (const [, frame] of bad) client.ws.send(frame);
    await settle(client);
    expect(errors(client)).toEqual(
      bad.map(([code, , message, tag]) => (tag === undefined ? { event: 'error', code, message } : { event: 'error', code, message, tag })),
    );
    expect(client.closed).toBeUndefined();

    const metrics = await proxy.metrics();
    for (const code of new Set(bad.map(([c]) => c))) {
      expect(metricValue(metrics, 'transcriber_input_errors_total', { reason: code }), code).toBe(bad.filter(([c]) => c === code).length);
    }
    const refused = proxy.logs.filter((l) => l.msg === 'input refused');
    expect(refused.every((l) => l.session === 'garbage')).toBe(true);
    expect(refused.find((l) => l.reason === 'bad_base64')).toMatchObject({ level: 'warn', tag: 'cafe-1' });
  });

  it('throttled like the log: the first five of a kind, then every power of ten', async () => {
    const proxy = await startProxy(FAST);
    closers.push(() => proxy.close());
    const client = await proxy.connect({ sessionId: 'flood' });
    for (let i = 0; i < 120; i++) client.send('not json');
    await settle(client);
    const answered = errors(client);
    expect(answered).toHaveLength(7); // 1-5, 10, 100
    expect(answered.every((e) => e.code === 'invalid_json')).toBe(true);
    expect(proxy.logs.filter((l) => l.msg === 'input refused' && l.session === 'flood').map((l) => l.occurrences)).toEqual([1, 2, 3, 4, 5, 10, 100]);
    expect(metricValue(await proxy.metrics(), 'transcriber_input_errors_total', { reason: 'invalid_json' })).toBe(120);
  });

  it('JSON nested deeper than the stack (found by bench/fuzz.ts): a ping id is refused, an info logged, the server lives', async () => {
    const proxy = await startProxy(FAST);
    closers.push(() => proxy.close());
    const client = await proxy.connect({ sessionId: 'deep' });
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    client.send(`{"event":"ping","id":${deep}}`);
    client.send(`{"event":"info","extra":${deep}}`);
    client.send({ event: 'ping', id: 'after' });
    await client.waitFor(() => client.messages.some((m) => m.event === 'pong'), 'the pong after');
    expect(errors(client)).toEqual([expect.objectContaining({ code: 'invalid_ping', message: 'ping: its id is nested too deeply to echo' })]);
    expect(client.messages.filter((m) => m.event === 'pong')).toEqual([{ event: 'pong', id: 'after' }]);
    expect(proxy.logs.find((l) => l.msg === 'client info')).toMatchObject({ info: '(not printable: nested too deeply)' });
    expect(proxy.logs.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('unknown events: each answered (throttled) and counted, each name logged at warn once', async () => {
    const proxy = await startProxy(FAST);
    closers.push(() => proxy.close());
    const client = await proxy.connect({ sessionId: 'dancer' });
    for (const name of ['dance', 'juggle', 'dance', 'dance', 'juggle']) client.send({ event: name });
    await settle(client);
    expect(errors(client).map((e) => e.message)).toEqual(
      ['dance', 'juggle', 'dance', 'dance', 'juggle'].map((n) => `unknown event "${n}"; events are start, media, stop, ping, info, usage`),
    );
    const logged = proxy.logs.filter((l) => l.msg === 'unknown event');
    expect(logged.map((l) => [l.level, l.event, l.session])).toEqual([
      ['warn', 'dance', 'dancer'],
      ['warn', 'juggle', 'dancer'],
    ]);
    expect(metricValue(await proxy.metrics(), 'transcriber_input_errors_total', { reason: 'unknown_event' })).toBe(5);
    // Still a working session.
    expect(client.closed).toBeUndefined();
  });
});
