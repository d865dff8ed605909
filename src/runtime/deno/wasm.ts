import { memoizeUntilFailure } from '../../util/memo.ts';

/**
 * wasm/opus.wasm, resolved from this file's location so that it works from any working
 * directory (`deno run` of src/runtime/deno.ts, tests, `deno task`).
 */
export const OPUS_WASM_URL = new URL('../../../wasm/opus.wasm', import.meta.url);

/**
 * The compiled libopus module (see src/codec/opus.ts); compiled once per process. Read and
 * compiled rather than imported as a Wasm module: Deno's Wasm imports instantiate the module,
 * and OpusCodec needs the Module itself to supply its one import.
 */
export const loadOpusModule = memoizeUntilFailure(() =>
  Deno.readFile(OPUS_WASM_URL).then(
    (bytes) => WebAssembly.compile(bytes),
    (error: unknown) => {
      throw new Error(`cannot read ${OPUS_WASM_URL.pathname} (build it with: npm run build:wasm)`, { cause: error });
    },
  ),
);
