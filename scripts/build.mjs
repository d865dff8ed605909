#!/usr/bin/env node
/**
 * Compiles src/ to dist/ (tsc -p tsconfig.build.json) when anything it is built from is newer
 * than the last build, so `npm start` starts at once when nothing changed.
 *
 *   node scripts/build.mjs           build if stale
 *   node scripts/build.mjs --force   build anyway
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const stamp = join(root, 'dist', '.built');
const inputs = ['src', 'tsconfig.json', 'tsconfig.build.json', 'package-lock.json'];

function newest(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return readdirSync(path).reduce((max, name) => Math.max(max, newest(join(path, name))), stat.mtimeMs);
}

const stale =
  process.argv.includes('--force') ||
  !existsSync(stamp) ||
  Math.max(...inputs.map((p) => newest(join(root, p)))) > statSync(stamp).mtimeMs;

if (stale) {
  // A clean dist/: files of renamed or deleted modules must not linger in the image.
  rmSync(join(root, 'dist'), { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const { status } = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
  if (status !== 0) process.exit(status ?? 1);
  writeFileSync(stamp, '');
}
