/**
 * The codec parity workload under Deno: `deno run --allow-read codec-hash.ts <fixture dir>`
 * prints one JSON CodecHashReport on stdout. Run by test/runtimes/codec-parity.test.ts.
 */
import { loadOpusModule } from '../../../src/runtime/deno/wasm.ts';
import { codecHashes } from '../codec-hash.ts';

const dir = Deno.args[0];
if (dir === undefined) {
  console.error('usage: codec-hash.ts <fixture dir>');
  Deno.exit(2);
}
const base = new URL(dir.endsWith('/') ? dir : `${dir}/`, `file://${Deno.cwd()}/`);
const [module, jvb, ogg] = await Promise.all([
  loadOpusModule(),
  Deno.readFile(new URL('jvb-two-speakers.jsonl', base)),
  Deno.readFile(new URL('speech-10s.ogg', base)),
]);
console.log(JSON.stringify(await codecHashes(module, { jvb, ogg })));
