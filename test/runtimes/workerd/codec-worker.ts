/**
 * The codec parity workload under workerd: POST a fixture set's two files (a capture and an
 * Ogg Opus file) as form fields `jvb` and `ogg`; answers the CodecHashReport as JSON. Run by
 * codec-parity.test.ts.
 */
import { loadOpusModule } from '../../../src/runtime/workerd/wasm.ts';
import { codecHashes } from '../codec-hash.ts';

async function field(form: FormData, name: string): Promise<Uint8Array> {
  const value = form.get(name);
  if (value === null || typeof value === 'string') throw new Error(`form field ${name} is not a file`);
  return new Uint8Array(await value.arrayBuffer());
}

export default {
  async fetch(request) {
    const form = await request.formData();
    const [jvb, ogg] = await Promise.all([field(form, 'jvb'), field(form, 'ogg')]);
    return Response.json(await codecHashes(await loadOpusModule(), { jvb, ogg }));
  },
} satisfies ExportedHandler;
