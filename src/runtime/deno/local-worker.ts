/// <reference lib="deno.worker" />
/**
 * A recogniser worker on Deno (a Web Worker): PocketSphinx off the server's event loop.
 * Started by ./local.ts with the model directory in its first message.
 */
import { PocketSphinx, readModel, type PocketSphinxFactory } from '../../local/pocketsphinx.ts';
import { serveRecognizer, type FromWorker, type ToWorker } from '../../local/worker-protocol.ts';

const WASM_URL = new URL('../../../wasm/pocketsphinx.wasm', import.meta.url);
const GLUE_URL = new URL('../../../wasm/pocketsphinx.mjs', import.meta.url);

self.onmessage = (first: MessageEvent<{ modelDir: string }>) => {
  const { modelDir } = first.data;
  const handlers: ((message: ToWorker) => void)[] = [];
  self.onmessage = (event: MessageEvent<ToWorker>) => handlers.forEach((handle) => handle(event.data));
  void serveRecognizer(
    { post: (message: FromWorker) => self.postMessage(message), listen: (handler) => handlers.push(handler) },
    async () => {
      const glue = (await import(GLUE_URL.href)) as { default: PocketSphinxFactory };
      const module = await WebAssembly.compile(await Deno.readFile(WASM_URL));
      const model = await readModel((relative) => Deno.readFile(`${modelDir}/${relative}`));
      return PocketSphinx.create(glue.default, module, model);
    },
  );
};
