/**
 * The Cloudflare dispatcher transports under workerd (miniflare) with real bindings: a
 * Durable Object that accepts the sink's WebSocket, a Queue with a consumer, and a service
 * binding to an auxiliary Worker whose `dispatch` RPC answers `success: false` when told to.
 * The driver in workerd/dispatcher-worker.ts runs each scenario; this side checks what
 * each dispatcher received.
 */
import { fileURLToPath } from 'node:url';
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DispatcherFinal as DispatcherMessage } from '../../src/sinks/dispatcher/message.ts';
import type { ObjectRecords, Scenario, ScenarioReport } from './dispatcher-scenario.ts';
import { bundleWorker, COMPATIBILITY_DATE } from './workerd-harness.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The RPC dispatcher. A messageId starting with "flaky-" is refused once (`success: false`)
 * and accepted when tried again.
 */
const RPC_WORKER = `
import { WorkerEntrypoint } from 'cloudflare:workers';
const calls = [];
export default class Dispatcher extends WorkerEntrypoint {
  async fetch() { return new Response('RPC only', { status: 404 }); }
  async dispatch(message) {
    const tries = calls.filter((c) => c.message.messageId === message.messageId).length;
    const success = !(message.messageId.startsWith('flaky-') && tries === 0);
    calls.push({ message, success });
    return success
      ? { success: true, dispatched: 1 }
      : { success: false, dispatched: 0, errors: ['downstream busy'], message: 'try again' };
  }
  calls(sessionId) { return calls.filter((c) => c.message.sessionId === sessionId); }
}
`;

let mf: Miniflare;
let rpcCalls: (sessionId: string) => Promise<{ message: DispatcherMessage; success: boolean }[]>;

beforeAll(async () => {
  mf = new Miniflare({
    workers: [
      {
        name: 'proxy',
        modules: await bundleWorker('test/runtimes/workerd/dispatcher-worker.ts'),
        modulesRoot: ROOT,
        compatibilityDate: COMPATIBILITY_DATE,
        durableObjects: { DISPATCHER_DO: 'DispatcherObject' },
        queueProducers: { TRANSCRIPTION_QUEUE: 'transcripts' },
        queueConsumers: { transcripts: { maxBatchSize: 1, maxBatchTimeout: 0 } },
        serviceBindings: { TRANSCRIPTION_DISPATCHER: 'rpc-dispatcher' },
      },
      { name: 'rpc-dispatcher', modules: true, script: RPC_WORKER, compatibilityDate: COMPATIBILITY_DATE },
    ],
  });
  await mf.ready;
  const rpc = (await mf.getWorker('rpc-dispatcher')) as unknown as {
    calls(sessionId: string): Promise<{ message: DispatcherMessage; success: boolean }[]>;
  };
  rpcCalls = (sessionId) => rpc.calls(sessionId);
});
afterAll(async () => {
  await mf?.dispose();
});

async function run(scenario: Scenario): Promise<ScenarioReport> {
  const res = await mf.dispatchFetch('http://proxy/run', { method: 'POST', body: JSON.stringify(scenario) });
  if (!res.ok) throw new Error(`scenario failed: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as ScenarioReport;
}

interface Records {
  object: ObjectRecords;
  queue: DispatcherMessage[];
  rpc: { message: DispatcherMessage; success: boolean }[];
}

async function records(sessionId: string): Promise<Records> {
  const res = await mf.dispatchFetch(`http://proxy/records?sessionId=${sessionId}`);
  const { object, queue } = (await res.json()) as Omit<Records, 'rpc'>;
  return { object, queue, rpc: await rpcCalls(sessionId) };
}

/** Polls until `predicate` holds: Queue batches reach their consumer asynchronously. */
async function eventually(sessionId: string, predicate: (r: Records) => boolean, what: string): Promise<Records> {
  for (let i = 0; i < 200; i++) {
    const r = await records(sessionId);
    if (predicate(r)) return r;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await records(sessionId))}`);
}

function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-z_:]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    if (Object.entries(labels).every(([k, v]) => (match[2] ?? '').includes(`${k}="${v}"`))) sum += Number(match[3]);
  }
  return sum;
}

const ids = (messages: DispatcherMessage[]) => messages.map((m) => m.messageId);
const ALL: Scenario['bindings'] = ['DISPATCHER_DO', 'TRANSCRIPTION_QUEUE', 'TRANSCRIPTION_DISPATCHER'];

describe('Cloudflare dispatcher transports (workerd)', () => {
  it('prefers the Durable Object: one WebSocket per session, finals only, closed with 1000 after the drain', async () => {
    const report = await run({
      sessionId: 'cf-priority',
      bindings: ALL,
      steps: [
        { deliver: { id: 'p-1', text: 'hello world' } },
        { deliver: { id: 'p-2', text: 'still talking', interim: true } },
        { deliver: { id: 'p-2', text: 'still talking here' } },
        { close: true },
      ],
    });
    const r = await eventually('cf-priority', (x) => x.object.closes.length > 0, 'the socket to close');
    expect(r.object.messages).toEqual([
      { sessionId: 'cf-priority', endpointId: 'abc123', text: 'hello world', timestamp: 1768341932350, language: 'en', messageId: 'p-1' },
      { sessionId: 'cf-priority', endpointId: 'abc123', text: 'still talking here', timestamp: 1768341932350, language: 'en', messageId: 'p-2' },
    ]);
    expect(r.object.connections).toBe(1);
    expect(r.object.closes).toEqual([1000]);
    expect(r.queue).toEqual([]);
    expect(r.rpc).toEqual([]);
    expect(metric(report.metrics, 'transcriber_dispatcher_delivered_total', { transport: 'durable_object' })).toBe(2);
    expect(metric(report.metrics, 'transcriber_dispatcher_delivered_total')).toBe(2);
    const log = report.logs.join('\n');
    expect(log).toContain('Connected to Dispatcher DO via WebSocket');
    expect(log).toContain('Dispatcher connection closed');
    // The drain after the client has gone is kept alive with ctx.waitUntil.
    expect(report.waitUntil).toBeGreaterThan(0);
  });

  it('falls back to the Queue for the finals the Durable Object refuses', async () => {
    const report = await run({
      sessionId: 'cf-do-down',
      bindings: ALL,
      steps: [{ object: 'refuse' }, { deliver: { id: 'd-1', text: 'one' } }, { deliver: { id: 'd-2', text: 'two' } }, { close: true }],
    });
    const r = await eventually('cf-do-down', (x) => x.queue.length >= 2, 'both finals on the Queue');
    expect(ids(r.queue)).toEqual(['d-1', 'd-2']);
    expect(r.object.messages).toEqual([]);
    expect(r.object.refusals).toBeGreaterThan(0);
    expect(r.rpc).toEqual([]);
    expect(metric(report.metrics, 'transcriber_dispatcher_errors_total', { transport: 'durable_object' })).toBeGreaterThan(0);
    expect(metric(report.metrics, 'transcriber_dispatcher_delivered_total', { transport: 'queue' })).toBe(2);
    expect(metric(report.metrics, 'transcriber_dispatcher_dropped_total')).toBe(0);
    // The refused final went to the Queue at once, not after a retry.
    expect(report.logs.some((l) => l.includes('falling back') && l.includes('"to":"queue"') && l.includes('d-1'))).toBe(true);
    expect(report.logs.join('\n')).not.toContain('retrying');
  });

  it('falls back to the RPC dispatcher for a final the Queue refuses', async () => {
    // Queues take at most 128 KB per message: this one fails for real.
    const long = 'word '.repeat(30_000).trim();
    const report = await run({
      sessionId: 'cf-queue-fails',
      bindings: ['TRANSCRIPTION_QUEUE', 'TRANSCRIPTION_DISPATCHER'],
      steps: [{ deliver: { id: 'q-1', text: 'short' } }, { deliver: { id: 'q-2', text: long } }, { close: true }],
    });
    const r = await eventually('cf-queue-fails', (x) => x.queue.length >= 1, 'the short final on the Queue');
    expect(ids(r.queue)).toEqual(['q-1']);
    expect(r.rpc.map((c) => [c.message.messageId, c.success])).toEqual([['q-2', true]]);
    expect(r.rpc[0]!.message.text).toBe(long);
    expect(report.logs.join('\n')).toContain('Queue send failed');
    expect(metric(report.metrics, 'transcriber_dispatcher_errors_total', { transport: 'queue' })).toBe(1);
  });

  it('retries a final the RPC dispatcher answers with success: false', async () => {
    const report = await run({
      sessionId: 'cf-rpc-retry',
      bindings: ['TRANSCRIPTION_DISPATCHER'],
      steps: [{ deliver: { id: 'flaky-1', text: 'try me twice' } }, { deliver: { id: 'r-2', text: 'after it' } }, { close: true }],
    });
    const r = await records('cf-rpc-retry');
    expect(r.rpc.map((c) => [c.message.messageId, c.success])).toEqual([
      ['flaky-1', false],
      ['flaky-1', true],
      ['r-2', true],
    ]);
    expect(report.logs.join('\n')).toContain('Dispatcher RPC failed');
    expect(metric(report.metrics, 'transcriber_dispatcher_delivered_total', { transport: 'rpc' })).toBe(2);
    expect(metric(report.metrics, 'transcriber_dispatcher_dropped_total')).toBe(0);
  });

  it('reconnects to the Durable Object after it drops the socket, losing nothing', async () => {
    const report = await run({
      sessionId: 'cf-do-drop',
      bindings: ['DISPATCHER_DO'],
      steps: [
        { deliver: { id: 'x-1', text: 'before' } },
        { waitFor: { target: 'object', messageId: 'x-1' } },
        { object: 'drop' },
        { deliver: { id: 'x-2', text: 'after' } },
        { waitFor: { target: 'object', messageId: 'x-2' } },
        { close: true },
      ],
    });
    const r = await eventually('cf-do-drop', (x) => x.object.closes.length >= 2, 'both sockets to close');
    // At least once each, in order of first arrival.
    expect([...new Set(ids(r.object.messages))]).toEqual(['x-1', 'x-2']);
    expect(r.object.connections).toBe(2);
    expect(r.object.closes).toEqual([1011, 1000]);
    const log = report.logs.join('\n');
    expect(log.match(/Connected to Dispatcher DO via WebSocket/g)?.length).toBe(2);
    expect(log).toMatch(/Dispatcher connection closed.*1011/);
  });
});
