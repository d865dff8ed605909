/**
 * The WASM codec decodes identically on Node, Deno and workerd: every packet of the shared
 * fixtures, at 48 and 24 kHz, through the one workload in codec-hash.ts, each runtime loading
 * wasm/opus.wasm through its own src/runtime seam. Node's hashes are computed in this run.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { fixturePath } from '../helpers/fixtures.ts';
import { codecHashes, PARITY_RATES, type CodecHashReport } from './codec-hash.ts';
import { startWorker, type RunningWorker } from './workerd-harness.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DENO = fileURLToPath(new URL('../../node_modules/.bin/deno', import.meta.url));
const FIXTURE_DIR = fixturePath('.');

let jvb: Uint8Array<ArrayBuffer>;
let ogg: Uint8Array<ArrayBuffer>;
let node: CodecHashReport;

beforeAll(async () => {
  const read = async (name: string) => new Uint8Array(await readFile(fixturePath(name)));
  [jvb, ogg] = await Promise.all([read('jvb-two-speakers.jsonl'), read('speech-10s.ogg')]);
  node = await codecHashes(await loadOpusModule(), { jvb, ogg });
});

describe('Node reference hashes', () => {
  it('cover every packet of both fixtures at each rate', () => {
    expect(node.libopus).toBe('libopus 1.5.2');
    const streams = [
      ['aaaaaaaa-305123557', 713],
      ['bbbbbbbb-2272476824', 1412],
      ['ogg', 541],
    ] as const;
    // Every packet of both fixtures is 20 ms.
    const expected = PARITY_RATES.flatMap((rate) =>
      streams.map(([stream, packets]) => ({ stream, rate, packets, samples: (packets * rate) / 50 })),
    );
    expect(node.hashes).toMatchObject(expected);
    expect(new Set(node.hashes.map((h) => h.sha256)).size).toBe(node.hashes.length);
  });
});

describe('Deno', () => {
  it('decodes bit-identically to Node', async () => {
    const { stdout } = await promisify(execFile)(
      DENO,
      ['run', '--allow-read', 'test/runtimes/deno/codec-hash.ts', FIXTURE_DIR],
      { cwd: ROOT, env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' } },
    );
    const deno = JSON.parse(stdout) as CodecHashReport;
    expect(deno).toEqual(node);
  });
});

describe('workerd', () => {
  let worker: RunningWorker | undefined;

  afterAll(async () => {
    await worker?.dispose();
  });

  it('decodes bit-identically to Node', async () => {
    worker = await startWorker('test/runtimes/workerd/codec-worker.ts');
    const form = new FormData();
    form.set('jvb', new Blob([jvb]), 'jvb-two-speakers.jsonl');
    form.set('ogg', new Blob([ogg]), 'speech-10s.ogg');
    const response = await fetch(worker.url, { method: 'POST', body: form });
    expect(response.status, await response.clone().text()).toBe(200);
    expect((await response.json()) as CodecHashReport).toEqual(node);
  });
});
