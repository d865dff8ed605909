/**
 * Real speech for the `local` provider's tests and the bench: English sentences spoken by
 * Debian's `flite` (PocketSphinx does not recognise espeak-ng's voices), encoded to Ogg Opus
 * by opus-tools' `opusenc`, and the word error rate of what comes back.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** flite's voices that PocketSphinx's en-us model recognises. */
export const FLITE_VOICES = ['slt', 'awb', 'rms', 'kal16'] as const;
export type FliteVoice = (typeof FLITE_VOICES)[number];

/** Harvard sentences (IEEE 1969 lists 1 and 2): phonetically balanced, the usual test material. */
export const SENTENCES = [
  'The birch canoe slid on the smooth planks.',
  'Glue the sheet to the dark blue background.',
  "It's easy to tell the depth of a well.",
  'These days a chicken leg is a rare dish.',
  'Rice is often served in round bowls.',
  'The juice of lemons makes fine punch.',
  'The box was thrown beside the parked truck.',
  'The hogs were fed chopped corn and garbage.',
  'Four hours of steady work faced us.',
  'A large size in stockings is hard to sell.',
] as const;

const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

/** Why speech cannot be synthesised here (one line), or undefined when flite and opusenc are installed. */
export function speechToolsMissing(): string | undefined {
  const missing = ['flite', 'opusenc'].filter((tool) => !has(tool));
  return missing.length ? `${missing.join(' and ')} not installed (apt-get install flite opus-tools)` : undefined;
}

/** `text` spoken by `voice`, as an Ogg Opus file's bytes (mono, 24 kb/s, 20 ms frames). */
export function synthesize(text: string, voice: FliteVoice): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'speech-'));
  try {
    const wav = join(dir, 'speech.wav');
    const ogg = join(dir, 'speech.ogg');
    const flite = spawnSync('flite', ['-voice', voice, '-t', text, '-o', wav], { encoding: 'utf8' });
    if (flite.status !== 0) throw new Error(`flite failed: ${flite.stderr}`);
    const enc = spawnSync('opusenc', ['--quiet', '--bitrate', '24', '--framesize', '20', wav, ogg], { encoding: 'utf8' });
    if (enc.status !== 0) throw new Error(`opusenc failed: ${enc.stderr}`);
    return new Uint8Array(readFileSync(ogg));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Lower case words without punctuation ("It's" stays one word). */
export function words(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9' ]+/g, ' ')
    .split(/\s+/)
    .filter(Boolean);
}

/** Word error rate: word-level edit distance (substitutions, insertions, deletions) over the reference's length. */
export function wordErrorRate(reference: string, hypothesis: string): number {
  const ref = words(reference);
  const hyp = words(hypothesis);
  let previous = Array.from({ length: hyp.length + 1 }, (_, j) => j);
  for (let i = 1; i <= ref.length; i++) {
    const row = [i];
    for (let j = 1; j <= hyp.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (ref[i - 1] === hyp[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return ref.length === 0 ? (hyp.length === 0 ? 0 : 1) : previous[hyp.length]! / ref.length;
}
