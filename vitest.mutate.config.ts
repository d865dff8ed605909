import { defineConfig } from 'vitest/config';

/**
 * The tests Stryker runs against each mutant (`npm run mutate`): the in-process unit and
 * end-to-end suites that exercise the core (session, codec, sinks, protocol, providers).
 * Left out, because a mutant of the core cannot change their outcome or they run code
 * Stryker does not instrument: type checks and the architecture scan, child processes
 * (the server entries, Deno, opusdec, Docker, wrangler), real workerd (miniflare),
 * and the Cloudflare container tests. Also left out: test/e2e/survival.test.ts, whose
 * resumption case failed in Stryker's initial run (a final racing the socket it terminates;
 * the same mutants are covered by test/session/resumption.test.ts and the other e2e files).
 *
 * MUTATE_TIER=unit keeps the unit suites and the guards only (no test/e2e): a lower bound on
 * the score (a mutant it kills, the whole suite kills too) at a fraction of the time.
 */
const unit = [
  'test/codec/**/*.test.ts',
  'test/session/**/*.test.ts',
  'test/sinks/**/*.test.ts',
  'test/protocol/**/*.test.ts',
  'test/providers/**/*.test.ts',
  'test/guards/**/*.test.ts',
  'test/util/**/*.test.ts',
];

export default defineConfig({
  test: {
    include: process.env.MUTATE_TIER === 'unit' ? unit : [...unit, 'test/e2e/**/*.test.ts'],
    exclude: ['test/e2e/startup.test.ts', 'test/e2e/drain.test.ts', 'test/e2e/survival.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
