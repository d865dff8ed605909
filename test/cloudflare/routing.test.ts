/**
 * ROUTING=pool and ROUTING=autoscale under workerd, with the production Container class and
 * ContainerCoordinator. As in container.test.ts, CONTAINER_URL_OVERRIDE points every
 * container instance at our real Node server (through the recording tap), in front of the
 * fake OpenAI server; the tap sees which instance each socket came through by the
 * x-transcriber-instance header the Container class adds:
 *
 *   client → Worker → (ContainerCoordinator) → TranscriberContainer `pool-<i>` / `auto-<i>` → tap → Node server
 */
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import type { NodeServer } from '../../src/runtime/node/server.ts';
import { rendezvous } from '../../src/runtime/workerd/routing/hash.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TestClient, replayJvb } from '../helpers/client.ts';
import { readCapture } from '../helpers/fixtures.ts';
import { until } from '../helpers/wait.ts';
import { bundleWorker, COMPATIBILITY_DATE } from '../runtimes/workerd-harness.ts';
import { ROOT, startContainerServer, startFront } from './front.ts';
import { Tap } from './tap.ts';

/** Short, so that an instance left alone would sleep within a test. */
const SLEEP_AFTER_SECONDS = 1;
const POOL_SIZE = 3;

let fake: FakeOpenAI;
let node: NodeServer;
let tap: Tap;

beforeAll(async () => {
  fake = await FakeOpenAI.start();
  node = await startContainerServer(fake, createLogger('error'));
  tap = await Tap.start(node.port);
});

afterAll(async () => {
  await tap?.close();
  await node?.close();
  await fake?.close();
});

function startWorker(vars: Record<string, string>): Promise<{ mf: Miniflare; base: URL }> {
  return startFront({
    fake,
    tap,
    bindings: { CONTAINER_SLEEP_AFTER: `${SLEEP_AFTER_SECONDS}s`, FINISH_TIMEOUT_MS: '3000', LOG_LEVEL: 'warn', ...vars },
    durableObjects: { COORDINATOR: { className: 'ContainerCoordinator', useSQLite: true } },
  });
}

const wsUrl = (base: URL, query: Record<string, string>) => `${new URL('/transcribe', base).href.replace(/^http/, 'ws')}?${new URLSearchParams(query)}`;

async function health(base: URL, sessionId?: string): Promise<Record<string, any>> {
  const response = await fetch(new URL(sessionId === undefined ? '/health' : `/health?sessionId=${sessionId}`, base));
  return (await response.json()) as Record<string, any>;
}

/** Opens a session's socket and waits until it reaches a container; the instance it came through. */
async function open(base: URL, sessionId: string): Promise<{ client: TestClient; instance: string }> {
  const before = tap.session(sessionId).length;
  const client = await TestClient.connect(wsUrl(base, { sessionId, sendBack: 'true' }));
  await until(() => tap.session(sessionId).length > before, `${sessionId} at a container`);
  return { client, instance: tap.session(sessionId)[before]!.instance! };
}

const firstHalf = () => readCapture().slice(0, Math.ceil(readCapture().length / 2));

describe('ROUTING=pool', () => {
  let mf: Miniflare;
  let base: URL;

  beforeAll(async () => ({ mf, base } = await startWorker({ ROUTING: 'pool', POOL_SIZE: String(POOL_SIZE) })));
  afterAll(async () => await mf?.dispose());

  it('sends every socket of a session to one pool member, and spreads sessions over the pool', async () => {
    const ids = Array.from({ length: 9 }, (_, i) => `pool-session-${i}`);
    const first = new Map<string, string>();
    for (const id of ids) {
      const { client, instance } = await open(base, id);
      first.set(id, instance);
      await client.close();
    }
    for (const [id, instance] of first) {
      expect(instance).toMatch(/^pool-[0-2]$/);
      // The sessionId's hash picks the member, so any Worker isolate picks the same one.
      expect(instance).toBe(`pool-${rendezvous(id, POOL_SIZE)}`);
    }
    expect(new Set(first.values()).size).toBeGreaterThanOrEqual(2);
    // Reconnects, one after the other and overlapping, land where the session was.
    for (const id of ids.slice(0, 3)) {
      const again = await open(base, id);
      const overlapping = await open(base, id);
      expect([again.instance, overlapping.instance]).toEqual([first.get(id), first.get(id)]);
      await again.client.close();
      await overlapping.client.close();
    }
  });

  it('transcribes through a pool member', async () => {
    const { client } = await open(base, 'pool-transcribed');
    await replayJvb(client, { pace: 'fast', records: firstHalf() });
    await client.waitFor(() => client.finals().length > 0, 'a final', 30_000);
    expect(client.finals()[0]!.transcript[0]!.text.length).toBeGreaterThan(0);
    await client.close();
  });

  it('keeps every member started, with or without sessions, and shows the routing in /health', async () => {
    const body = await health(base);
    expect(body).toMatchObject({ status: 'ok', routing: { mode: 'pool', size: POOL_SIZE }, container: { instance: 'pool-0', answers: true } });
    // Several idle periods with no socket: a member that slept would say `stopped`.
    await new Promise((resolve) => setTimeout(resolve, SLEEP_AFTER_SECONDS * 3_000));
    for (let member = 0; member < POOL_SIZE; member++) {
      const id = Array.from({ length: 100 }, (_, i) => `probe-${i}`).find((k) => rendezvous(k, POOL_SIZE) === member)!;
      expect((await health(base, id)).container).toMatchObject({ instance: `pool-${member}`, state: expect.stringMatching(/^(healthy|running)$/) });
    }
  });
});

describe('ROUTING=autoscale', () => {
  let mf: Miniflare;
  let base: URL;
  const counts = async () => (await health(base)).routing.containers as { instance: string; sessions: number; sockets: number }[];
  const containers = async () => Object.fromEntries((await counts()).map((c) => [c.instance, c.sessions]));
  const sockets = async () => Object.fromEntries((await counts()).map((c) => [c.instance, c.sockets]));

  beforeAll(
    async () =>
      ({ mf, base } = await startWorker({
        ROUTING: 'autoscale',
        AUTOSCALE_MAX_SESSIONS_PER_CONTAINER: '2',
        AUTOSCALE_MIN_WARM: '1',
        AUTOSCALE_MAX_CONTAINERS: '3',
        AUTOSCALE_IDLE_RETIRE_S: '1',
        // How long a session stays placed after its last socket (the containers' resumption grace).
        RESUME_GRACE_MS: '500',
      })),
  );
  afterAll(async () => await mf?.dispose());

  it('fills a container to its limit, adds one when all are full, and retires it once idle', async () => {
    expect(await containers()).toEqual({ 'auto-0': 0 });
    const a = await open(base, 'auto-a');
    const b = await open(base, 'auto-b');
    const c = await open(base, 'auto-c');
    expect([a.instance, b.instance, c.instance]).toEqual(['auto-0', 'auto-0', 'auto-1']);
    expect(await containers()).toEqual({ 'auto-0': 2, 'auto-1': 1 });

    // A second socket of a live session goes where the session is, full or not.
    const a2 = await open(base, 'auto-a');
    expect(a2.instance).toBe('auto-0');
    expect((await health(base, 'auto-a')).container).toMatchObject({ instance: 'auto-0', answers: true });
    expect(await containers()).toEqual({ 'auto-0': 2, 'auto-1': 1 });

    // The session transcribes where it was placed.
    await replayJvb(c.client, { pace: 'fast', records: firstHalf() });
    await c.client.waitFor(() => c.client.finals().length > 0, 'a final', 30_000);

    // The counts drop as sockets close; auto-1, idle, is retired after AUTOSCALE_IDLE_RETIRE_S.
    await c.client.close();
    await until(async () => (await containers())['auto-1'] === 0 || !('auto-1' in (await containers())), 'auto-1 to be empty');
    await until(async () => !('auto-1' in (await containers())), 'auto-1 to be retired', 20_000);
    expect(await containers()).toEqual({ 'auto-0': 2 });
    expect((await health(base, 'auto-c')).container).toMatchObject({ instance: null, answers: false });

    await a.client.close();
    await until(async () => (await sockets())['auto-0'] === 2, 'the closed socket to be released');
    // auto-a is still live on its other socket.
    expect(await containers()).toEqual({ 'auto-0': 2 });
    await a2.client.close();
    await b.client.close();
    await until(async () => (await containers())['auto-0'] === 0, 'auto-0 to be empty');
    // The warm minimum stays past the idle retirement.
    await new Promise((resolve) => setTimeout(resolve, SLEEP_AFTER_SECONDS * 3_000));
    expect(await containers()).toEqual({ 'auto-0': 0 });

    // A session that comes back is placed afresh, on the warm one.
    const back = await open(base, 'auto-c');
    expect(back.instance).toBe('auto-0');
    await back.client.close();
  });

  it('loses only the sessions of a container that dies; they reconnect and are placed again', async () => {
    // The last test's session is no longer held for its client (RESUME_GRACE_MS).
    await until(async () => (await containers())['auto-0'] === 0, 'auto-0 to be empty');
    const a = await open(base, 'die-a');
    const b = await open(base, 'die-b');
    const c = await open(base, 'die-c');
    expect([a.instance, b.instance, c.instance]).toEqual(['auto-0', 'auto-0', 'auto-1']);

    // auto-1's container stops under its session (a crash, a rollout).
    const namespace = await mf.getDurableObjectNamespace('CONTAINER');
    // Miniflare's stub type lists fetch only; its proxy makes RPC calls all the same.
    const stub = namespace.get(namespace.idFromName('auto-1')) as unknown as { retire(): Promise<void> };
    await stub.retire();
    await c.client.waitFor(() => c.client.closed !== undefined, 'the close of the session on auto-1');
    expect(c.client.closed).toEqual({ code: 1012, reason: 'transcription container restarted; reconnect' });
    await until(async () => !(await counts()).some((k) => k.instance === 'auto-1' && k.sockets > 0), 'auto-1 to have no socket');
    expect(a.client.closed).toBeUndefined();
    expect(b.client.closed).toBeUndefined();
    expect(await containers()).toMatchObject({ 'auto-0': 2 });

    // The client reconnects; auto-0 is full, so the session goes to a container with room.
    const again = await open(base, 'die-c');
    expect(again.instance).not.toBe('auto-0');
    await replayJvb(again.client, { pace: 'fast', records: firstHalf() });
    await again.client.waitFor(() => again.client.finals().length > 0, 'a final after the reconnect', 30_000);
    // The others were never touched: still one socket each, on auto-0.
    expect(tap.session('die-a')).toHaveLength(1);
    expect(tap.session('die-b')).toHaveLength(1);
    for (const client of [a.client, b.client, again.client]) await client.close();
  });
});

describe('a Worker with a bad routing configuration', () => {
  it('answers every request with 500 naming each problem', async () => {
    const bad = new Miniflare({
      modules: await bundleWorker('src/runtime/workerd.ts'),
      modulesRoot: ROOT,
      compatibilityDate: COMPATIBILITY_DATE,
      bindings: { OPENAI_API_KEY: 'sk-do-not-show', ROUTING: 'autoscale', AUTOSCALE_IDLE_RETIRE_S: 'soon' },
      durableObjects: { CONTAINER: { className: 'TranscriberContainer', useSQLite: true } },
    });
    try {
      const response = await bad.dispatchFetch('http://worker/health');
      const text = await response.text();
      expect(response.status).toBe(500);
      expect(text).toContain('AUTOSCALE_IDLE_RETIRE_S: must be a whole number');
      await bad.setOptions({
        modules: await bundleWorker('src/runtime/workerd.ts'),
        modulesRoot: ROOT,
        compatibilityDate: COMPATIBILITY_DATE,
        bindings: { OPENAI_API_KEY: 'sk-do-not-show', ROUTING: 'autoscale' },
        durableObjects: { CONTAINER: { className: 'TranscriberContainer', useSQLite: true } },
      });
      const again = await bad.dispatchFetch('http://worker/transcribe');
      expect(again.status).toBe(500);
      expect(await again.text()).toContain('ROUTING: autoscale needs the COORDINATOR Durable Object binding (class ContainerCoordinator)');
      expect(text).not.toContain('sk-do-not-show');
    } finally {
      await bad.dispose();
    }
  });
});
