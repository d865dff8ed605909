/**
 * `npm run stream -- --mic`: the microphone read through `arecord` (here a stand-in on PATH
 * that plays a flite WAV's PCM, as arecord prints it), sent as l16, captions printed; and the
 * one-line refusal when no recorder is installed. The terminal rendering is checked on a
 * stream that says it is a TTY.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CaptionPrinter } from '../../scripts/lib/captions.ts';
import { NO_RECORDER } from '../../scripts/lib/microphone.ts';
import { L16Converter } from '../../src/codec/l16.ts';
import { hasFlite, speak } from '../helpers/browser.ts';
import { skipNote } from '../helpers/fixtures.ts';
import { startProxy, type Proxy } from '../helpers/proxy.ts';
import { runTool } from '../helpers/tool.ts';

const flite = hasFlite();
if (!flite) skipNote(import.meta.url, 'the microphone stream', 'no flite to speak it (apt-get install flite)');

describe('npm run stream -- --mic', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mic-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.skipIf(!flite)('sends what arecord records as 16 kHz PCM and prints the finals', async () => {
    const wav = speak(join(dir, 'mic.wav'), ['The boy was there when the sun rose.', 'A rod is used to catch pink salmon.'], 800);
    expect(wav.sampleRate).toBe(16_000);
    const raw = Buffer.from(wav.samples.buffer, wav.samples.byteOffset, wav.samples.byteLength);
    writeFileSync(join(dir, 'mic.raw'), raw);
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'arecord'), `#!/bin/sh\necho "$@" > '${dir}/args'\nexec /bin/cat '${dir}/mic.raw'\n`);
    chmodSync(join(bin, 'arecord'), 0o755);

    const proxy: Proxy = await startProxy({ FORCE_COMMIT_TIMEOUT: '30', PROVIDER_QUEUE_MS: '60000' });
    try {
      const url = `ws://127.0.0.1:${proxy.server.port}/transcribe?sessionId=mic&sendBack=true`;
      const run = await runTool('stream.ts', ['--mic', url], { PATH: bin });
      expect(run.code).toBe(0);
      expect(readFileSync(join(dir, 'args'), 'utf8').trim()).toBe('-q -t raw -f S16_LE -r 16000 -c 1');
      expect(run.stderr).toContain(`recording with ${bin}/arecord`);

      const [connection] = proxy.fake.connections;
      expect(proxy.fake.connections).toHaveLength(1);
      // The proxy resamples l16 to OpenAI's 24 kHz: what it sent is the recording, resampled.
      const expected = new L16Converter(16_000, 24_000).push(raw);
      const heard = connection!.pcm();
      expect(heard.length).toBe(expected.length);
      expect(heard.every((s, i) => Math.abs(s - expected[i]!) <= 1)).toBe(true);

      const finals = run.stdout.split('\n').filter((l) => l.startsWith('FINAL')).map((l) => l.replace(/^FINAL +mic: /, ''));
      expect(finals).toEqual(connection!.completed().filter((t) => t.trim() !== ''));
      expect(finals.length).toBeGreaterThanOrEqual(2);
    } finally {
      await proxy.close();
    }
  });

  it('says in one line what to install when there is neither arecord nor sox', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty, { recursive: true });
    expect(await runTool('stream.ts', ['--mic'], { PATH: empty })).toMatchObject({ code: 2, stderr: `${NO_RECORDER}\n`, stdout: '' });
  });
});

describe('captions on a terminal', () => {
  const result = (text: string, interim: boolean, id = 'm1') =>
    JSON.stringify({ event: 'transcription-result', transcript: [{ text }], is_interim: interim, message_id: id, participant: { id: 'mic', tag: 'mic' } });

  it('overwrites interims in place and keeps finals', () => {
    let written = '';
    const printer = new CaptionPrinter({ write: (t: string) => (written += t), isTTY: true, columns: 80 });
    printer.show(result('the boy', true));
    printer.show(result('the boy was there', true));
    printer.show(result('the boy was there.', false));
    printer.show(result('a rod', true));
    expect(written).toBe('\r\x1b[2K… mic: the boy\r\x1b[2K… mic: the boy was there\r\x1b[2KFINAL   mic: the boy was there.\n\r\x1b[2K… mic: a rod');
  });

  it('prints every message on a line of its own when not on a terminal', () => {
    let written = '';
    const printer = new CaptionPrinter({ write: (t: string) => (written += t) });
    printer.show(result('the boy', true));
    printer.show(result('the boy was there.', false));
    expect(written).toBe('interim mic: the boy\nFINAL   mic: the boy was there.\n');
  });
});
