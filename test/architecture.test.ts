/**
 * The core runs unchanged on Node, Deno and workerd only if it imports no runtime: every
 * runtime-specific import lives under src/runtime/. This check fails CI when one leaks.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

function* sources(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (relative(SRC, path) !== 'runtime') yield* sources(path);
    } else if (entry.name.endsWith('.ts')) {
      yield path;
    }
  }
}

const FORBIDDEN: [RegExp, string][] = [
  [/\bfrom\s+['"](node:[^'"]+|ws|fs|fs\/promises|path|os|child_process|cloudflare:[^'"]+|@cloudflare\/[^'"]+|@hono\/node-[^'"]+)['"]/, 'a runtime module'],
  [/\bimport\s*\(\s*['"](node:|cloudflare:)/, 'a dynamic runtime import'],
  [/\brequire\s*\(/, 'require()'],
  [/\bprocess\.(env|exit|on|argv|hrtime|memoryUsage|cpuUsage)\b/, 'the Node process object'],
  [/\bDeno\./, 'the Deno namespace'],
  [/\bBuffer\./, "Node's Buffer"],
];

it('src/ outside src/runtime/ imports nothing runtime-specific', () => {
  const leaks: string[] = [];
  for (const file of sources(SRC)) {
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      // Comments may name runtimes; code may not use them.
      const code = line.replace(/\/\/.*$/, '').replace(/^\s*\*.*$/, '');
      for (const [pattern, what] of FORBIDDEN) {
        if (pattern.test(code)) leaks.push(`${relative(SRC, file)}:${i + 1}: ${what}: ${line.trim()}`);
      }
    });
  }
  expect(leaks).toEqual([]);
});

it('the check itself catches a leak', () => {
  const sample = "import { readFile } from 'node:fs/promises';";
  expect(FORBIDDEN.some(([pattern]) => pattern.test(sample))).toBe(true);
  expect(FORBIDDEN.some(([pattern]) => pattern.test('const key = process.env.OPENAI_API_KEY;'))).toBe(true);
});
