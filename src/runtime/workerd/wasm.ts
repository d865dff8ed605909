// wrangler (and our test bundler) ship the .wasm as its own module; workerd compiles it at
// deploy time, so the import is already a WebAssembly.Module and nothing compiles per request.
import opusModule from '../../../wasm/opus.wasm';

/** The compiled libopus module (see src/codec/opus.ts), same signature as Node's and Deno's. */
export function loadOpusModule(): Promise<WebAssembly.Module> {
  return Promise.resolve(opusModule);
}
