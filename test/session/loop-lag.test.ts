/**
 * The event-loop lag probe that /health shows and that turns sessions away when the loop is
 * saturated (MAX_EVENT_LOOP_LAG_MS), on a manual clock. A loop running late is modelled by a
 * clock whose `now()` runs ahead of the instants its timers were due at, by `behind` ms.
 */
import { describe, expect, it } from 'vitest';
import { LoopLag } from '../../src/session/loop-lag.ts';
import type { Timers } from '../../src/util/timers.ts';
import { ManualClock } from '../helpers/clock.ts';

function setup() {
  const clock = new ManualClock();
  const state = { behind: 0, active: true };
  const timers: Timers = { ...clock, now: () => clock.now() + state.behind };
  const lag = new LoopLag(timers, () => state.active);
  /** One look of the probe, `lateMs` after it was due. */
  const look = (lateMs: number) => {
    state.behind += lateMs;
    clock.advance(100);
  };
  return { clock, state, lag, look };
}

describe('LoopLag', () => {
  it('reads 0 before any session watched, and keeps no timer', () => {
    const { clock, lag, state } = setup();
    state.behind = 5_000;
    expect(lag.lagMs).toBe(0);
    expect(lag.sustainedMs).toBe(0);
    expect(clock.pending()).toEqual([]);
  });

  it('looks every 100 ms while watched, and reads 0 for a loop on time', () => {
    const { clock, lag, look } = setup();
    lag.watch();
    lag.watch();
    expect(clock.pending()).toEqual([{ inMs: 100 }]);
    for (let i = 0; i < 7; i++) look(0);
    expect(clock.pending()).toEqual([{ inMs: 100 }]);
    expect(lag.lagMs).toBe(0);
    expect(lag.sustainedMs).toBe(0);
  });

  it('shows one stall for the next five looks (half a second), but not as sustained', () => {
    const { lag, look } = setup();
    lag.watch();
    look(0);
    look(250);
    expect(lag.lagMs).toBe(250);
    expect(lag.sustainedMs).toBe(0);
    for (let i = 0; i < 4; i++) look(0);
    expect(lag.lagMs).toBe(250);
    look(0);
    expect(lag.lagMs).toBe(0);
  });

  it('reads as sustained the lag every look of the last five had, at least', () => {
    const { lag, look } = setup();
    lag.watch();
    for (const late of [40, 70, 30, 90, 60]) look(late);
    expect(lag.sustainedMs).toBe(30);
    expect(lag.lagMs).toBe(90);
    look(45);
    // The 40 ms look is out of the window now; 30 stays in it for two more looks.
    expect(lag.sustainedMs).toBe(30);
    look(45);
    expect(lag.sustainedMs).toBe(30);
    look(45);
    expect(lag.sustainedMs).toBe(45);
  });

  it('counts the look that is overdue now, before its timer fires', () => {
    const { lag, state } = setup();
    lag.watch();
    state.behind = 1_100;
    expect(lag.lagMs).toBe(1_000);
    expect(lag.sustainedMs).toBe(0);
  });

  it('stops by itself once no session is active, forgetting what it saw, and starts again on watch', () => {
    const { clock, lag, look, state } = setup();
    lag.watch();
    for (let i = 0; i < 5; i++) look(80);
    expect(lag.sustainedMs).toBe(80);
    state.active = false;
    look(0);
    expect(clock.pending()).toEqual([]);
    expect(lag.lagMs).toBe(0);
    expect(lag.sustainedMs).toBe(0);
    state.active = true;
    lag.watch();
    expect(clock.pending()).toEqual([{ inMs: 100 }]);
    expect(lag.lagMs).toBe(0);
    expect(lag.sustainedMs).toBe(0);
    look(20);
    expect(lag.lagMs).toBe(20);
  });
});
