/**
 * DispatcherSink, the per-session queue and pump in front of the dispatcher, on a manual
 * clock: the retry backoff (bounds from both sides), queue overflow (the oldest dropped,
 * counted and logged), and the drain deadline at session end, including when a handshake
 * never completes. The transport is the real WebSocket one, to the fake dispatcher.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { settle } from '../helpers/clock.ts';
import { startClockedDispatcher, type ClockedDispatcher } from '../helpers/clocked-dispatcher.ts';

let d: ClockedDispatcher | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
});

const ids = (dd: ClockedDispatcher) => dd.fake.messages().map((m) => m.messageId);

describe('DispatcherSink backoff', () => {
  it('retries an unreachable dispatcher within [base/2, base], base doubling from 1 s to the 30 s cap; never earlier, never later', async () => {
    d = await startClockedDispatcher();
    d.fake.refuse();
    d.deliver(1);
    await settle();
    const bases = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000];
    for (const [i, base] of bases.entries()) {
      // The clock moves only in whole windows (synchronously), so the refusal is handled at a
      // known instant: the end of the previous window.
      await d.connector.settled();
      expect(d.connector.attempts).toHaveLength(i + 1);
      expect(d.fake.refusals).toBe(i + 1);
      const retry = d.lines('dispatcher unavailable; retrying')[i]!;
      expect(retry).toMatchObject({ attempt: i + 1, queued: 1 });
      expect(retry.inMs as number).toBeGreaterThanOrEqual(base / 2);
      expect(retry.inMs as number).toBeLessThanOrEqual(base);
      d.clock.advance(base / 2 - 1);
      await settle();
      expect(d.connector.attempts, `retry ${i + 1} came before ${base / 2} ms`).toHaveLength(i + 1);
      d.clock.advance(base / 2 + 1);
      await settle();
      expect(d.connector.attempts, `retry ${i + 1} had not come by ${base} ms`).toHaveLength(i + 2);
    }
    // The dispatcher is back: the final held all along is delivered, once.
    d.fake.accept();
    await d.connector.settled();
    await d.clock.advanceAsync(30_000);
    await d.fake.waitFor(() => d!.fake.received.length === 1, 'the held final');
    expect(ids(d)).toEqual(['m-1']);
    expect(d.metrics.dispatcherDropped.get({ reason: 'queue_full' })).toBe(0);
  });

  it('starts again from the minimum once a final got through', async () => {
    d = await startClockedDispatcher();
    d.fake.refuse();
    d.deliver(1);
    for (let i = 0; i < 4; i++) {
      await d.connector.settled();
      await d.clock.advanceAsync(30_000);
    }
    d.fake.accept();
    await d.connector.settled();
    await d.clock.advanceAsync(30_000);
    await d.fake.waitFor(() => d!.fake.received.length === 1, 'the held final');
    // A later outage: the first retry comes within the first step again.
    d.fake.closeConnections(1001, 'going away');
    d.fake.refuse();
    await d.fake.waitFor(() => d!.fake.connections[0]!.closedWith !== undefined, 'the close');
    await d.connector.settled();
    d.deliver(2);
    await d.connector.settled();
    const retries = d.lines('dispatcher unavailable; retrying');
    expect(retries.at(-1)).toMatchObject({ attempt: 1 });
    expect(retries.at(-1)!.inMs as number).toBeLessThanOrEqual(1_000);
  });
});

describe('DispatcherSink queue overflow', () => {
  it('drops the oldest finals beyond DISPATCHER_QUEUE_LIMIT, counts and logs each, and delivers the newest in order', async () => {
    d = await startClockedDispatcher({ queueLimit: 3 });
    d.fake.refuse();
    for (let n = 1; n <= 5; n++) d.deliver(n);
    await d.connector.settled();
    // m-1 was in flight when the queue filled; it came back after the refusal and gave way too.
    expect(d.metrics.dispatcherDropped.get({ reason: 'queue_full' })).toBe(2);
    expect(d.lines('dispatcher final dropped').map((l) => [l.messageId, l.reason])).toEqual([
      ['m-2', 'queue_full'],
      ['m-1', 'queue_full'],
    ]);
    expect(d.metrics.state.dispatcherQueue).toBe(3);

    d.fake.accept();
    await d.clock.advanceAsync(1_000);
    await d.fake.waitFor(() => d!.fake.received.length === 3, 'the three kept finals');
    expect(ids(d)).toEqual(['m-3', 'm-4', 'm-5']);
    expect(d.metrics.state.dispatcherQueue).toBe(0);
  });

  it('drops by bytes too (DISPATCHER_QUEUE_MAX_BYTES)', async () => {
    d = await startClockedDispatcher({ queueMaxBytes: 1024 });
    d.fake.refuse();
    const big = (n: number) => d!.sink.deliver({ ...finalOf(n), transcript: [{ text: 'x'.repeat(400) }] });
    for (let n = 1; n <= 4; n++) big(n);
    await d.connector.settled();
    expect(d.metrics.dispatcherDropped.get({ reason: 'queue_full' })).toBe(2);
    d.fake.accept();
    await d.clock.advanceAsync(1_000);
    await d.fake.waitFor(() => d!.fake.received.length === 2, 'the kept finals');
    expect(ids(d)).toEqual(['m-3', 'm-4']);
  });
});

describe('DispatcherSink drain at session end', () => {
  it('gives the queue DISPATCHER_DRAIN_TIMEOUT on the clock, not less, then counts what is left as lost', async () => {
    d = await startClockedDispatcher({ drainTimeoutMs: 5_000 });
    d.fake.refuse();
    d.deliver(1);
    d.deliver(2);
    await d.connector.settled();
    let closed = false;
    void d.sink.close().then(() => (closed = true));
    await d.clock.advanceAsync(4_999);
    expect(closed).toBe(false);
    await d.clock.advanceAsync(1);
    expect(closed).toBe(true);
    expect(d.metrics.dispatcherDropped.get({ reason: 'drain_timeout' })).toBe(2);
    expect(d.metrics.state.dispatcherQueue).toBe(0);
  });

  it('does not let a handshake that never completes hold the session end past the drain deadline', async () => {
    d = await startClockedDispatcher({ drainTimeoutMs: 5_000, connectTimeoutMs: 120_000 });
    d.fake.holdUpgrades = true;
    d.deliver(1);
    await d.fake.waitFor(() => d!.fake.held === 1, 'the upgrade request');
    let closed = false;
    void d.sink.close().then(() => (closed = true));
    await d.clock.advanceAsync(4_999);
    expect(closed).toBe(false);
    await d.clock.advanceAsync(1);
    expect(closed).toBe(true);
    expect(d.connector.attempts[0]!.outcome).toBe('pending');
    // When the hung handshake finally fails, the final it carried is counted as lost.
    await d.close();
    d.fake.holdUpgrades = false;
    await d.connector.settled();
    expect(d.metrics.dispatcherDropped.get({ reason: 'drain_timeout' })).toBe(1);
  });
});

function finalOf(n: number) {
  return {
    event: 'transcription-result' as const,
    type: 'transcription-result' as const,
    transcript: [{ text: `final number ${n}` }],
    is_interim: false,
    message_id: `m-${n}`,
    participant: { id: 'abc123', tag: 'abc123-a0' },
    timestamp: 1_700_000_000_000 + n,
  };
}
