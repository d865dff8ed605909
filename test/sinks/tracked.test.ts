/**
 * trackSinks, which lets a shutdown wait for the sinks' drains: the production sinks (the
 * client sink on a real socket, the dispatcher sink over WebSocket to the fake dispatcher)
 * made through it, on the manual clock. Asserted: what reaches the client and the dispatcher
 * through the tracked sinks, and when `settled` resolves (at once, when the last sink has
 * closed, or at its timeout on the clock, not before).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import type { TranscriptionResult } from '../../src/protocol/outbound.ts';
import type { SinkFactory, TranscriptSink } from '../../src/session/ports.ts';
import { createClientSink } from '../../src/sinks/client.ts';
import { webSocketDispatcherSinks } from '../../src/sinks/dispatcher/websocket.ts';
import { trackSinks, type TrackedSinks } from '../../src/sinks/tracked.ts';
import { FakeDispatcher } from '../fakes/dispatcher.ts';
import { ManualClock, settle } from '../helpers/clock.ts';
import { final } from '../helpers/clocked-dispatcher.ts';
import { RecordingConnector } from '../helpers/recording-connector.ts';
import { socketPair, type SocketPair } from '../helpers/socket-pair.ts';

interface Rig {
  clock: ManualClock;
  fake: FakeDispatcher;
  pair: SocketPair;
  tracked: TrackedSinks;
}

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.pair.close();
  await rig?.fake.close();
  rig = undefined;
});

async function start(): Promise<Rig> {
  const clock = new ManualClock();
  const fake = await FakeDispatcher.start();
  const pair = await socketPair();
  const dispatcher = webSocketDispatcherSinks({
    config: { wsUrl: fake.url(), headers: {}, reconnectIntervalMs: 0, connectTimeoutMs: 10_000, queueLimit: 100, queueMaxBytes: 1 << 20, drainTimeoutMs: 5_000 },
    connector: new RecordingConnector(clock),
    log: createLogger('error', () => {}),
    metrics: createMetrics(),
    timers: clock,
  });
  const factory: SinkFactory = (session) => [createClientSink(pair.client, { sendBack: true, sendBackInterim: false }), ...dispatcher(session)];
  rig = { clock, fake, pair, tracked: trackSinks(factory, clock) };
  return rig;
}

/** Whether `promise` has settled once pending callbacks have run. */
async function isDone(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => (done = true));
  await settle();
  return done;
}

const usage = { sessionId: 'conf-1', participants: [], totals: {} };

describe('trackSinks', () => {
  it('the tracked sinks deliver as the factory\'s own: finals to the client and the dispatcher, the usage to the dispatcher', async () => {
    const r = await start();
    const sinks = r.tracked.factory({ sessionId: 'conf-1', useDispatcher: true });
    expect(sinks.map((s) => s.outlivesClient)).toEqual([false, true]);
    const result: TranscriptionResult = final(1, 'tracked final');
    for (const sink of sinks) sink.deliver(result);
    for (const sink of sinks) sink.usage?.(usage);
    await r.fake.waitFor(() => r.fake.received.length === 2, 'the final and the usage');
    expect(r.fake.messages().map((m) => [m.messageId, m.text])).toEqual([['m-1', 'tracked final']]);
    expect(r.fake.usages()).toHaveLength(1);
    expect((await r.pair.received()).map((f) => JSON.parse(f) as unknown)).toEqual([result]);
  });

  it('settled() resolves at once when no sink is live, and once every sink made has closed', async () => {
    const r = await start();
    expect(await isDone(r.tracked.settled(60_000)), 'nothing live').toBe(true);
    const first = r.tracked.factory({ sessionId: 'conf-1', useDispatcher: true });
    const second = r.tracked.factory({ sessionId: 'conf-2', useDispatcher: false });
    const settled = r.tracked.settled(60_000);
    await Promise.all(first.map((s) => s.close()));
    expect(await isDone(settled), 'a sink of the second session is still live').toBe(false);
    await Promise.all(second.map((s: TranscriptSink) => s.close()));
    expect(await isDone(settled)).toBe(true);
    expect(await isDone(r.tracked.settled(60_000)), 'all closed').toBe(true);
  });

  it('settled() waits for a dispatcher drain that cannot finish until its timeout on the clock, not less', async () => {
    const r = await start();
    r.fake.refuse();
    const sinks = r.tracked.factory({ sessionId: 'conf-1', useDispatcher: true });
    for (const sink of sinks) sink.deliver(final(1));
    for (const sink of sinks) void sink.close();
    const settled = r.tracked.settled(3_000);
    await r.clock.advanceAsync(2_999);
    expect(await isDone(settled), 'before its timeout').toBe(false);
    await r.clock.advanceAsync(1);
    expect(await isDone(settled), 'at its timeout').toBe(true);
  });
});
