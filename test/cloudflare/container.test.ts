/**
 * The Worker in front of the transcription containers (src/runtime/workerd.ts) under
 * workerd, with the production Container class. Docker does not run here, so
 * CONTAINER_URL_OVERRIDE points every instance's port at our real Node server on 127.0.0.1
 * (through a recording tap) in front of the fake OpenAI server:
 *
 *   client → Worker → TranscriberContainer (Durable Object) → tap → Node server → fake OpenAI
 *
 * Finals also go to a Durable Object dispatcher (test/runtimes/workerd/dispatcher-worker.ts).
 */
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import type { NodeServer } from '../../src/runtime/node/server.ts';
import type { DispatcherFinal as DispatcherMessage } from '../../src/sinks/dispatcher/message.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TAG_A, TAG_B, TestClient, replayJvb } from '../helpers/client.ts';
import { readCapture } from '../helpers/fixtures.ts';
import type { LogLine } from '../helpers/proxy.ts';
import { until } from '../helpers/wait.ts';
import type { ObjectRecords } from '../runtimes/dispatcher-scenario.ts';
import { bundleWorker, COMPATIBILITY_DATE } from '../runtimes/workerd-harness.ts';
import { ROOT, startContainerServer, startFront } from './front.ts';
import { Tap } from './tap.ts';

/** Short, so that sleeping when idle happens within a test. */
const SLEEP_AFTER_SECONDS = 1;

let fake: FakeOpenAI;
let node: NodeServer;
let nodeLogs: LogLine[];
let tap: Tap;
let mf: Miniflare;
let base: URL;

async function startNode(): Promise<NodeServer> {
  nodeLogs = [];
  return startContainerServer(fake, createLogger('info', (_level, line) => nodeLogs.push(JSON.parse(line) as LogLine)));
}

beforeAll(async () => {
  fake = await FakeOpenAI.start();
  node = await startNode();
  tap = await Tap.start(node.port);
  ({ mf, base } = await startFront({
    fake,
    tap,
    bindings: { CONTAINER_SLEEP_AFTER: `${SLEEP_AFTER_SECONDS}s`, DISPATCHER_QUEUE_LIMIT: '1000', FINISH_TIMEOUT_MS: '3000', LOG_LEVEL: 'warn' },
    durableObjects: { DISPATCHER_DO: { className: 'DispatcherObject', scriptName: 'dispatcher' } },
    workers: [
      {
        name: 'dispatcher',
        modules: await bundleWorker('test/runtimes/workerd/dispatcher-worker.ts'),
        modulesRoot: ROOT,
        compatibilityDate: COMPATIBILITY_DATE,
        durableObjects: { DISPATCHER_DO: 'DispatcherObject' },
      },
    ],
  }));
});

afterAll(async () => {
  await mf?.dispose();
  await tap?.close();
  await node?.close();
  await fake?.close();
});

const wsUrl = (query: Record<string, string>, path = '/transcribe') =>
  `${new URL(path, base).href.replace(/^http/, 'ws')}?${new URLSearchParams(query)}`;

async function health(sessionId?: string): Promise<{ status: number; body: Record<string, any> }> {
  const response = await fetch(new URL(sessionId === undefined ? '/health' : `/health?sessionId=${sessionId}`, base));
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

async function dispatched(sessionId: string): Promise<DispatcherMessage[]> {
  const namespace = await mf.getDurableObjectNamespace('DISPATCHER_DO', 'front');
  const response = await namespace.get(namespace.idFromName(sessionId)).fetch('https://dispatcher.do/records');
  return ((await response.json()) as ObjectRecords).messages;
}

const frames = () => readCapture();
/** The capture's first half: its first speaker's opening turn, enough for a final. */
const firstHalf = () => frames().slice(0, Math.ceil(frames().length / 2));

describe('the Worker in front of the container', () => {
  it('answers /health itself, with whether a container answers and the names (only) of what it forwards', async () => {
    const { status, body } = await health();
    expect(status).toBe(200);
    expect(body).toMatchObject({ status: 'ok', runtime: 'workerd', providers: ['openai', 'local'] });
    expect(body.container).toMatchObject({ instance: '#health', state: 'healthy', answers: true });
    // The container's own /health: the Node server, with the provider the forwarded key enables.
    expect(body.container.health).toMatchObject({ status: 'ok', runtime: 'node', providers: ['openai', 'local'] });
    expect(body.container.env).toEqual(expect.arrayContaining(['OPENAI_API_KEY', 'OPENAI_BASE_URL', 'USE_DISPATCHER', 'PORT', 'LOG_LEVEL']));
    expect(body.container.env).not.toContain('DISPATCHER_QUEUE_LIMIT');
    expect(body.container.env).not.toContain('CONTAINER_URL_OVERRIDE');
    expect(JSON.stringify(body)).not.toContain(fake.apiKey);
  });

  it('refuses what the Node server refuses, with the same answers', async () => {
    await expect(TestClient.connect(wsUrl({ sendBack: 'true', transcribe: 'false' }))).rejects.toMatchObject({
      status: 400,
      body: 'transcribe must be "true" (got "false")',
    });
    await expect(TestClient.connect(wsUrl({ sessionId: 'x' }))).rejects.toMatchObject({
      status: 400,
      body: 'no output: set sendBack=true (and sendBackInterim=true for interims) or useDispatcher=true',
    });
    await expect(TestClient.connect(wsUrl({ useDispatcher: 'true' }))).rejects.toMatchObject({ status: 400 });
    await expect(TestClient.connect(wsUrl({ sendBack: 'true', provider: 'nope' }))).rejects.toMatchObject({
      status: 400,
      body: 'provider "nope" is unknown; known providers: openai, deepgram, gemini, vosk, local',
    });
    await expect(TestClient.connect(wsUrl({ sendBack: 'true' }, '/elsewhere'))).rejects.toMatchObject({ status: 404 });
    const plain = await fetch(new URL('/transcribe', base));
    expect(plain.status).toBe(426);
  });

  it('relays a session to its container: info first, transcripts back, finals to the dispatcher', async () => {
    const client = await TestClient.connect(wsUrl({ sessionId: 'cf-a', sendBack: 'true', sendBackInterim: 'true', useDispatcher: 'true' }));
    await client.waitFor(() => client.messages.length > 0, 'info');
    expect(client.messages[0]).toEqual({
      event: 'info',
      application: 'opus-transcriber-proxy',
      version: '0.1.0',
      runtime: 'workerd',
      provider: 'openai',
      providersAvailable: ['openai', 'local'],
      sessionId: 'cf-a',
    });
    await replayJvb(client, { pace: 'fast' });
    await client.waitFor(() => client.finals(TAG_A).length > 0 && client.finals(TAG_B).length > 0, 'finals of both tags', 30_000);
    expect(client.interims().length).toBeGreaterThan(0);
    // The container transcribed it, with no dispatcher of its own: the Worker asked for everything the client wants.
    const [upstream] = tap.session('cf-a');
    const query = new URL(upstream!.url, 'http://container').searchParams;
    expect(Object.fromEntries(query)).toMatchObject({ sessionId: 'cf-a', sendBack: 'true', sendBackInterim: 'true', useDispatcher: 'false' });
    expect(client.messages.filter((m) => m.event === 'info')).toHaveLength(1);
    await client.close();

    const finals = client.finals();
    await until(async () => (await dispatched('cf-a')).length >= finals.length, 'the finals at the dispatcher');
    const messages = await dispatched('cf-a');
    for (const final of finals) {
      expect(messages).toContainEqual(
        expect.objectContaining({ sessionId: 'cf-a', endpointId: final.participant.id, messageId: final.message_id, text: final.transcript[0]!.text }),
      );
    }
    // Each final once (interims share their final's id); the drain may add the finals of
    // utterances still open when the client left.
    expect(new Set(messages.map((m) => m.messageId)).size).toBe(messages.length);
  });

  it('is a pure pass-through without the dispatcher: frames unchanged both ways, nothing dispatched', async () => {
    const client = await TestClient.connect(wsUrl({ sessionId: 'cf-pass', sendBack: 'true', useDispatcher: 'false' }));
    const raw: string[] = [];
    client.ws.on('message', (data) => raw.push(data.toString()));
    const sent = frames().map((r) => r.data);
    await replayJvb(client, { pace: 'fast' });
    await client.waitFor(() => client.finals(TAG_A).length > 0 && client.finals(TAG_B).length > 0, 'finals of both tags', 30_000);
    await client.close();

    const [upstream] = tap.session('cf-pass');
    expect(new URL(upstream!.url, 'http://container').searchParams.get('sendBackInterim')).toBeNull();
    await until(() => upstream!.toContainer.length === sent.length, 'every frame at the container');
    expect(upstream!.toContainer).toEqual(sent);
    const results = (frames: string[]) => frames.filter((f) => f.includes('"transcription-result"'));
    expect(results(raw).length).toBeGreaterThan(0);
    expect(results(raw)).toEqual(results(upstream!.fromContainer).slice(0, results(raw).length));
    expect(client.interims()).toEqual([]);
    expect(await dispatched('cf-pass')).toEqual([]);
  });

  it('dispatches without sending back when the client only asks for the dispatcher', async () => {
    const client = await TestClient.connect(wsUrl({ sessionId: 'cf-quiet', useDispatcher: 'true' }));
    await replayJvb(client, { pace: 'fast' });
    await until(async () => (await dispatched('cf-quiet')).length > 0, 'a final at the dispatcher', 30_000);
    expect(client.messages.map((m) => m.event)).toEqual(['info']);
    await client.close();
  });

  it('still dispatches the finals of the audio sent just before the client left', async () => {
    const client = await TestClient.connect(wsUrl({ sessionId: 'cf-leave', useDispatcher: 'true' }));
    await replayJvb(client, { pace: 'fast' });
    await client.close();
    // The streams are stopped at the container and the link stays open while their finals come.
    await until(async () => new Set((await dispatched('cf-leave')).map((m) => m.endpointId)).size === 2, 'finals of both speakers', 30_000);
    const [upstream] = tap.session('cf-leave');
    const stops = upstream!.toContainer.filter((f) => f.includes('"stop"')).map((f) => JSON.parse(f) as { stop: { tag: string } });
    expect(stops.map((s) => s.stop.tag).sort()).toEqual([TAG_A, TAG_B]);
  });

  it('answers pings itself, so a container still starting does not look like a dead socket', async () => {
    const client = await TestClient.connect(wsUrl({ sessionId: 'cf-ping', sendBack: 'true' }));
    client.send({ event: 'ping', id: 'p-1' });
    await client.waitFor(() => client.messages.some((m) => m.event === 'pong'), 'pong');
    expect(client.messages.find((m) => m.event === 'pong')).toEqual({ event: 'pong', id: 'p-1' });
    await client.close();
    expect(tap.session('cf-ping').flatMap((s) => s.toContainer)).toEqual([]);
  });

  it('routes two sessions to two container instances, one per sessionId', async () => {
    const one = await TestClient.connect(wsUrl({ sessionId: 'cf-one', sendBack: 'true' }));
    const two = await TestClient.connect(wsUrl({ sessionId: 'cf-two', sendBack: 'true' }));
    await until(() => tap.session('cf-one').length === 1 && tap.session('cf-two').length === 1, 'both sessions at the container');
    const [a, b, never] = await Promise.all([health('cf-one'), health('cf-two'), health('cf-never')]);
    expect(a.body.container).toMatchObject({ instance: 'cf-one', state: 'healthy', answers: true });
    expect(b.body.container).toMatchObject({ instance: 'cf-two', state: 'healthy', answers: true });
    expect(a.body.container.id).not.toBe(b.body.container.id);
    // Looking at a session's instance does not start it.
    expect(never.body.container).toMatchObject({ instance: 'cf-never', state: 'stopped', answers: false });
    const opened = nodeLogs.filter((l) => l.msg === 'session opened').map((l) => l.session);
    expect(opened).toEqual(expect.arrayContaining(['cf-one', 'cf-two']));
    await one.close();
    await two.close();
  });

  it('keeps the container awake while the socket is live, and lets it sleep once idle', async () => {
    const client = await TestClient.connect(wsUrl({ sessionId: 'cf-idle', sendBack: 'true' }));
    await until(() => tap.session('cf-idle').length === 1, 'the session at the container');
    // Several idle periods without a frame. Real time is unavoidable (workerd's alarms and the
    // container's sleep run on their own clocks): staying awake is asserted after three sleep
    // periods, so a machine slow to deliver alarms can only make it pass late, not fail; the sleep
    // that follows is given 30 s, thirty sleep periods.
    await new Promise((resolve) => setTimeout(resolve, SLEEP_AFTER_SECONDS * 3_000));
    expect(client.closed).toBeUndefined();
    expect((await health('cf-idle')).body.container).toMatchObject({ state: 'healthy' });
    await replayJvb(client, { pace: 'fast', records: firstHalf() });
    await client.waitFor(() => client.finals().length > 0, 'a final after the idle time');
    expect(tap.session('cf-idle')).toHaveLength(1);
    await client.close();
    await until(async () => (await health('cf-idle')).body.container.state === 'stopped', 'the container to sleep', 30_000);
  });
});

describe('when the container goes away', () => {
  it('closes the client with 1012 so the media server reconnects, to the same instance', async () => {
    const client = await TestClient.connect(wsUrl({ sessionId: 'cf-kill', sendBack: 'true', useDispatcher: 'true' }));
    await until(() => tap.session('cf-kill').length === 1, 'the session at the container');
    const before = (await health('cf-kill')).body.container.id as string;

    await node.close();
    await client.waitFor(() => client.closed !== undefined, 'the client to be closed');
    expect(client.closed).toEqual({ code: 1012, reason: 'transcription container restarted; reconnect' });

    // Nothing answers: a new session cannot reach a transcriber and is told to try later.
    const refused = await TestClient.connect(wsUrl({ sessionId: 'cf-kill', sendBack: 'true' }));
    await refused.waitFor(() => refused.closed !== undefined, 'the refused session to be closed', 40_000);
    expect(refused.closed?.code).toBe(1013);
    expect(refused.messages).toEqual([
      expect.objectContaining({ event: 'info' }),
      { event: 'error', code: 'transcriber_unavailable', message: 'no transcriber could be reached; reconnect later' },
    ]);

    node = await startNode();
    tap.retarget(node.port);
    const again = await TestClient.connect(wsUrl({ sessionId: 'cf-kill', sendBack: 'true' }));
    await replayJvb(again, { pace: 'fast', records: firstHalf() });
    await again.waitFor(() => again.finals().length > 0, 'a final after the reconnect', 30_000);
    expect((await health('cf-kill')).body.container.id).toBe(before);
    expect(nodeLogs.filter((l) => l.msg === 'session opened').map((l) => l.session)).toEqual(['cf-kill']);
    await again.close();

    const metrics = await (await fetch(new URL('/metrics', base))).text();
    expect(metrics).toMatch(/transcriber_relay_errors_total\{reason="lost"\} [1-9]/);
    expect(metrics).toMatch(/transcriber_relay_errors_total\{reason="unavailable"\} [1-9]/);
  });
});

describe('the Worker in front of containers takes their providers', () => {
  it('accepts PROVIDERS_PRIORITY naming local, which only the containers run, and forwards it', async () => {
    const front = await startFront({ fake, tap, bindings: { PROVIDERS_PRIORITY: 'local,openai', LOG_LEVEL: 'error' } });
    try {
      const response = await fetch(new URL('/health', front.base));
      const body = (await response.json()) as { providers: string[] };
      expect(body.providers).toEqual(['local', 'openai']);
    } finally {
      await front.mf.dispose();
    }
  });
});

describe('a misconfigured Worker', () => {
  it('answers every request with 500 naming each bad variable, never a value', async () => {
    const bad = new Miniflare({
      modules: await bundleWorker('src/runtime/workerd.ts'),
      modulesRoot: ROOT,
      compatibilityDate: COMPATIBILITY_DATE,
      bindings: { OPENAI_API_KEY: 'sk-do-not-show', USE_DISPATCHER: 'true', CONTAINER_SLEEP_AFTER: 'soon' },
      durableObjects: { CONTAINER: { className: 'TranscriberContainer', useSQLite: true } },
    });
    try {
      for (const path of ['/health', '/transcribe']) {
        const response = await bad.dispatchFetch(`http://worker${path}`);
        const text = await response.text();
        expect(response.status).toBe(500);
        expect(text).toContain('CONTAINER_SLEEP_AFTER: must be a duration such as 90s, 5m or 1h');
        expect(text).toContain('USE_DISPATCHER: true, but no DISPATCHER_DO, TRANSCRIPTION_QUEUE or TRANSCRIPTION_DISPATCHER binding exists');
        expect(text).not.toContain('sk-do-not-show');
      }
    } finally {
      await bad.dispose();
    }
  });
});
