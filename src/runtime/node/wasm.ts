import { readFile } from 'node:fs/promises';
import { memoizeUntilFailure } from '../../util/memo.ts';

/**
 * wasm/opus.wasm, resolved from this file's location so that it works both from
 * src/runtime/node/ (tsx, vitest) and from dist/runtime/node/ (after tsc).
 */
export const OPUS_WASM_URL = new URL('../../../wasm/opus.wasm', import.meta.url);

/** The compiled libopus module (see src/codec/opus.ts); compiled once per process. */
export const loadOpusModule = memoizeUntilFailure(() =>
  readFile(OPUS_WASM_URL).then(
    (bytes) => WebAssembly.compile(bytes),
    (error: unknown) => {
      throw new Error(`cannot read ${OPUS_WASM_URL.pathname} (build it with: npm run build:wasm)`, { cause: error });
    },
  ),
);
