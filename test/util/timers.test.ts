/**
 * The backoff every reconnecting state machine uses (provider streams, the dispatcher sink),
 * and the manual clock the state-machine tests run on.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { backoffMs, sleep } from '../../src/util/timers.ts';
import { ManualClock } from '../helpers/clock.ts';

afterEach(() => {
  vi.restoreAllMocks();
});

/** The un-jittered delay of attempt `n`: `min` doubling per attempt, capped at `max`. */
const base = (n: number, min: number, max: number) => Math.min(max, min * 2 ** Math.max(0, n - 1));

describe('backoffMs', () => {
  const bounds = [
    { min: 500, max: 30_000 },
    { min: 1_000, max: 30_000 },
    { min: 100, max: 250 },
  ];

  it('stays in [base/2, base] for every attempt, with base doubling from the minimum up to the cap', () => {
    for (const { min, max } of bounds) {
      for (let attempt = 1; attempt <= 40; attempt++) {
        const b = base(attempt, min, max);
        for (let i = 0; i < 50; i++) {
          const delay = backoffMs(attempt, min, max);
          expect(delay, `attempt ${attempt} of ${min}..${max}`).toBeGreaterThanOrEqual(b / 2);
          expect(delay).toBeLessThanOrEqual(b);
          expect(delay).toBeLessThanOrEqual(max);
        }
      }
    }
  });

  it('reaches both ends of the jitter range: base/2 when the dice say 0, base when they say ~1', () => {
    const random = vi.spyOn(Math, 'random');
    random.mockReturnValue(0);
    expect([1, 2, 3, 7, 8, 30].map((n) => backoffMs(n, 500, 30_000))).toEqual([250, 500, 1_000, 15_000, 15_000, 15_000]);
    random.mockReturnValue(1 - 1e-12);
    expect([1, 2, 3, 7, 8, 30].map((n) => backoffMs(n, 500, 30_000))).toEqual([500, 1_000, 2_000, 30_000, 30_000, 30_000]);
  });

  it('is jittered: retries of many streams after one outage do not all land on the same instant', () => {
    const delays = new Set(Array.from({ length: 200 }, () => backoffMs(5, 1_000, 30_000)));
    expect(delays.size).toBeGreaterThan(20);
  });

  it('treats attempt 0 (or less) as the first attempt', () => {
    for (let i = 0; i < 50; i++) {
      for (const attempt of [0, -3]) {
        const delay = backoffMs(attempt, 500, 30_000);
        expect(delay).toBeGreaterThanOrEqual(250);
        expect(delay).toBeLessThanOrEqual(500);
      }
    }
  });
});

describe('ManualClock', () => {
  it('fires timers in order of their due time, each at its own instant, only when advanced', () => {
    const clock = new ManualClock(0);
    const fired: [string, number][] = [];
    clock.setTimeout(() => fired.push(['b', clock.now()]), 200);
    clock.setTimeout(() => fired.push(['a', clock.now()]), 100);
    const cancelled = clock.setTimeout(() => fired.push(['x', clock.now()]), 150);
    clock.clearTimeout(cancelled);
    const every = clock.setInterval(() => fired.push(['i', clock.now()]), 80);
    expect(fired).toEqual([]);
    clock.advance(99);
    expect(fired).toEqual([['i', 80]]);
    clock.advance(101);
    expect(fired).toEqual([
      ['i', 80],
      ['a', 100],
      ['i', 160],
      ['b', 200],
    ]);
    clock.clearInterval(every);
    clock.advance(1_000);
    expect(fired).toHaveLength(4);
    expect(clock.now()).toBe(1_200);
  });

  it('runs timers set by a callback when they fall in the window, and zero-delay ones on advance(0)', async () => {
    const clock = new ManualClock(0);
    const at: number[] = [];
    clock.setTimeout(() => {
      at.push(clock.now());
      clock.setTimeout(() => at.push(clock.now()), 50);
    }, 50);
    clock.advance(100);
    expect(at).toEqual([50, 100]);
    let slept = false;
    void sleep(clock, 0).then(() => (slept = true));
    await Promise.resolve();
    expect(slept).toBe(false);
    clock.advance(0);
    await Promise.resolve();
    expect(slept).toBe(true);
  });
});
