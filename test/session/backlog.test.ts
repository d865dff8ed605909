/**
 * A session's audio held for its providers (docs/PROTOCOL.md §4.10), on a manual clock: the
 * hard bound over all its queues (the session's oldest audio dropped first), and the client
 * socket paused while a queue is full, for at most MAX_HOLD_MS of one outage.
 */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import { MAX_HOLD_MS, SessionBacklog, type HeldAudio } from '../../src/session/backlog.ts';
import { ManualClock } from '../helpers/clock.ts';

/** A participant's queue as the backlog sees it: packets of audio, by arrival. */
class Queue implements HeldAudio {
  readonly packets: { arrival: number; bytes: number }[] = [];
  dropped = 0;
  constructor(readonly name: string) {}
  push(arrival: number, bytes: number) {
    this.packets.push({ arrival, bytes });
  }
  oldestArrival() {
    return this.packets[0]?.arrival;
  }
  dropOldest() {
    const p = this.packets.shift();
    if (!p) return 0;
    this.dropped++;
    return p.bytes;
  }
}

interface Line {
  level: string;
  msg: string;
  [k: string]: unknown;
}

function setup(maxSessionBufferBytes = 1000, withFlow = true) {
  const clock = new ManualClock();
  const metrics = createMetrics();
  const lines: Line[] = [];
  const log = createLogger('debug', (level, line) => void lines.push({ level, ...(JSON.parse(line) as { msg: string }) }));
  const flow: string[] = [];
  const backlog = new SessionBacklog(
    { limits: { maxSessionBufferBytes, providerQueueMs: 3000 } as never, timers: clock, log, metrics },
    withFlow ? { pause: () => void flow.push('pause'), resume: () => void flow.push('resume') } : undefined,
  );
  const add = (q: Queue, arrival: number, bytes: number) => {
    q.push(arrival, bytes);
    backlog.add(q, bytes);
  };
  return { clock, metrics, lines, flow, backlog, add };
}

describe('SessionBacklog: the hard bound', () => {
  it('keeps everything up to the bound, then drops the session oldest audio, from whichever queue holds it', () => {
    const { backlog, add } = setup(1000);
    const a = new Queue('a');
    const b = new Queue('b');
    add(a, 10, 400);
    add(b, 5, 300);
    add(a, 20, 300);
    expect(backlog.heldBytes).toBe(1000);
    expect(a.dropped + b.dropped).toBe(0);
    add(b, 30, 1);
    // b's packet of t=5 was the oldest of the session.
    expect(b.packets.map((p) => p.arrival)).toEqual([30]);
    expect(a.packets.map((p) => p.arrival)).toEqual([10, 20]);
    expect(backlog.heldBytes).toBe(701);
    add(a, 40, 600);
    // Over by 301: a's t=10 (400) goes, which is enough.
    expect(a.packets.map((p) => p.arrival)).toEqual([20, 40]);
    expect(b.packets.map((p) => p.arrival)).toEqual([30]);
    expect(backlog.heldBytes).toBe(901);
  });

  it('of two queues whose oldest audio arrived at the same instant, drops from the one that queued first', () => {
    const { backlog, add } = setup(1000);
    const a = new Queue('a');
    const b = new Queue('b');
    add(a, 5, 500);
    add(b, 5, 500);
    add(b, 6, 10);
    expect(a.dropped).toBe(1);
    expect(b.dropped).toBe(0);
  });

  it('drops as many of the oldest as it takes', () => {
    const { backlog, add } = setup(1000);
    const a = new Queue('a');
    for (let i = 0; i < 5; i++) add(a, i, 200);
    add(a, 9, 550);
    expect(a.packets.map((p) => p.arrival)).toEqual([3, 4, 9]);
    expect(backlog.heldBytes).toBe(950);
  });

  it('stops dropping when no queue holds anything droppable, rather than looping', () => {
    const { backlog } = setup(100);
    const empty = new Queue('empty');
    backlog.add(empty, 500);
    expect(backlog.heldBytes).toBe(500);
    const stuck: HeldAudio = { oldestArrival: () => 1, dropOldest: () => 0 };
    backlog.add(stuck, 10);
    expect(backlog.heldBytes).toBe(510);
  });

  it('forgets what was sent, never below zero, and a queue that left is no longer a victim', () => {
    const { backlog, add } = setup(1000);
    const a = new Queue('a');
    const b = new Queue('b');
    add(a, 1, 500);
    add(b, 2, 400);
    backlog.remove(100);
    expect(backlog.heldBytes).toBe(800);
    backlog.leave(a, 500);
    expect(backlog.heldBytes).toBe(300);
    add(b, 3, 800);
    // a is gone: b's own oldest goes, though a still (wrongly) held older audio.
    expect(a.dropped).toBe(0);
    expect(b.packets.map((p) => p.arrival)).toEqual([3]);
    expect(backlog.heldBytes).toBe(700);
    backlog.remove(5_000);
    expect(backlog.heldBytes).toBe(0);
  });
});

describe('SessionBacklog: backpressure on the client socket', () => {
  it('pauses the client while a queue is full, counts and logs it, and resumes once none is', () => {
    const { clock, metrics, lines, flow, backlog } = setup();
    const a = new Queue('a');
    const b = new Queue('b');
    expect(backlog.isPaused).toBe(false);
    backlog.hold(a, clock.now());
    expect(flow).toEqual(['pause']);
    expect(backlog.isPaused).toBe(true);
    expect(metrics.clientPauses.get()).toBe(1);
    expect(lines).toContainEqual(expect.objectContaining({ level: 'debug', msg: 'client socket paused: a provider queue is full', queueMs: 3000 }));
    backlog.hold(b, clock.now());
    backlog.hold(a, clock.now());
    expect(flow).toEqual(['pause']);
    clock.advance(1500);
    backlog.hold(a, undefined);
    expect(flow).toEqual(['pause']);
    backlog.hold(a, undefined);
    clock.advance(500);
    backlog.hold(b, undefined);
    expect(flow).toEqual(['pause', 'resume']);
    expect(backlog.isPaused).toBe(false);
    expect(lines).toContainEqual(expect.objectContaining({ level: 'debug', msg: 'client socket resumed', pausedMs: 2000 }));
    expect(metrics.clientPauses.get()).toBe(1);
    expect(clock.pending()).toEqual([]);
  });

  it(`reads the client again after ${MAX_HOLD_MS} ms of one outage, though the queue is still full`, () => {
    const { clock, lines, flow, backlog } = setup();
    const a = new Queue('a');
    const outage = clock.now();
    clock.advance(1000);
    backlog.hold(a, outage);
    expect(flow).toEqual(['pause']);
    expect(clock.pendingTimeouts()).toEqual([MAX_HOLD_MS - 1000]);
    clock.advance(MAX_HOLD_MS - 1001);
    expect(flow).toEqual(['pause']);
    clock.advance(1);
    expect(flow).toEqual(['pause', 'resume']);
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 'info', msg: 'client socket read again: a provider is unavailable for too long to wait', pausedMs: MAX_HOLD_MS - 1000 }),
    );
    expect(clock.pending()).toEqual([]);
    // The same outage never pauses it again; a new one does.
    backlog.hold(a, outage);
    expect(flow).toEqual(['pause', 'resume']);
    backlog.hold(a, clock.now());
    expect(flow).toEqual(['pause', 'resume', 'pause']);
  });

  it('an outage that began MAX_HOLD_MS ago or more does not pause at all', () => {
    const { clock, flow, backlog, metrics } = setup();
    const outage = clock.now();
    clock.advance(MAX_HOLD_MS);
    backlog.hold(new Queue('a'), outage);
    expect(flow).toEqual([]);
    expect(metrics.clientPauses.get()).toBe(0);
    expect(clock.pending()).toEqual([]);
  });

  it('stays paused until the latest outage among the full queues is MAX_HOLD_MS old', () => {
    const { clock, flow, backlog } = setup();
    const a = new Queue('a');
    const b = new Queue('b');
    backlog.hold(a, clock.now());
    clock.advance(2000);
    backlog.hold(b, clock.now());
    expect(clock.pendingTimeouts()).toEqual([MAX_HOLD_MS - 2000]);
    clock.advance(MAX_HOLD_MS - 2000);
    expect(flow).toEqual(['pause']);
    expect(clock.pendingTimeouts()).toEqual([2000]);
    clock.advance(1999);
    expect(flow).toEqual(['pause']);
    clock.advance(1);
    expect(flow).toEqual(['pause', 'resume']);
  });

  it('a queue that leaves lets go of the client', () => {
    const { clock, flow, backlog } = setup();
    const a = new Queue('a');
    backlog.hold(a, clock.now());
    backlog.leave(a, 0);
    expect(flow).toEqual(['pause', 'resume']);
    expect(clock.pending()).toEqual([]);
  });

  it('at session end reads the client again, leaves no timer, and pauses no more', () => {
    const { clock, flow, backlog } = setup();
    const a = new Queue('a');
    backlog.hold(a, clock.now());
    backlog.close();
    expect(flow).toEqual(['pause', 'resume']);
    expect(backlog.isPaused).toBe(false);
    expect(clock.pending()).toEqual([]);
    backlog.hold(new Queue('b'), clock.now());
    expect(flow).toEqual(['pause', 'resume']);
    backlog.close();
    expect(flow).toEqual(['pause', 'resume']);
  });

  it('without a client flow (a stream alone) it keeps count of the pause but touches nothing', () => {
    const { clock, backlog, metrics, lines } = setup(1000, false);
    const a = new Queue('a');
    backlog.hold(a, clock.now());
    expect(backlog.isPaused).toBe(true);
    expect(metrics.clientPauses.get()).toBe(0);
    backlog.hold(a, undefined);
    expect(backlog.isPaused).toBe(false);
    backlog.hold(a, clock.now());
    backlog.close();
    expect(backlog.isPaused).toBe(false);
    expect(lines).toEqual([]);
  });
});
