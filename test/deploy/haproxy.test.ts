/**
 * deploy/haproxy/haproxy.cfg, as checked in, in front of two real proxy processes (`npm
 * start`'s entry) on loopback, with the fake OpenAI server behind both. Which process served
 * a socket is read where an operator would read it: each process's `session opened` log line.
 *
 * Skipped when Debian's haproxy is not installed (.ci/run installs it).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TestClient, replayJvb } from '../helpers/client.ts';
import { ENTRIES, type Entry } from '../helpers/entries.ts';
import { readCapture } from '../helpers/fixtures.ts';
import { until } from '../helpers/wait.ts';

const CONFIG = fileURLToPath(new URL('../../deploy/haproxy/haproxy.cfg', import.meta.url));
const haproxyInstalled = spawnSync('haproxy', ['-v']).error === undefined;
if (!haproxyInstalled) console.warn('test/deploy/haproxy.test.ts skipped: haproxy is not installed (apt-get install haproxy)');

/** A port the OS has just handed out: HAProxy cannot bind port 0 and tell which it got. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const firstHalf = () => readCapture().slice(0, Math.ceil(readCapture().length / 2));

describe.skipIf(!haproxyInstalled)('HAProxy in front of two proxy processes (deploy/haproxy/haproxy.cfg)', () => {
  let fake: FakeOpenAI;
  const processes: Record<'proxy1' | 'proxy2', Entry> = {} as never;
  let haproxy: ChildProcess;
  const haproxyLog: string[] = [];
  let url: (query: Record<string, string>) => string;

  /** The sessions a process's log says it opened, in order. */
  const openedOn = (name: keyof typeof processes) =>
    processes[name].logs.filter((l) => l.msg === 'session opened').map((l) => String(l.session));
  const opened = (sessionId: string, name: keyof typeof processes) => openedOn(name).filter((s) => s === sessionId).length;

  /** A socket through HAProxy, once the process behind it has said hello (`info`). */
  async function connect(sessionId: string): Promise<TestClient> {
    const client = await TestClient.connect(url({ sessionId, sendBack: 'true' }));
    await client.waitFor(() => client.messages.some((m) => m.event === 'info'), 'info');
    return client;
  }

  beforeAll(async () => {
    fake = await FakeOpenAI.start();
    const env = {
      OPENAI_API_KEY: fake.apiKey,
      OPENAI_BASE_URL: fake.baseUrl,
      FORCE_COMMIT_TIMEOUT: '0.5',
      PROVIDER_QUEUE_MS: '60000',
      // Room for the slow final below: the drain must outlast HAProxy's checks.
      DRAIN_TIMEOUT_MS: '30000',
      // Every millisecond of the capture reaches the provider (waited for below): no silence gate.
      SILENCE_GATE: 'false',
      // A fast replay blocks the process's loop; on a loaded machine that must not refuse the reconnects.
      MAX_EVENT_LOOP_LAG_MS: '0',
      MAX_EVENT_LOOP_UTILIZATION: '0',
      LOG_LEVEL: 'info',
    };
    [processes.proxy1, processes.proxy2] = await Promise.all([ENTRIES.node(env), ENTRIES.node(env)]);
    const port = await freePort();
    haproxy = spawn('haproxy', ['-f', CONFIG, '-db'], {
      env: {
        PATH: process.env.PATH ?? '',
        TRANSCRIBER_BIND: `127.0.0.1:${port}`,
        PROXY1: `127.0.0.1:${processes.proxy1.port}`,
        PROXY2: `127.0.0.1:${processes.proxy2.port}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const stream of [haproxy.stdout!, haproxy.stderr!]) stream.on('data', (d: Buffer) => haproxyLog.push(...d.toString().split('\n')));
    url = (query) => `ws://127.0.0.1:${port}/transcribe?${new URLSearchParams(query)}`;
    await until(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.status === 200, 'HAProxy to answer').catch(
      (error: Error) => {
        throw new Error(`${error.message}; HAProxy said:\n${haproxyLog.join('\n')}`);
      },
    );
  }, 60_000);

  afterAll(async () => {
    if (haproxy && haproxy.exitCode === null) {
      const gone = new Promise((resolve) => haproxy.once('exit', resolve));
      haproxy.kill('SIGTERM');
      await gone;
    }
    for (const entry of Object.values(processes)) entry.signal('SIGTERM');
    await Promise.all(Object.values(processes).map((e) => e.exited));
    await fake?.close();
  }, 30_000);

  const ids = Array.from({ length: 8 }, (_, i) => `ha-session-${i}`);

  it('sends every socket of a session to the same process, and spreads sessions over both', async () => {
    for (const round of [1, 2]) {
      for (const id of ids) {
        const client = await connect(id);
        await client.close();
        await until(() => opened(id, 'proxy1') + opened(id, 'proxy2') === round, `${id}'s session opened (${round})`);
      }
    }
    // Each session twice on one process, never on the other.
    for (const id of ids) expect([opened(id, 'proxy1'), opened(id, 'proxy2')].sort(), id).toEqual([0, 2]);
    expect(openedOn('proxy1').length).toBeGreaterThan(0);
    expect(openedOn('proxy2').length).toBeGreaterThan(0);
  });

  it('sends no new session to a draining process, and moves its sessions to the other one, where they keep transcribing', async () => {
    const moved = ids.filter((id) => opened(id, 'proxy1') > 0);
    expect(moved.length).toBeGreaterThan(1);
    const [victim, newcomer] = moved as [string, string];
    const client = await connect(victim);
    await replayJvb(client, { pace: 'fast', records: firstHalf() });
    await client.waitFor(() => client.finals().length > 0, 'a final from proxy1', 30_000);
    expect(opened(victim, 'proxy1')).toBe(3);

    // One more utterance, whose final the provider is slow to give: the drain waits for it,
    // long enough for HAProxy's checks (every 2 s, down after 2: 4-6 s) to see /health say
    // "draining". A real-time bound, so a generous one: 12 s, for a shared, loaded machine.
    const finals = client.finals().length;
    // Audio in ms, however PCM_BATCH_MS groups it into appends: each media event is 20 ms.
    const heardMs = () => fake.connections.reduce((n, c) => n + c.audioMs, 0);
    const before = heardMs();
    fake.faults = { answerDelayMs: 12_000 };
    const second = readCapture().slice(firstHalf().length);
    await replayJvb(client, { pace: 'fast', records: second });
    await until(() => heardMs() >= before + 20 * (second.filter((r) => r.data.includes('"media"')).length - 4), 'the audio at the provider');
    processes.proxy1.signal('SIGTERM');
    let exited = false;
    void processes.proxy1.exited.then(() => (exited = true));
    await until(() => haproxyLog.some((l) => /proxy1 is DOWN.*503/.test(l)), 'HAProxy to mark the draining proxy1 down', 15_000);
    expect(exited).toBe(false);
    // A session that hashes to proxy1 opens on proxy2 while proxy1 is still draining.
    await (await connect(newcomer)).close();
    await until(() => opened(newcomer, 'proxy2') === 1, `${newcomer} on proxy2`);
    expect(opened(newcomer, 'proxy1')).toBe(2);
    expect(exited).toBe(false);
    fake.faults = {};

    // The drain (docs/PROTOCOL.md §6.1): the pending final first, then 1001, "reconnect to another instance".
    await client.waitFor(() => client.closed !== undefined, 'the close on shutdown', 30_000);
    expect(client.finals().length).toBeGreaterThan(finals);
    expect(client.closed).toEqual({ code: 1001, reason: 'server shutting down' });

    // The media server reconnects with the same sessionId: HAProxy sends it to proxy2.
    const again = await connect(victim);
    await replayJvb(again, { pace: 'fast', records: firstHalf() });
    await again.waitFor(() => again.finals().length > 0, 'a final from proxy2', 30_000);
    expect(opened(victim, 'proxy2')).toBe(1);
    await again.close();
    expect(await processes.proxy1.exited).toBe(0);

    // Every session that was on proxy1 now opens on proxy2.
    for (const id of moved) await (await connect(id)).close();
    await until(() => moved.every((id) => opened(id, 'proxy2') > 0), 'the moved sessions on proxy2');
    expect(openedOn('proxy1').filter((s) => moved.includes(s))).toHaveLength(2 * moved.length + 1);
    expect(haproxyLog.some((l) => /proxy2 is DOWN/.test(l))).toBe(false);
  }, 60_000);
});
