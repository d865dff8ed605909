/**
 * Runs the Deno-native tests (test/runtimes/deno/*_test.ts, `deno task test`) from vitest,
 * so that `npm test` covers the Deno seams that can only be exercised inside Deno.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { DENO } from './deno-process.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

it('deno test test/runtimes/deno/ passes', async () => {
  const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
    execFile(
      DENO,
      ['test', '--allow-net', '--allow-read', 'test/runtimes/deno/'],
      { cwd: ROOT, env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' } },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, output: stdout + stderr }),
    );
  });
  expect(result.code, result.output).toBe(0);
  expect(result.output).toMatch(/ok \| \d+ passed \| 0 failed/);
});
