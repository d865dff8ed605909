/**
 * wrangler-container.jsonc as wrangler reads it, and `wrangler deploy --dry-run`, which
 * bundles the Worker as a deploy would. A dry run of the real file wants a Docker engine to
 * build the image (none here, and wrangler 4.86, the last on Node 20, cannot skip it), so
 * the bundle is checked with the same file minus its `containers` block: the Worker, its
 * bindings and the .wasm module are what that block does not touch.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { experimental_readRawConfig, unstable_readConfig } from 'wrangler';
import { COMPATIBILITY_DATE } from '../runtimes/workerd-harness.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONFIG = join(ROOT, 'wrangler-container.jsonc');
const WRANGLER = join(ROOT, 'node_modules/wrangler/bin/wrangler.js');
const work = mkdtempSync(join(tmpdir(), 'wrangler-'));

afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The raw file with paths made absolute, so that a variant can live outside the repository. */
function rawConfig(text = readFileSync(CONFIG, 'utf8')): Record<string, any> {
  const file = join(work, `variant-${Math.random().toString(36).slice(2)}.jsonc`);
  writeFileSync(file, text);
  const { rawConfig: raw } = experimental_readRawConfig({ config: file });
  const config = structuredClone(raw) as Record<string, any>;
  delete config.$schema;
  config.main = join(ROOT, config.main as string);
  for (const container of config.containers ?? []) container.image = join(ROOT, container.image as string);
  return config;
}

function writeVariant(config: Record<string, unknown>): string {
  const file = join(work, `wrangler-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

describe('wrangler-container.jsonc', () => {
  it('declares the Worker, its container per session, and their Durable Object', () => {
    const config = unstable_readConfig({ config: CONFIG });
    expect(config.main).toBe(join(ROOT, 'src/runtime/workerd.ts'));
    expect(config.containers).toEqual([
      expect.objectContaining({ class_name: 'TranscriberContainer', image: join(ROOT, 'Dockerfile'), max_instances: 10 }),
    ]);
    expect(config.durable_objects.bindings).toEqual([
      { name: 'CONTAINER', class_name: 'TranscriberContainer' },
      { name: 'COORDINATOR', class_name: 'ContainerCoordinator' },
    ]);
    expect(config.migrations).toEqual([
      expect.objectContaining({ new_sqlite_classes: ['TranscriberContainer'] }),
      expect.objectContaining({ new_sqlite_classes: ['ContainerCoordinator'] }),
    ]);
    expect(config.vars).toMatchObject({ USE_DISPATCHER: 'false', ROUTING: 'session' });
    expect(config.observability).toMatchObject({ enabled: true });
    expect(config.dev.enable_containers).toBe(false);
    // From 2026-04-07 workerd answers close frames itself; the tests run the same date.
    expect(config.compatibility_date).toBe(COMPATIBILITY_DATE);
    expect(config.compatibility_date >= '2026-04-07').toBe(true);
  });

  it('carries dispatcher examples that are valid once uncommented', () => {
    const text = readFileSync(CONFIG, 'utf8')
      .split('\n')
      .map((line) => (/^\s*\/\/ *(\{ "name": "DISPATCHER_DO"|"queues"|"services")/.test(line) ? line.replace('//', '') : line))
      .join('\n')
      .replace('"USE_DISPATCHER": "false"', '"USE_DISPATCHER": "true"');
    const config = unstable_readConfig({ config: writeVariant(rawConfig(text)) });
    expect(config.durable_objects.bindings.map((b: { name: string }) => b.name)).toEqual(['CONTAINER', 'COORDINATOR', 'DISPATCHER_DO']);
    expect(config.queues.producers?.map((q: { binding: string }) => q.binding)).toEqual(['TRANSCRIPTION_QUEUE']);
    expect(config.services?.map((s: { binding: string }) => s.binding)).toEqual(['TRANSCRIPTION_DISPATCHER']);
  });
});

describe('wrangler deploy --dry-run', () => {
  it('bundles the Worker with the Opus module beside it', () => {
    const config = rawConfig();
    delete config.containers;
    const outdir = join(work, 'out');
    const run = spawnSync(process.execPath, [WRANGLER, 'deploy', '--dry-run', '--outdir', outdir, '-c', writeVariant(config)], {
      cwd: work,
      encoding: 'utf8',
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: 'true' },
    });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain('env.CONTAINER (TranscriberContainer)');
    expect(run.stdout).toContain('env.COORDINATOR (ContainerCoordinator)');

    const files = readdirSync(outdir);
    const wasm = files.filter((f) => f.endsWith('.wasm'));
    expect(wasm).toHaveLength(1);
    expect(readFileSync(join(outdir, wasm[0]!)).equals(readFileSync(join(ROOT, 'wasm/opus.wasm')))).toBe(true);
    const bundle = readFileSync(join(outdir, 'workerd.js'), 'utf8');
    // Imported as a module (compiled at deploy time), not inlined.
    expect(bundle).toContain(`./${wasm[0]}`);
    expect(bundle).toMatch(/export\s*\{[^}]*\bTranscriberContainer\b/);
    expect(bundle).toMatch(/export\s*\{[^}]*\bContainerCoordinator\b/);
  });
});
