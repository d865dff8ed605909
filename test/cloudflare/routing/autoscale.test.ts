import { describe, expect, it } from 'vitest';
import { Autoscaler, type AutoscaleLimits } from '../../../src/runtime/workerd/routing/autoscale.ts';
import { ManualClock } from '../../helpers/clock.ts';

const LIMITS: AutoscaleLimits = { maxSessionsPerContainer: 2, minWarm: 1, maxContainers: 3, idleRetireMs: 60_000, leaseMs: 300_000 };

function scaler(limits: Partial<AutoscaleLimits> = {}) {
  const clock = new ManualClock();
  return { clock, auto: new Autoscaler({ ...LIMITS, ...limits }, clock.now) };
}

const load = (auto: Autoscaler) => Object.fromEntries(auto.counts().map((c) => [c.instance, c.sessions]));

describe('the autoscaler', () => {
  it('starts with the minimum warm, fills a container to its limit, then adds one', () => {
    const { auto } = scaler();
    expect(load(auto)).toEqual({ 'auto-0': 0 });
    expect(auto.place('a', 'a1')).toEqual({ instance: 'auto-0', added: false, overfull: false });
    expect(auto.place('b', 'b1').instance).toBe('auto-0');
    expect(auto.place('c', 'c1')).toEqual({ instance: 'auto-1', added: true, overfull: false });
    expect(load(auto)).toEqual({ 'auto-0': 2, 'auto-1': 1 });
  });

  it('sends every socket of a live session to its container, even a full one', () => {
    const { auto } = scaler();
    auto.place('a', 'a1');
    auto.place('b', 'b1');
    auto.place('c', 'c1');
    // A reconnect that overlaps the old socket: same container, still two sessions there.
    expect(auto.place('a', 'a2').instance).toBe('auto-0');
    expect(auto.counts()[0]).toEqual({ instance: 'auto-0', sessions: 2, sockets: 3 });
    auto.release('a1');
    expect(auto.locate('a')).toBe('auto-0');
    auto.release('a2');
    expect(auto.locate('a')).toBeUndefined();
    // Gone from auto-0: a new session fills it again before auto-1.
    expect(auto.place('d', 'd1').instance).toBe('auto-0');
  });

  it('re-places a session whose sockets all closed (its container died) where there is room', () => {
    const { auto } = scaler({ maxSessionsPerContainer: 1 });
    auto.place('a', 'a1');
    auto.place('b', 'b1');
    expect(auto.locate('b')).toBe('auto-1');
    auto.release('b1');
    auto.place('c', 'c1');
    expect(auto.locate('c')).toBe('auto-1');
    expect(auto.place('b', 'b2')).toEqual({ instance: 'auto-2', added: true, overfull: false });
  });

  it('overfills the least loaded container once the maximum exists', () => {
    const { auto } = scaler({ maxSessionsPerContainer: 1, maxContainers: 2 });
    auto.place('a', 'a1');
    auto.place('b', 'b1');
    auto.release('a1');
    auto.place('a', 'a2');
    expect(auto.place('c', 'c1')).toEqual({ instance: 'auto-0', added: false, overfull: true });
    expect(auto.place('d', 'd1')).toEqual({ instance: 'auto-1', added: false, overfull: true });
  });

  it('retires a container idle for the delay, never the minimum, and reuses its name once stopped', () => {
    const { clock, auto } = scaler({ minWarm: 1 });
    for (const id of ['a', 'b', 'c']) auto.place(id, `${id}1`);
    auto.release('c1');
    expect(auto.tick()).toEqual({ retire: [], expired: 0, nextAt: clock.now() + 60_000 });
    clock.advance(59_999);
    expect(auto.tick().retire).toEqual([]);
    // A session in the meantime keeps it (auto-0 is full).
    expect(auto.place('d', 'd1').instance).toBe('auto-1');
    clock.advance(1);
    expect(auto.tick().retire).toEqual([]);
    for (const id of ['a1', 'b1', 'd1']) auto.release(id);
    clock.advance(60_000);
    // auto-0 is the warm minimum; auto-1 has been idle since c left.
    expect(auto.tick().retire).toEqual(['auto-1']);
    expect(load(auto)).toEqual({ 'auto-0': 0 });
    auto.place('x', 'x1');
    auto.place('y', 'y1');
    // auto-1 is still stopping: the new container gets another name.
    expect(auto.place('z', 'z1').instance).toBe('auto-2');
    auto.stopped('auto-1');
    auto.place('w', 'w1');
    expect(auto.place('v', 'v1').instance).toBe('auto-1');
  });

  it('keeps the minimum warm with no session at all, and retires everything idle when it is zero', () => {
    const warm = scaler({ minWarm: 2 });
    expect(load(warm.auto)).toEqual({ 'auto-0': 0, 'auto-1': 0 });
    warm.clock.advance(3_600_000);
    expect(warm.auto.tick()).toEqual({ retire: [], expired: 0, nextAt: undefined });

    const cold = scaler({ minWarm: 0 });
    expect(load(cold.auto)).toEqual({});
    cold.auto.place('a', 'a1');
    cold.auto.release('a1');
    cold.clock.advance(60_000);
    expect(cold.auto.tick().retire).toEqual(['auto-0']);
  });

  it('forgets a socket whose Worker stopped renewing it, so its container can be retired', () => {
    const { clock, auto } = scaler({ minWarm: 0 });
    auto.place('a', 'a1');
    auto.place('b', 'b1');
    clock.advance(200_000);
    auto.renew('a1', 'a', 'auto-0');
    clock.advance(100_000);
    expect(auto.tick()).toMatchObject({ retire: [], expired: 1 });
    expect(auto.counts()).toEqual([{ instance: 'auto-0', sessions: 1, sockets: 1 }]);
    auto.release('a1');
    clock.advance(60_000);
    expect(auto.tick().retire).toEqual(['auto-0']);
  });

  it('takes back a forgotten socket where it is when its Worker renews it', () => {
    const { clock, auto } = scaler({ minWarm: 0, maxSessionsPerContainer: 1 });
    auto.place('a', 'a1');
    auto.place('b', 'b1');
    clock.advance(300_000);
    expect(auto.tick().expired).toBe(2);
    auto.renew('b1', 'b', 'auto-1');
    expect(auto.locate('b')).toBe('auto-1');
    expect(auto.place('b', 'b2').instance).toBe('auto-1');
    expect(auto.counts()).toEqual([
      { instance: 'auto-0', sessions: 0, sockets: 0 },
      { instance: 'auto-1', sessions: 1, sockets: 2 },
    ]);
  });

  it('carries its state through a snapshot', () => {
    const { clock, auto } = scaler();
    for (const id of ['a', 'b', 'c']) auto.place(id, `${id}1`);
    const restored = new Autoscaler(LIMITS, clock.now, JSON.parse(JSON.stringify(auto.snapshot())));
    expect(restored.counts()).toEqual(auto.counts());
    expect(restored.locate('c')).toBe('auto-1');
    expect(restored.place('c', 'c2').instance).toBe('auto-1');
  });

  it('keeps a session placed while its container waits for the client to come back', () => {
    const { clock, auto } = scaler({ minWarm: 0, maxSessionsPerContainer: 1 });
    auto.place('a', 'a1');
    auto.release('a1', 15_000);
    // auto-0 still holds a's session: a newcomer gets another container, a's reconnect its own.
    expect(auto.counts()).toEqual([{ instance: 'auto-0', sessions: 1, sockets: 0 }]);
    expect(auto.place('b', 'b1').instance).toBe('auto-1');
    clock.advance(14_999);
    expect(auto.tick().retire).toEqual([]);
    expect(auto.place('a', 'a2').instance).toBe('auto-0');
    auto.release('a2', 15_000);
    expect(auto.nextAt()).toBe(clock.now() + 15_000);
    clock.advance(15_000);
    auto.tick();
    expect(auto.locate('a')).toBeUndefined();
    expect(auto.place('c', 'c1').instance).toBe('auto-0');
    // A snapshot carries it too.
    auto.release('c1', 15_000);
    const restored = new Autoscaler({ ...LIMITS, minWarm: 0, maxSessionsPerContainer: 1 }, clock.now, JSON.parse(JSON.stringify(auto.snapshot())));
    expect(restored.locate('c')).toBe('auto-0');
  });
});
