/**
 * The dispatcher's WebSocket transport on a manual clock, to the fake dispatcher over real
 * sockets: the handshake bounded by DISPATCHER_CONNECT_TIMEOUT (and retried with backoff
 * when it runs out), and the recycling of a long-lived connection after
 * DISPATCHER_RECONNECT_INTERVAL (new one opened before the old one closes; nothing lost or
 * doubled).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { settle } from '../helpers/clock.ts';
import { startClockedDispatcher, type ClockedDispatcher } from '../helpers/clocked-dispatcher.ts';

let d: ClockedDispatcher | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
});

describe('dispatcher WebSocket connect timeout', () => {
  it('bounds the handshake by DISPATCHER_CONNECT_TIMEOUT, and retries one that ran out after the backoff, with the final it held', async () => {
    d = await startClockedDispatcher({ connectTimeoutMs: 150 });
    d.fake.holdUpgrades = true;
    d.deliver(1);
    await d.fake.waitFor(() => d!.fake.held === 1, 'the upgrade request');
    expect(d.connector.attempts).toHaveLength(1);
    expect(d.connector.attempts[0]!.options.timeoutMs).toBe(150);
    // The runtime's connector enforces it (here Node's `ws`); the attempt fails, it never hangs.
    await d.connector.settled();
    expect(d.connector.attempts[0]!.outcome).toBe('failed');
    expect(d.lines('Dispatcher connection failed')).toHaveLength(1);
    expect(d.metrics.dispatcherErrors.get({ transport: 'websocket' })).toBe(1);

    d.fake.holdUpgrades = false;
    const retry = d.lines('dispatcher unavailable; retrying')[0]!;
    expect(retry.inMs as number).toBeGreaterThanOrEqual(500);
    expect(retry.inMs as number).toBeLessThanOrEqual(1_000);
    d.clock.advance((retry.inMs as number) - 1);
    await settle();
    expect(d.connector.attempts).toHaveLength(1);
    d.clock.advance(1);
    await settle();
    expect(d.connector.attempts).toHaveLength(2);
    await d.fake.waitFor(() => d!.fake.received.length === 1, 'the final');
    expect(d.fake.messages().map((m) => m.messageId)).toEqual(['m-1']);
  });
});

describe('dispatcher WebSocket recycling', () => {
  it('replaces a connection after DISPATCHER_RECONNECT_INTERVAL on the clock, not before: new one first, old one closed with 1000, no final lost or doubled', async () => {
    d = await startClockedDispatcher({ reconnectIntervalMs: 60_000 });
    d.deliver(1);
    await d.fake.waitFor(() => d!.fake.received.length === 1, 'the first final');
    const first = d.fake.connections[0]!;
    // How many connections the fake had when the first one closed.
    let openWhenFirstClosed = 0;
    void d.fake.waitFor(() => first.closedWith !== undefined, 'the first connection to close', 60_000).then(
      () => (openWhenFirstClosed = d!.fake.connections.length),
      () => undefined,
    );

    await d.clock.advanceAsync(59_999);
    expect(d.connector.attempts).toHaveLength(1);
    expect(first.closedWith).toBeUndefined();

    await d.clock.advanceAsync(1);
    expect(d.connector.attempts).toHaveLength(2);
    await d.fake.waitFor(() => first.closedWith !== undefined, 'the first connection to close');
    expect(first.closedWith).toEqual({ code: 1000, by: 'client' });
    expect(openWhenFirstClosed).toBe(2);

    d.deliver(2);
    await d.fake.waitFor(() => d!.fake.received.length === 2, 'the second final');
    expect(d.fake.received.map((r) => [r.connection, r.message.messageId])).toEqual([
      [1, 'm-1'],
      [2, 'm-2'],
    ]);
    expect(d.lines('Connected to Dispatcher via WebSocket').map((l) => l.connection)).toEqual([1, 2]);

    // And again one interval after the new connection opened.
    await d.clock.advanceAsync(59_999);
    expect(d.connector.attempts).toHaveLength(2);
    await d.clock.advanceAsync(1);
    expect(d.connector.attempts).toHaveLength(3);
    await d.fake.waitFor(() => d!.fake.connections[1]!.closedWith !== undefined, 'the second connection to close');
    expect(d.fake.connections[1]!.closedWith).toEqual({ code: 1000, by: 'client' });
    expect(d.metrics.dispatcherDropped.get({ reason: 'queue_full' }) + d.metrics.dispatcherDropped.get({ reason: 'drain_timeout' })).toBe(0);
  });

  it('never recycles with DISPATCHER_RECONNECT_INTERVAL=0', async () => {
    d = await startClockedDispatcher({ reconnectIntervalMs: 0 });
    d.deliver(1);
    await d.fake.waitFor(() => d!.fake.received.length === 1, 'the final');
    await d.clock.advanceAsync(7 * 86_400_000);
    expect(d.connector.attempts).toHaveLength(1);
    expect(d.fake.connections[0]!.closedWith).toBeUndefined();
  });
});
