import { describe, expect, it } from 'vitest';
import { Timeline } from '../../src/session/timeline.ts';

describe('Timeline', () => {
  it('maps audio offsets to arrival times through steady pace, a silence and a burst', () => {
    const t = new Timeline();
    // 10 s at real-time pace with ±5 ms jitter, from t = 1000.
    for (let i = 0; i < 500; i++) t.record(20, 1000 + i * 20 + ((i * 7) % 11) - 5);
    // 30 s of silence (nothing sent), then 2 s at pace.
    for (let i = 0; i < 100; i++) t.record(20, 41_000 + i * 20);
    // A burst: 5 s of queued audio all arriving at once.
    for (let i = 0; i < 250; i++) t.record(20, 50_000);
    expect(t.durationMs).toBe(17_000);
    expect(t.arrivalAt(0)).toBe(995);
    expect(Math.abs(t.arrivalAt(5_000)! - 6_000)).toBeLessThanOrEqual(20);
    expect(t.arrivalAt(10_000)).toBe(41_000);
    expect(t.arrivalAt(11_000)).toBe(42_000);
    // Inside the burst everything arrived at 50 000: answers stay within the tolerance.
    expect(t.arrivalAt(12_000)).toBe(50_000);
    for (const offset of [12_020, 14_500, 16_980]) expect(t.arrivalAt(offset)! - 50_000).toBeLessThanOrEqual(20);
  });

  it('forgets the oldest points first and answers with the oldest it knows', () => {
    const t = new Timeline();
    // Every frame off pace: one point each.
    for (let i = 0; i < 5000; i++) t.record(20, i * 100);
    expect(t.arrivalAt(99_980)).toBe(499_900);
    expect(t.arrivalAt(0)).toBeGreaterThan(0);
  });

  it('knows nothing before the first audio', () => {
    expect(new Timeline().arrivalAt(0)).toBeUndefined();
  });

  it('keeps one point for a long stream at pace: the start is never forgotten', () => {
    const t = new Timeline();
    for (let i = 0; i < 3000; i++) t.record(20, 1000 + i * 20);
    expect(t.arrivalAt(0)).toBe(1000);
    expect(t.arrivalAt(59_980)).toBe(60_980);
  });

  it('a frame late within the tolerance is taken for jitter, not a new point', () => {
    const t = new Timeline();
    t.record(20, 1000);
    t.record(20, 1027);
    t.record(20, 1040);
    expect(t.arrivalAt(20)).toBe(1020);
    expect(t.arrivalAt(40)).toBe(1040);
    // 20 ms off the pace is still jitter; 21 ms is a break: its own point.
    const edge = new Timeline();
    edge.record(20, 1000);
    edge.record(20, 1040);
    expect(edge.arrivalAt(20)).toBe(1020);
    const u = new Timeline();
    u.record(20, 1000);
    u.record(20, 1041);
    expect(u.arrivalAt(20)).toBe(1041);
  });

  it('audio in a burst arrived no later than the next point', () => {
    const t = new Timeline();
    t.record(20, 1000);
    t.record(20, 1000);
    t.record(20, 1000);
    expect(t.arrivalAt(20)).toBe(1000);
    expect(t.arrivalAt(40)).toBe(1000);
    expect(t.arrivalAt(50)).toBe(1010);
  });

  it('keeps one point for a stream at pace after a silence, too', () => {
    const t = new Timeline();
    t.record(20, 1000);
    for (let i = 0; i < 3000; i++) t.record(20, 5000 + i * 20);
    expect(t.arrivalAt(0)).toBe(1000);
    expect(t.arrivalAt(20)).toBe(5000);
    expect(t.arrivalAt(40_020)).toBe(45_000);
  });
});
