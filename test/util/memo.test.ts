import { describe, expect, it } from 'vitest';
import { memoizeUntilFailure } from '../../src/util/memo.ts';

describe('memoizeUntilFailure', () => {
  it('loads once for every caller, concurrent or later', async () => {
    let loads = 0;
    const load = memoizeUntilFailure(async () => ++loads);
    expect(await Promise.all([load(), load()])).toEqual([1, 1]);
    expect(await load()).toBe(1);
    expect(loads).toBe(1);
  });

  it('forgets a failure, so the next caller loads again', async () => {
    let loads = 0;
    const load = memoizeUntilFailure(async () => {
      if (++loads === 1) throw new Error('not built yet');
      return 'module';
    });
    await expect(load()).rejects.toThrow('not built yet');
    expect(await load()).toBe('module');
    expect(await load()).toBe('module');
    expect(loads).toBe(2);
  });
});
