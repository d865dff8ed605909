/**
 * Debian's Chromium, headless, driven by puppeteer-core (whose own browser download cannot work
 * here), with a fake microphone playing a WAV file in a loop; and that WAV, spoken by flite.
 * Shared by test/browser/ and scripts/screenshot.ts.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import puppeteer, { type Browser } from 'puppeteer-core';
import { readWav, writeWav, type Wav } from '../../scripts/lib/wav.ts';

/** The Chromium binary (CHROMIUM_PATH, else `chromium` on PATH), or why there is none. */
export function findChromium(): { path: string } | { missing: string } {
  const configured = process.env.CHROMIUM_PATH;
  if (configured) return { path: configured };
  const found = spawnSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).stdout.trim();
  return found ? { path: found } : { missing: 'no chromium on PATH (apt-get install chromium, or set CHROMIUM_PATH)' };
}

/** Headless Chromium whose microphone is `wav` (looped), granted without a prompt. */
export function launchWithMicrophone(executablePath: string, wav: string): Promise<Browser> {
  return puppeteer.launch({
    executablePath,
    headless: true,
    args: [
      // Root in a container has no user namespace for the sandbox.
      '--no-sandbox',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${wav}`,
      // ?autostart=1 starts audio without a click, as a kiosk browser is set up to allow.
      //'--autoplay-policy=no-user-gesture-required',
    ],
  });
}

/**
 * Writes `sentences` spoken by flite's `slt` voice as a WAV at `path`, each followed by
 * `pauseMs` of silence (the fake microphone loops it: the pauses end the utterances).
 */
export function speak(path: string, sentences: string[], pauseMs = 1200): Wav {
  const parts: Int16Array[] = [];
  let sampleRate = 16_000;
  for (const [i, text] of sentences.entries()) {
    const out = `${path}.${i}.wav`;
    const run = spawnSync('flite', ['-voice', 'slt', '-t', text, '-o', out]);
    if (run.error || run.status !== 0) throw new Error(`flite failed: ${run.error?.message ?? run.stderr.toString()}`);
    const wav = readWav(readFileSync(out));
    sampleRate = wav.sampleRate;
    parts.push(wav.samples, new Int16Array(Math.round((pauseMs * sampleRate) / 1000)));
  }
  const samples = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    samples.set(p, at);
    at += p.length;
  }
  const wav = { sampleRate, channels: 1, samples };
  writeFileSync(path, writeWav(wav));
  return wav;
}

export const hasFlite = () => spawnSync('flite', ['--version']).error === undefined;
