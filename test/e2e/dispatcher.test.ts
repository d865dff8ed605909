/**
 * The dispatcher sink on Node, end to end: the real server in this process, the fake
 * OpenAI Realtime provider, the fake dispatcher, and the repository's capture replayed by a client.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { ConfigError } from '../../src/config.ts';
import { startNodeServer, type NodeServer } from '../../src/runtime/node/server.ts';
import { FakeDispatcher, type DispatchedMessage } from '../fakes/dispatcher.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TestClient, replayJvb, TAG_A, TAG_B, type TranscriptionMessage } from '../helpers/client.ts';
import { readCapture } from '../helpers/fixtures.ts';

const SECRET = `Bearer dsp-${crypto.randomUUID()}`;

let openai: FakeOpenAI;
let dispatcher: FakeDispatcher;
const running: { server: NodeServer; clients: TestClient[] }[] = [];

beforeAll(async () => {
  openai = await FakeOpenAI.start();
});
afterAll(async () => {
  await openai.close();
});
afterEach(async () => {
  for (const { server, clients } of running.splice(0)) {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
  }
  await dispatcher?.close();
});

async function start(env: Record<string, string>, dispatcherPath = '/ingest') {
  dispatcher = await FakeDispatcher.start();
  const lines: string[] = [];
  const log = createLogger('debug', (_level, line) => lines.push(line));
  const server = await startNodeServer({
    env: {
      PORT: '0',
      HOST: '127.0.0.1',
      OPENAI_API_KEY: openai.apiKey,
      OPENAI_BASE_URL: openai.baseUrl,
      DISPATCHER_WS_URL: dispatcher.url(dispatcherPath),
      DISPATCHER_HEADERS: JSON.stringify({ Authorization: SECRET }),
      ...env,
    },
    log,
  });
  const entry = { server, clients: [] as TestClient[] };
  running.push(entry);
  const connect = async (query: string) => {
    const client = await TestClient.connect(`ws://127.0.0.1:${server.port}/transcribe?${query}`);
    entry.clients.push(client);
    return client;
  };
  const metrics = () => fetch(`http://127.0.0.1:${server.port}/metrics`).then((r) => r.text());
  return { server, lines, connect, metrics };
}

/** Sum of a metric's series in Prometheus text, over the series carrying `labels`. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-z_:]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    if (Object.entries(labels).every(([k, v]) => (match[2] ?? '').includes(`${k}="${v}"`))) sum += Number(match[3]);
  }
  return sum;
}

/**
 * Ends both speakers' streams (whose provider connections are those from `providerMark`
 * on in the fake's list) and waits until every final the provider produced has
 * reached the client: after `stop`, a participant's provider stream closes once its last
 * final is out, and the server counts each final it hands to the sinks.
 */
async function finishSpeakers(client: TestClient, server: NodeServer, providerMark: number): Promise<void> {
  client.send({ event: 'stop', stop: { tag: TAG_A } });
  client.send({ event: 'stop', stop: { tag: TAG_B } });
  const mine = () => openai.connections.slice(providerMark);
  await openai.waitFor(() => mine().length >= 2 && mine().every((c) => c.closedWith !== undefined), 'provider streams to finish');
  const produced = () => server.metrics.transcripts.get({ provider: 'openai', kind: 'final' });
  await client.waitFor(() => client.finals().length === produced(), 'every final at the client');
}

/** Each messageId's first arrival, in arrival order. */
function firstArrivals(messages: DispatchedMessage[]): string[] {
  const seen = new Set<string>();
  return messages.filter((m) => !seen.has(m.messageId) && seen.add(m.messageId)).map((m) => m.messageId);
}

function expectSameContent(final: TranscriptionMessage, message: DispatchedMessage | undefined, sessionId: string) {
  expect(message).toEqual({
    sessionId,
    endpointId: final.participant.id,
    text: final.transcript.map((t) => t.text).join(' '),
    timestamp: final.timestamp,
    ...(final.language === undefined ? {} : { language: final.language }),
    messageId: final.message_id,
  });
}

/** The capture, its pace quickened (never slowed) so that it lasts about `ms`. */
function captureLasting(ms: number) {
  const records = readCapture();
  const first = records[0]!.receivedAt;
  const factor = Math.max(1, (records.at(-1)!.receivedAt - first) / ms);
  return records.map((r) => ({ ...r, receivedAt: first + (r.receivedAt - first) / factor }));
}

describe('dispatcher over WebSocket (Node)', () => {
  it('delivers every final in order across a 7 s dispatcher outage, with the handshake headers, and no secret in the logs', async () => {
    // The URL already carries a query: sessionId is appended to it.
    const { server, lines, connect, metrics } = await start({}, '/ingest?region=eu');
    const providerMark = openai.connections.length;
    const client = await connect('sessionId=conf-1&sendBack=true&useDispatcher=true');
    let finalsDuringOutage = 0;
    client.ws.on('message', (data) => {
      const m = JSON.parse(data.toString()) as { event: string; is_interim?: boolean };
      if (m.event === 'transcription-result' && !m.is_interim && dispatcher.down) finalsDuringOutage++;
    });
    // The outage starts when the first final has arrived, so it falls amid the speech. Real time
    // is the point here (a real dispatcher down for 7 s while real-time speech goes on). The
    // outage is counted from the first final, not from the start, so the later finals (the 10 s
    // capture's other turns, and the idle commits after it) fall inside it however slow the
    // machine; the 120 s test budget is six times what the replay and the reconnect need.
    const outage = dispatcher.waitFor(() => dispatcher.received.length > 0, 'the first final', 60_000).then(() => dispatcher.outage(7_000));

    await replayJvb(client, { pace: 'realtime' });
    await outage;
    await finishSpeakers(client, server, providerMark);
    const finals = client.finals();
    const ids = finals.map((f) => f.message_id);
    await dispatcher.waitFor(() => ids.every((id) => dispatcher.messages().some((m) => m.messageId === id)), 'every final at the dispatcher');
    await client.close();
    await dispatcher.waitFor(() => dispatcher.connections.every((c) => c.closedWith), 'the last connection to close');

    // The outage happened while finals were being produced, and the proxy reconnected.
    expect(finalsDuringOutage).toBeGreaterThan(0);
    expect(dispatcher.refusals).toBeGreaterThan(0);
    expect(dispatcher.connections.length).toBeGreaterThanOrEqual(2);
    // Every final the client got reached the dispatcher, in order, with the same content.
    expect(firstArrivals(dispatcher.messages()).filter((id) => ids.includes(id))).toEqual(ids);
    for (const final of finals) expectSameContent(final, dispatcher.messages().find((m) => m.messageId === final.message_id), 'conf-1');
    // The session ended with a normal close once the queue was flushed.
    expect(dispatcher.connections.at(-1)!.closedWith).toEqual({ code: 1000, by: 'client' });
    for (const conn of dispatcher.connections) {
      expect(conn.headers.authorization).toBe(SECRET);
      const url = new URL(conn.url, 'ws://x');
      expect(url.pathname).toBe('/ingest');
      expect(url.searchParams.get('region')).toBe('eu');
      expect(url.searchParams.get('sessionId')).toBe('conf-1');
    }
    const text = await metrics();
    expect(metric(text, 'transcriber_dispatcher_dropped_total')).toBe(0);
    expect(metric(text, 'transcriber_dispatcher_queue_depth')).toBe(0);
    const log = lines.join('\n');
    expect(log).toContain('Connected to Dispatcher via WebSocket');
    expect(log).toContain('Dispatcher connection closed');
    expect(log).not.toContain(SECRET.slice('Bearer '.length));
  }, 120_000);

  it('counts what it drops when the dispatcher is down longer than the queue holds, and keeps the queue within its limit', async () => {
    const { server, lines, connect, metrics } = await start({ DISPATCHER_QUEUE_LIMIT: '2' });
    dispatcher.refuse();
    const providerMark = openai.connections.length;
    const client = await connect('sessionId=conf-2&sendBack=true&useDispatcher=true');
    // The queue depth as /metrics shows it, read whenever a final reaches the client.
    const depths: Promise<number>[] = [];
    client.ws.on('message', () => depths.push(metrics().then((t) => metric(t, 'transcriber_dispatcher_queue_depth'))));

    await replayJvb(client, { pace: 'fast' });
    await finishSpeakers(client, server, providerMark);
    const finals = client.finals();
    expect(finals.length).toBeGreaterThan(2);
    const before = await metrics();
    expect(metric(before, 'transcriber_dispatcher_queue_depth')).toBe(2);
    expect(Math.max(...(await Promise.all(depths)))).toBeLessThanOrEqual(2);

    // The dispatcher comes back; the session's end flushes what the queue kept.
    dispatcher.accept();
    await client.close();
    await dispatcher.waitFor(() => dispatcher.connections.some((c) => c.closedWith), 'the drained connection to close');

    const unique = new Set(dispatcher.messages().map((m) => m.messageId));
    const lost = finals.filter((f) => !unique.has(f.message_id)).length;
    const after = await metrics();
    expect(metric(after, 'transcriber_dispatcher_dropped_total')).toBe(lost);
    expect(metric(after, 'transcriber_dispatcher_dropped_total', { reason: 'queue_full' })).toBe(finals.length - 2);
    expect(metric(after, 'transcriber_dispatcher_queue_depth')).toBe(0);
    // What was kept is the newest, in order.
    expect(dispatcher.messages().map((m) => m.messageId)).toEqual(finals.slice(-2).map((f) => f.message_id));
    expect(lines.some((l) => l.includes('dispatcher final dropped'))).toBe(true);
  });

  it('recycles the connection every DISPATCHER_RECONNECT_INTERVAL without losing or duplicating a final', async () => {
    const { server, connect } = await start({ DISPATCHER_RECONNECT_INTERVAL: '250' });
    const providerMark = openai.connections.length;
    const client = await connect('sessionId=conf-3&sendBack=true&useDispatcher=true');
    await replayJvb(client, { pace: 'realtime', records: captureLasting(6_000) });
    await finishSpeakers(client, server, providerMark);
    const ids = client.finals().map((f) => f.message_id);
    await client.close();
    await dispatcher.waitFor(() => dispatcher.connections.every((c) => c.closedWith), 'every connection to close');

    expect(dispatcher.messages().map((m) => m.messageId)).toEqual(ids);
    // The finals really crossed switches, and every switch was a normal close by the proxy.
    expect(new Set(dispatcher.received.map((r) => r.connection)).size).toBeGreaterThanOrEqual(2);
    for (const conn of dispatcher.connections) expect(conn.closedWith).toEqual({ code: 1000, by: 'client' });
  });

  it('lets the queue drain when the server shuts down', async () => {
    const { server, connect } = await start({});
    dispatcher.refuse();
    const providerMark = openai.connections.length;
    const client = await connect('sessionId=conf-4&sendBack=true&useDispatcher=true');
    await replayJvb(client, { pace: 'fast' });
    await finishSpeakers(client, server, providerMark);
    const ids = client.finals().map((f) => f.message_id);
    expect(dispatcher.received).toEqual([]);

    dispatcher.accept();
    await server.close();
    expect(client.closed?.code).toBe(1001);
    expect(dispatcher.messages().map((m) => m.messageId)).toEqual(ids);
  });

  it('follows useDispatcher from the query over USE_DISPATCHER', async () => {
    const { connect } = await start({ USE_DISPATCHER: 'true' });
    const off = await connect('sessionId=quiet&sendBack=true&useDispatcher=false');
    const byEnv = await connect('sessionId=loud&sendBack=true');
    await Promise.all([replayJvb(off, { pace: 'fast' }), replayJvb(byEnv, { pace: 'fast' })]);
    await byEnv.waitFor(() => byEnv.finals().length > 0, 'a final');
    await off.waitFor(() => off.finals().length > 0, 'a final');
    await dispatcher.waitFor(() => dispatcher.received.length > 0, 'a dispatched final');
    await Promise.all([off.close(), byEnv.close()]);
    await dispatcher.waitFor(() => dispatcher.connections.every((c) => c.closedWith), 'connections to close');

    const sessions = dispatcher.connections.map((c) => new URL(c.url, 'ws://x').searchParams.get('sessionId'));
    expect(sessions).toContain('loud');
    expect(sessions).not.toContain('quiet');
    expect(new Set(dispatcher.messages().map((m) => m.sessionId))).toEqual(new Set(['loud']));
  });

  it('refuses a dispatched session without a sessionId before the upgrade, since finals route by it', async () => {
    const { connect } = await start({ USE_DISPATCHER: 'true' });
    const refused = await connect('sendBack=true').then(
      () => undefined,
      (e: { status?: number; body?: string }) => e,
    );
    expect(refused).toMatchObject({ status: 400, body: expect.stringContaining('sessionId is required') });
  });
});

describe('dispatcher configuration', () => {
  const base = { PORT: '0', HOST: '127.0.0.1', OPENAI_API_KEY: 'sk-x' };
  const refusal = async (env: Record<string, string>) => {
    try {
      const server = await startNodeServer({ env: { ...base, ...env }, log: createLogger('error', () => {}) });
      await server.close();
    } catch (error) {
      if (error instanceof ConfigError) return error;
      throw error;
    }
    throw new Error('the server started');
  };

  it('refuses to start with DISPATCHER_HEADERS that are not a JSON object, without quoting them', async () => {
    const error = await refusal({ DISPATCHER_HEADERS: `{Authorization: ${SECRET}}`, DISPATCHER_QUEUE_LIMIT: 'many' });
    expect(error.errors.some((e) => e.startsWith('DISPATCHER_HEADERS:'))).toBe(true);
    expect(error.errors.some((e) => e.startsWith('DISPATCHER_QUEUE_LIMIT:'))).toBe(true);
    expect(error.message).not.toContain(SECRET.slice('Bearer '.length));
  });

  it('refuses to start with USE_DISPATCHER=true and no DISPATCHER_WS_URL', async () => {
    const error = await refusal({ USE_DISPATCHER: 'true' });
    expect(error.message).toContain('DISPATCHER_WS_URL');
  });
});
