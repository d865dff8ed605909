/**
 * The codec parity workload under Deno: `deno run --allow-read codec-hash.ts CAPTURE.jsonl FILE.ogg`
 * (e.g. test/fixtures/two-speakers.jsonl samples/speech.ogg) prints one JSON CodecHashReport
 * on stdout. Run by test/runtimes/codec-parity.test.ts.
 */
import { loadOpusModule } from '../../../src/runtime/deno/wasm.ts';
import { codecHashes } from '../codec-hash.ts';

const [capture, oggFile] = Deno.args;
if (capture === undefined || oggFile === undefined) {
  console.error('usage: codec-hash.ts CAPTURE.jsonl FILE.ogg');
  Deno.exit(2);
}
const [module, jvb, ogg] = await Promise.all([loadOpusModule(), Deno.readFile(capture), Deno.readFile(oggFile)]);
console.log(JSON.stringify(await codecHashes(module, { jvb, ogg })));
