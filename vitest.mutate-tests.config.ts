import { defineConfig } from 'vitest/config';

/**
 * A narrower tier for `npm run mutate` on one area: only the test files named in MUTATE_TESTS
 * (comma-separated globs, e.g. `test/codec/**\/*.test.ts`). A lower bound on the unit tier's
 * score for that area (a mutant these tests kill, the unit tier kills too), for a machine where
 * the unit tier's per-mutant runs are too slow: a codec mutant there also reruns every session
 * test that happens to decode audio. Used with `--vitest.configFile` via a Stryker config, see
 * README "Mutation testing".
 */
const tests = (process.env.MUTATE_TESTS ?? '').split(',').filter((glob) => glob.length > 0);
if (tests.length === 0) throw new Error('MUTATE_TESTS names no test files');

export default defineConfig({
  test: {
    include: tests,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
