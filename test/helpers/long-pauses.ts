/**
 * Speech with long pauses that are not DTX: the sentences of samples/speech.ogg (flite, their
 * bounds in test/fixtures/manifest.json) separated by 20 s of low background noise, encoded
 * with `opusenc` (no `--dtx`), so that the silent stretches still arrive as ordinary packets,
 * as from an unmuted participant who says nothing. Needs opus-tools (CI installs it).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OpusCodec } from '../../src/codec/opus.ts';
import { manifest, readOggOpus } from './fixtures.ts';

export const PAUSE_MS = 20_000;
/** RMS of the background noise (dBFS): a quiet room. */
export const NOISE_DBFS = -62;

export interface LongPauses {
  /** The Opus packets of the recording, 20 ms each, in order. */
  packets: Uint8Array[];
  /** Where each sentence lies in the recording (ms), and its text. */
  sentences: { text: string; startMs: number; endMs: number }[];
  /** The sentences' total duration (s): the speech the provider should be paid for. */
  speechSeconds: number;
}

export function opusencAvailable(): boolean {
  return spawnSync('opusenc', ['--version']).status === 0;
}

/** Deterministic noise (xorshift32 → approximately Gaussian), so every run encodes the same bytes. */
function noise(samples: number, dbfs: number, seed: number): Int16Array {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
  const rms = 32768 * 10 ** (dbfs / 20);
  const out = new Int16Array(samples);
  for (let i = 0; i < samples; i++) out[i] = Math.round((next() + next() + next() + next() - 2) * rms * Math.sqrt(3));
  return out;
}

function wav(pcm: Int16Array, rate: number): Buffer {
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + pcm.byteLength, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(pcm.byteLength, 40);
  return Buffer.concat([header, Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength)]);
}

/** Builds the recording (about 70 s): `codec` decodes samples/speech.ogg to cut its sentences out. */
export function longPauses(codec: OpusCodec): LongPauses {
  const rate = 48000;
  const source = readOggOpus();
  const decoder = codec.createDecoder(rate);
  const parts: Int16Array[] = [];
  for (const p of source.packets) parts.push(decoder.decodeInt16(p).slice());
  decoder.close();
  const all = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  const speech = all.subarray(source.preSkip);
  const ms = (n: number) => Math.round((n * rate) / 1000);
  const pieces: Int16Array[] = [];
  const sentences: LongPauses['sentences'] = [];
  let length = 0;
  const add = (pcm: Int16Array) => {
    pieces.push(pcm);
    length += pcm.length;
  };
  add(noise(ms(2000), NOISE_DBFS, 1));
  manifest.speech.sentences.forEach((s, i) => {
    const startMs = (length * 1000) / rate;
    add(speech.subarray(ms(s.startMs), ms(s.endMs)));
    sentences.push({ text: s.text, startMs, endMs: (length * 1000) / rate });
    add(noise(ms(i === manifest.speech.sentences.length - 1 ? 3000 : PAUSE_MS), NOISE_DBFS, i + 2));
  });
  const pcm = new Int16Array(length);
  at = 0;
  for (const p of pieces) {
    pcm.set(p, at);
    at += p.length;
  }
  const dir = mkdtempSync(join(tmpdir(), 'long-pauses-'));
  try {
    writeFileSync(join(dir, 'in.wav'), wav(pcm, rate));
    // No --dtx: the pauses are ordinary packets. 20 ms frames, as a media server sends them.
    execFileSync('opusenc', ['--quiet', '--bitrate', '24', '--framesize', '20', join(dir, 'in.wav'), join(dir, 'out.ogg')]);
    const packets = readOggOpus(join(dir, 'out.ogg')).packets;
    const speechSeconds = sentences.reduce((n, s) => n + (s.endMs - s.startMs), 0) / 1000;
    return { packets, sentences, speechSeconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
