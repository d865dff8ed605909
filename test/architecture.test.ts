/**
 * The core runs unchanged on Node, Deno and workerd only if it imports no runtime: every
 * runtime-specific import lives under src/runtime/, and Cloudflare's under
 * src/runtime/workerd/. The app (src/app.ts) is a leaf that only runtime code builds: the
 * layers below it depend on src/session/ports.ts instead. These checks fail CI when one leaks.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/** The .ts files under `dir`, except those under the folders in `skip` (relative to src/). */
function* sources(dir: string, skip: readonly string[] = []): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!skip.includes(relative(SRC, path))) yield* sources(path, skip);
    } else if (entry.name.endsWith('.ts')) {
      yield path;
    }
  }
}

/** Each line's code, without comments (which may name anything). */
function codeLines(file: string): { line: string; code: string; at: string }[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((line, i) => ({ line, code: line.replace(/\/\/.*$/, '').replace(/^\s*\*.*$/, ''), at: `${relative(SRC, file)}:${i + 1}` }));
}

/** The module specifiers a file imports or re-exports. */
function specifiers(file: string): { specifier: string; at: string }[] {
  const found: { specifier: string; at: string }[] = [];
  for (const { code, at } of codeLines(file)) {
    for (const match of code.matchAll(/\b(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) found.push({ specifier: match[1]!, at });
  }
  return found;
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
  for (const file of sources(SRC, ['runtime'])) {
    for (const { line, code, at } of codeLines(file)) {
      for (const [pattern, what] of FORBIDDEN) {
        if (pattern.test(code)) leaks.push(`${at}: ${what}: ${line.trim()}`);
      }
    }
  }
  expect(leaks).toEqual([]);
});

it('only src/runtime/ imports src/app.ts', () => {
  const app = join(SRC, 'app.ts');
  const leaks = [...sources(SRC, ['runtime'])].flatMap((file) =>
    specifiers(file)
      .filter(({ specifier }) => specifier.startsWith('.') && resolve(dirname(file), specifier) === app)
      .map(({ at, specifier }) => `${at}: ${specifier}`),
  );
  expect(leaks).toEqual([]);
});

it('only src/runtime/workerd/ imports Cloudflare modules', () => {
  const workerd = join(SRC, 'runtime', 'workerd') + sep;
  const leaks = [...sources(SRC)]
    .filter((file) => !file.startsWith(workerd))
    .flatMap((file) =>
      specifiers(file)
        .filter(({ specifier }) => /^(cloudflare:|@cloudflare\/)/.test(specifier))
        .map(({ at, specifier }) => `${at}: ${specifier}`),
    );
  expect(leaks).toEqual([]);
});

it('the checks themselves catch a leak', () => {
  const sample = "import { readFile } from 'node:fs/promises';";
  expect(FORBIDDEN.some(([pattern]) => pattern.test(sample))).toBe(true);
  expect(FORBIDDEN.some(([pattern]) => pattern.test('const key = process.env.OPENAI_API_KEY;'))).toBe(true);
  // The import scans see the imports that are allowed where they are.
  const imported = (file: string) => specifiers(join(SRC, file)).map((s) => s.specifier);
  expect(imported('runtime/server.ts')).toContain('../app.ts');
  expect(imported('runtime/workerd/container.ts')).toContain('@cloudflare/containers');
});
