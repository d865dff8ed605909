/**
 * The WASM codec decodes identically on Node, Deno and workerd: every packet of the
 * repository's fixtures (and of the shared real ones, when they are beside the checkout), at
 * 48 and 24 kHz, through the one workload in codec-hash.ts, each runtime loading
 * wasm/opus.wasm through its own src/runtime seam. Node's hashes are computed in this run.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { CAPTURE_PATH, SPEECH_OGG_PATH, manifest, sharedFixture, sharedFixtures } from '../helpers/fixtures.ts';
import { codecHashes, PARITY_RATES, type CodecHashReport } from './codec-hash.ts';
import { startWorker, type RunningWorker } from './workerd-harness.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DENO = fileURLToPath(new URL('../../node_modules/.bin/deno', import.meta.url));
const shared = sharedFixtures.availableFor(import.meta.url, 'the codec parity on the real captures');

interface FixtureSet {
  name: string;
  skip: boolean;
  files: () => { capture: string; ogg: string };
  /** Each stream and its packet count, in the workload's order: the capture's tags, then `ogg`. */
  streams: () => (readonly [string, number])[];
}

const SETS: FixtureSet[] = [
  {
    name: 'the repository fixtures',
    skip: false,
    files: () => ({ capture: CAPTURE_PATH, ogg: SPEECH_OGG_PATH }),
    streams: () => [...manifest.capture.speakers.map((s) => [s.tag, s.packets] as const), ['ogg', manifest.speech.packets]],
  },
  {
    name: 'the shared real fixtures',
    skip: !shared,
    files: () => ({ capture: sharedFixture('jvb-two-speakers.jsonl'), ogg: sharedFixture('speech-10s.ogg') }),
    // Their README's figures.
    streams: () => [
      ['aaaaaaaa-305123557', 713],
      ['bbbbbbbb-2272476824', 1412],
      ['ogg', 541],
    ],
  },
];

for (const set of SETS) {
  describe.skipIf(set.skip)(set.name, () => {
    let jvb: Uint8Array<ArrayBuffer>;
    let ogg: Uint8Array<ArrayBuffer>;
    let node: CodecHashReport;
    let worker: RunningWorker | undefined;

    beforeAll(async () => {
      const files = set.files();
      const read = async (path: string) => new Uint8Array(await readFile(path));
      [jvb, ogg] = await Promise.all([read(files.capture), read(files.ogg)]);
      node = await codecHashes(await loadOpusModule(), { jvb, ogg });
    });

    afterAll(async () => {
      await worker?.dispose();
    });

    it('Node reference hashes cover every packet of both files at each rate', () => {
      expect(node.libopus).toBe('libopus 1.5.2');
      // Every packet of the fixtures is 20 ms.
      const expected = PARITY_RATES.flatMap((rate) =>
        set.streams().map(([stream, packets]) => ({ stream, rate, packets, samples: (packets * rate) / 50 })),
      );
      expect(node.hashes).toMatchObject(expected);
      expect(new Set(node.hashes.map((h) => h.sha256)).size).toBe(node.hashes.length);
    });

    it('Deno decodes bit-identically to Node', async () => {
      const files = set.files();
      const { stdout } = await promisify(execFile)(DENO, ['run', '--allow-read', 'test/runtimes/deno/codec-hash.ts', files.capture, files.ogg], {
        cwd: ROOT,
        env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' },
      });
      const deno = JSON.parse(stdout) as CodecHashReport;
      expect(deno).toEqual(node);
    });

    it('workerd decodes bit-identically to Node', async () => {
      worker = await startWorker('test/runtimes/workerd/codec-worker.ts');
      const form = new FormData();
      form.set('jvb', new Blob([jvb]), 'capture.jsonl');
      form.set('ogg', new Blob([ogg]), 'speech.ogg');
      const response = await fetch(worker.url, { method: 'POST', body: form });
      expect(response.status, await response.clone().text()).toBe(200);
      expect((await response.json()) as CodecHashReport).toEqual(node);
    });
  });
}
