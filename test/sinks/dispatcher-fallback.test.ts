/**
 * FallbackTransport, which tries the dispatcher transports in priority order: two real
 * WebSocket transports to two fake dispatchers on 127.0.0.1, on the manual clock. What is
 * asserted is where each final arrives, which connection attempts are made (and when, on the
 * clock), the error a caller gets when nothing takes a final, and the log line of a fallback.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import { FallbackTransport } from '../../src/sinks/dispatcher/fallback.ts';
import { toDispatcherMessage } from '../../src/sinks/dispatcher/message.ts';
import { outgoing, type Outgoing } from '../../src/sinks/dispatcher/queue.ts';
import { WebSocketTransport } from '../../src/sinks/dispatcher/websocket.ts';
import { FakeDispatcher } from '../fakes/dispatcher.ts';
import { ManualClock } from '../helpers/clock.ts';
import { final } from '../helpers/clocked-dispatcher.ts';
import type { LogLine } from '../helpers/provider-server.ts';
import { RecordingConnector } from '../helpers/recording-connector.ts';

interface Rig {
  clock: ManualClock;
  primary: FakeDispatcher;
  secondary: FakeDispatcher;
  /** Connection attempts made to each, in order. */
  toPrimary: RecordingConnector;
  toSecondary: RecordingConnector;
  fallback: FallbackTransport;
  logs: LogLine[];
}

let rig: Rig | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await rig?.primary.close();
  await rig?.secondary.close();
  rig = undefined;
});

async function start(): Promise<Rig> {
  const clock = new ManualClock();
  const [primary, secondary] = await Promise.all([FakeDispatcher.start(), FakeDispatcher.start()]);
  const logs: LogLine[] = [];
  const log = createLogger('debug', (_level, line) => void logs.push(JSON.parse(line) as LogLine));
  const metrics = createMetrics();
  const transport = (name: string, fake: FakeDispatcher, connector: RecordingConnector) =>
    new WebSocketTransport({
      name,
      url: fake.url(),
      headers: {},
      connector,
      connectTimeoutMs: 10_000,
      recycleMs: 0,
      connectedLine: `connected to ${name}`,
      log,
      metrics,
      timers: clock,
      handBack: () => {},
    });
  const toPrimary = new RecordingConnector(clock);
  const toSecondary = new RecordingConnector(clock);
  const fallback = new FallbackTransport([transport('primary', primary, toPrimary), transport('secondary', secondary, toSecondary)], clock, log);
  rig = { clock, primary, secondary, toPrimary, toSecondary, fallback, logs };
  return rig;
}

const item = (n: number): Outgoing => outgoing(n, toDispatcherMessage(final(n), 'conf-1')!);
const ids = (fake: FakeDispatcher) => fake.messages().map((m) => m.messageId);

describe('FallbackTransport', () => {
  it('sends through the first transport while it works; the second is never opened', async () => {
    const r = await start();
    await r.fallback.send(item(1));
    await r.fallback.send(item(2));
    await r.primary.waitFor(() => r.primary.received.length === 2, 'two finals');
    expect(ids(r.primary)).toEqual(['m-1', 'm-2']);
    expect(r.toSecondary.attempts).toHaveLength(0);
  });

  it('hands a final the first transport cannot take to the next, and logs the fallback once', async () => {
    const r = await start();
    r.primary.refuse();
    await r.fallback.send(item(1));
    await r.secondary.waitFor(() => r.secondary.received.length === 1, 'the final');
    expect(ids(r.secondary)).toEqual(['m-1']);
    expect(r.primary.refusals).toBe(1);
    expect(r.logs.filter((l) => l.msg === 'dispatcher transport failed; falling back')).toEqual([
      expect.objectContaining({ from: 'primary', to: 'secondary', messageId: 'm-1' }),
    ]);
  });

  it('skips a failed transport for its backoff (1 s, doubling, jittered), then tries it again', async () => {
    const r = await start();
    r.primary.refuse();
    await r.fallback.send(item(1)); // primary fails: skipped for [0.5 s, 1 s]
    r.clock.advance(499);
    await r.fallback.send(item(2));
    expect(r.toPrimary.attempts, 'tried again inside its backoff').toHaveLength(1);
    r.clock.advance(501);
    await r.fallback.send(item(3)); // 1 s on: tried, fails again: skipped for [1 s, 2 s]
    expect(r.toPrimary.attempts).toHaveLength(2);
    r.clock.advance(999);
    await r.fallback.send(item(4));
    expect(r.toPrimary.attempts, 'the second failure backed off less than 1 s').toHaveLength(2);
    r.primary.accept();
    r.clock.advance(1_001);
    await r.fallback.send(item(5)); // 2 s on: tried, works
    expect(r.toPrimary.attempts).toHaveLength(3);
    await r.primary.waitFor(() => r.primary.received.length === 1, 'the final');
    await r.secondary.waitFor(() => r.secondary.received.length === 4, 'the others');
    expect(ids(r.primary)).toEqual(['m-5']);
    expect(ids(r.secondary)).toEqual(['m-1', 'm-2', 'm-3', 'm-4']);

    // A success forgets the failures: the next failure backs off from 1 s again.
    r.primary.closeConnections(1001, 'going away');
    await r.primary.waitFor(() => r.primary.connections[0]!.closedWith !== undefined, 'the close');
    await r.toPrimary.attempts[2]!.done;
    await vi.waitFor(() => expect(r.toPrimary.attempts[2]!.closed).toBeDefined());
    r.primary.refuse();
    await r.fallback.send(item(6));
    expect(r.toPrimary.attempts).toHaveLength(4);
    r.clock.advance(1_000);
    await r.fallback.send(item(7));
    expect(r.toPrimary.attempts, 'a failure after a success backed off as if the third').toHaveLength(5);
    await r.secondary.waitFor(() => r.secondary.received.length === 6, 'm-6 and m-7');
    expect(ids(r.secondary).slice(4)).toEqual(['m-6', 'm-7']);
  });

  it('tries a skipped transport again at the very instant its backoff ends', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0); // backoff = half its base: exactly 500 ms
    const r = await start();
    r.primary.refuse();
    await r.fallback.send(item(1));
    r.clock.advance(499);
    await r.fallback.send(item(2));
    expect(r.toPrimary.attempts).toHaveLength(1);
    r.clock.advance(1);
    await r.fallback.send(item(3));
    expect(r.toPrimary.attempts).toHaveLength(2);
  });

  it('never skips the last transport; when every one fails, the caller gets the last one\'s error', async () => {
    const r = await start();
    r.primary.refuse();
    r.secondary.refuse();
    await expect(r.fallback.send(item(1))).rejects.toThrow(/^dispatcher connection failed: .*503/);
    // At once again: the first is in its backoff, the last is tried anyway.
    await expect(r.fallback.send(item(2))).rejects.toThrow(/^dispatcher connection failed: .*503/);
    expect(r.toPrimary.attempts).toHaveLength(1);
    expect(r.toSecondary.attempts).toHaveLength(2);
    expect(r.secondary.refusals).toBe(2);
    // One fallback line per final that moved on; none for the last transport's failures.
    expect(r.logs.filter((l) => l.msg === 'dispatcher transport failed; falling back')).toHaveLength(1);
  });

  it('with no transport, refuses every final with a clear error', async () => {
    const clock = new ManualClock();
    const none = new FallbackTransport([], clock, createLogger('error', () => {}));
    await expect(none.send(item(1))).rejects.toThrow('no dispatcher transport configured');
  });

  it('close() closes every transport\'s connection with 1000', async () => {
    const r = await start();
    await r.fallback.send(item(1));
    r.primary.refuse();
    await r.fallback.send(item(2)); // the primary's connection still serves it
    r.primary.closeConnections(1001, 'going away');
    await vi.waitFor(() => expect(r.toPrimary.attempts[0]!.closed).toBeDefined());
    await r.fallback.send(item(3)); // the primary refuses now: the secondary opens
    r.primary.accept();
    r.clock.advance(1_000);
    await r.fallback.send(item(4)); // the primary opens again
    await r.fallback.close(r.clock.now() + 5_000);
    await r.secondary.waitFor(() => r.secondary.connections[0]?.closedWith !== undefined, 'the secondary closed');
    await r.primary.waitFor(() => r.primary.connections[1]?.closedWith !== undefined, 'the primary closed');
    expect(r.secondary.connections[0]!.closedWith).toEqual({ code: 1000, by: 'client' });
    expect(r.primary.connections[1]!.closedWith).toEqual({ code: 1000, by: 'client' });
    expect(ids(r.primary)).toEqual(['m-1', 'm-2', 'm-4']);
    expect(ids(r.secondary)).toEqual(['m-3']);
  });
});
