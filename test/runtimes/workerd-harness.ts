/**
 * Runs a Worker module from this repository under workerd (miniflare, wrangler's own
 * simulator) for tests: bundles the TypeScript entry with esbuild, keeping each imported
 * .wasm file as its own CompiledWasm module, as wrangler does when it deploys.
 */
import { readFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { Miniflare, type MiniflareOptions, type ModuleDefinition } from 'miniflare';

/** The newest date this workerd knows; from 2026-04-07 workerd answers close frames itself. */
export const COMPATIBILITY_DATE = '2026-04-20';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The entry bundled into one ES module, plus one CompiledWasm module per .wasm it imports. */
export async function bundleWorker(entry: string): Promise<ModuleDefinition[]> {
  const wasm = new Map<string, string>();
  const wasmModules: Plugin = {
    name: 'wasm-modules',
    setup(b) {
      b.onResolve({ filter: /\.wasm$/ }, (args) => {
        const file = resolve(args.resolveDir, args.path);
        const name = basename(file);
        const known = wasm.get(name);
        if (known !== undefined && known !== file) throw new Error(`two .wasm modules named ${name}`);
        wasm.set(name, file);
        return { path: `./${name}`, external: true };
      });
    },
  };
  const result = await build({
    entryPoints: [resolve(ROOT, entry)],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    conditions: ['workerd', 'worker', 'browser'],
    target: 'es2022',
    plugins: [wasmModules],
    // workerd provides these modules itself (Durable Object base classes, RPC entrypoints).
    external: ['cloudflare:*'],
    logLevel: 'silent',
  });
  const code = result.outputFiles[0]?.text;
  if (code === undefined) throw new Error(`esbuild produced nothing for ${entry}`);
  const modules: ModuleDefinition[] = [{ type: 'ESModule', path: resolve(ROOT, 'worker.mjs'), contents: code }];
  for (const [name, file] of wasm) {
    modules.push({ type: 'CompiledWasm', path: resolve(ROOT, name), contents: new Uint8Array(await readFile(file)) });
  }
  return modules;
}

export interface WorkerOptions {
  compatibilityDate?: string;
  compatibilityFlags?: string[];
  /** String variables, as a Worker's `vars`. */
  vars?: Record<string, string>;
}

export interface RunningWorker {
  readonly mf: Miniflare;
  /** http://127.0.0.1:<port>/ of the workerd server. */
  readonly url: URL;
  dispose(): Promise<void>;
}

/** Starts workerd on a free port serving `entry` (a path relative to the repository root). */
export async function startWorker(entry: string, options: WorkerOptions = {}): Promise<RunningWorker> {
  const config: MiniflareOptions = {
    modules: await bundleWorker(entry),
    modulesRoot: ROOT,
    compatibilityDate: options.compatibilityDate ?? COMPATIBILITY_DATE,
    compatibilityFlags: options.compatibilityFlags ?? [],
    bindings: options.vars ?? {},
    host: '127.0.0.1',
    port: 0,
  };
  const mf = new Miniflare(config);
  const url = await mf.ready;
  return { mf, url, dispose: () => mf.dispose() };
}
