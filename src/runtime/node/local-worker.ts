/**
 * A recogniser worker on Node (worker_threads): PocketSphinx on its own thread, so that
 * recognition never blocks the server's event loop. Started by ./local.ts.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { PocketSphinx, readModel, type PocketSphinxFactory } from '../../local/pocketsphinx.ts';
import { serveRecognizer, type FromWorker, type ToWorker } from '../../local/worker-protocol.ts';
import { POCKETSPHINX_GLUE_URL } from './local-files.ts';

const { module, modelDir } = workerData as { module: WebAssembly.Module; modelDir: string };
const port = parentPort!;

await serveRecognizer(
  {
    post: (message: FromWorker) => port.postMessage(message),
    listen: (handler) => port.on('message', (message: ToWorker) => handler(message)),
  },
  async () => {
    const glue = (await import(POCKETSPHINX_GLUE_URL.href)) as { default: PocketSphinxFactory };
    const model = await readModel(async (relative) => new Uint8Array(await readFile(join(modelDir, relative))));
    return PocketSphinx.create(glue.default, module, model);
  },
);
