/**
 * Makes the project's own audio fixtures from known English sentences, so that the tests,
 * the benchmarks and `npm run stream` need nothing beside the checkout:
 *
 *   samples/speech.ogg                 one speaker, four sentences (10.5 s), Ogg Opus: the sample
 *                                      users stream with `npm run stream -- samples/speech.ogg`
 *   test/fixtures/two-speakers.jsonl   a Jitsi Videobridge-like capture of two participants
 *                                      taking turns (the shared real capture's exact format)
 *   test/fixtures/manifest.json        what was said, by whom, when, and the capture's figures
 *
 * Speech comes from Debian's `flite` (two voices for the two participants) and is encoded
 * with opus-tools' `opusenc`; the capture is packetised from the encoder's Ogg packets with
 * our own demuxer (src/codec/ogg.ts). Everything is deterministic: fixed Ogg serial numbers,
 * a fixed epoch, seeded jitter; the same Debian packages give the same bytes.
 *
 *   npm run fixtures                                        (re)writes the three files
 *   node --import tsx scripts/make-fixtures.ts --check      regenerates them into a temporary
 *        directory and fails unless every byte equals the committed files (run by .ci/run);
 *        skipped, with a message, when flite or opusenc is not installed
 *
 * Needs: flite and opus-tools (`apt-get install flite opus-tools`).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OggOpusDemuxer } from '../src/codec/ogg.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** The generated files, relative to the repository root. */
const OUTPUTS = {
  speech: 'samples/speech.ogg',
  capture: 'test/fixtures/two-speakers.jsonl',
  manifest: 'test/fixtures/manifest.json',
} as const;

/** flite's voices speak at 16 kHz. */
const RATE = 16_000;
const FRAME = RATE / 50; // 20 ms
const ms = (milliseconds: number) => (milliseconds * RATE) / 1000;

// ---------------------------------------------------------------------------------------------
// What is said. Harvard sentences (IEEE 1969), none of the four in the shared speech-10s.ogg.

const SPEECH = {
  voice: 'slt',
  sentences: [
    'The boy was there when the sun rose.',
    'A rod is used to catch pink salmon.',
    'The source of the huge river is the clear spring.',
    'Kick the ball straight and follow through.',
  ],
  /** SILK/hybrid at a voice bitrate, as a phone or a browser records it. */
  opusenc: ['--bitrate', '24'],
};

interface Speaker {
  endpointId: string;
  ssrc: number;
  voice: string;
  /** The encoder's settings: the two participants' clients differ, as real ones do. */
  opusenc: string[];
  /** RTP sequence (`chunk`) and timestamp of the first packet sent. */
  firstChunk: number;
  firstTimestamp: number;
}

/** A: SILK/hybrid, as a browser sends speech; B: CELT (`--music`), as some clients do. */
const A: Speaker = { endpointId: 'cccccccc', ssrc: 1234567, voice: 'rms', opusenc: ['--bitrate', '16'], firstChunk: 4810, firstTimestamp: 157280 };
const B: Speaker = { endpointId: 'dddddddd', ssrc: 7654321, voice: 'slt', opusenc: ['--bitrate', '16', '--music'], firstChunk: 22197, firstTimestamp: 3016330 };

const TURNS = {
  a1: ['A large size in stockings is hard to sell.'],
  b1: ['A pot of tea helps to pass the evening.', 'Two blue fish swam in the tank.'],
  a2: ['Read verse out loud for pleasure.'],
};

/** Silence kept around each synthesized sentence (flite's own is trimmed to this). */
const SENTENCE_PAD_MS = 100;
/** Between two sentences of one turn: long enough for a voice-activity detector to end an utterance. */
const SENTENCE_GAP_MS = 400;
/** The next speaker starts this long before the current one stops: they overlap a little. */
const OVERLAP_MS = 400;
/** Packets still sent after speech ends before discontinuous transmission (DTX) stops them, and resumed before it. */
const DTX_HANGOVER_MS = 400;
const DTX_LEAD_IN_MS = 60;
/** When the capture begins: 2026-01-01T09:00:00Z (a fixed epoch; nothing reads the clock). */
const EPOCH_MS = 1_767_258_000_000;

// ---------------------------------------------------------------------------------------------
// Tools.

function run(command: string, args: string[], input?: Uint8Array): Buffer {
  const result = spawnSync(command, args, { input, maxBuffer: 1 << 28 });
  if (result.error !== undefined) throw new Error(`${command}: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status}: ${result.stderr.toString().trim()}`);
  return result.stdout;
}

/** The missing tools, if any. */
function missingTools(): string[] {
  const missing: string[] = [];
  if (spawnSync('flite', ['--version']).error !== undefined) missing.push('flite');
  if (spawnSync('opusenc', ['--version']).error !== undefined) missing.push('opusenc (opus-tools)');
  return missing;
}

function toolVersions(): { flite: string; opusenc: string } {
  // `flite --version` prints its version and exits with 1.
  const flite = /version: (\S+)/.exec(spawnSync('flite', ['--version'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown';
  const opusenc = spawnSync('opusenc', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]!.trim();
  return { flite, opusenc };
}

/** 16-bit mono PCM of a WAV file (the chunks flite writes: RIFF, fmt, data). */
function wavSamples(wav: Buffer, name: string): Int16Array {
  if (wav.toString('latin1', 0, 4) !== 'RIFF' || wav.toString('latin1', 8, 12) !== 'WAVE') throw new Error(`${name}: not a WAV file`);
  let at = 12;
  let format: { channels: number; rate: number; bits: number } | undefined;
  while (at + 8 <= wav.length) {
    const id = wav.toString('latin1', at, at + 4);
    const size = wav.readUInt32LE(at + 4);
    const body = wav.subarray(at + 8, at + 8 + size);
    if (id === 'fmt ') format = { channels: body.readUInt16LE(2), rate: body.readUInt32LE(4), bits: body.readUInt16LE(14) };
    if (id === 'data') {
      if (format?.channels !== 1 || format.rate !== RATE || format.bits !== 16) throw new Error(`${name}: expected 16-bit mono at ${RATE} Hz, got ${JSON.stringify(format)}`);
      const samples = new Int16Array(body.length >> 1);
      for (let i = 0; i < samples.length; i++) samples[i] = body.readInt16LE(2 * i);
      return samples;
    }
    at += 8 + size + (size & 1);
  }
  throw new Error(`${name}: no data chunk`);
}

/** One sentence in one voice, its leading and trailing silence trimmed to SENTENCE_PAD_MS. */
function synthesize(text: string, voice: string, work: string): Int16Array {
  const file = join(work, 'sentence.wav');
  run('flite', ['-voice', voice, '-t', text, '-o', file]);
  const samples = wavSamples(readFileSync(file), `flite -voice ${voice}`);
  const loud = (s: number) => Math.abs(s) > 300;
  const first = samples.findIndex(loud);
  const last = samples.findLastIndex(loud);
  if (first < 0) throw new Error(`flite -voice ${voice} said nothing for "${text}"`);
  const pad = ms(SENTENCE_PAD_MS);
  const out = new Int16Array(last + 1 - first + 2 * pad);
  out.set(samples.subarray(first, last + 1), pad);
  return out;
}

/** Mono 16-bit PCM at 16 kHz to Ogg Opus, 20 ms packets. */
function encode(pcm: Int16Array, serial: number, options: string[]): Uint8Array {
  const raw = new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  const args = ['--quiet', '--raw', '--raw-rate', String(RATE), '--raw-chan', '1', '--raw-bits', '16'];
  // --serial: opusenc picks a random one otherwise; --padding 0: no 512 spare bytes of tags.
  args.push(...options, '--comp', '10', '--framesize', '20', '--serial', String(serial), '--padding', '0', '-', '-');
  return new Uint8Array(run('opusenc', args, raw));
}

function oggPackets(ogg: Uint8Array): Uint8Array[] {
  const demuxer = new OggOpusDemuxer();
  const packets = demuxer.push(ogg);
  if (demuxer.errors !== 0 || !demuxer.ended) throw new Error(`opusenc's output does not demux cleanly (${demuxer.errors} errors)`);
  return packets;
}

/** mulberry32: a small seeded generator, the same everywhere. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

// ---------------------------------------------------------------------------------------------
// The single-speaker sample.

interface Placed {
  text: string;
  /** Where the sentence (with its pads) sits in its track, in samples. */
  start: number;
  end: number;
}

/** Sentences one after another, SENTENCE_GAP_MS apart, starting at `start`. */
function lay(track: Int16Array[], texts: string[], voice: string, start: number, work: string): Placed[] {
  const placed: Placed[] = [];
  let at = start;
  for (const text of texts) {
    const pcm = synthesize(text, voice, work);
    track.push(pcm);
    placed.push({ text, start: at, end: at + pcm.length });
    at += pcm.length + ms(SENTENCE_GAP_MS);
  }
  return placed;
}

/** Concatenates `parts` placed at their positions into one track of `length` samples (rounded up to whole frames). */
function mix(parts: { pcm: Int16Array; at: number }[], length: number): Int16Array {
  const out = new Int16Array(Math.ceil(length / FRAME) * FRAME);
  for (const { pcm, at } of parts) out.set(pcm, at);
  return out;
}

function makeSpeech(work: string) {
  const parts: { pcm: Int16Array; at: number }[] = [];
  const pcms: Int16Array[] = [];
  const placed = lay(pcms, SPEECH.sentences, SPEECH.voice, ms(200), work);
  placed.forEach((p, i) => parts.push({ pcm: pcms[i]!, at: p.start }));
  const track = mix(parts, placed.at(-1)!.end + ms(300));
  const ogg = encode(track, 0x53504331 /* "SPC1" */, SPEECH.opusenc);
  const packets = oggPackets(ogg);
  return {
    ogg,
    entry: {
      voice: `flite ${SPEECH.voice}`,
      opusenc: SPEECH.opusenc.join(' '),
      durationMs: (track.length * 1000) / RATE,
      packets: packets.length,
      sentences: placed.map((p) => ({ text: p.text, startMs: (p.start * 1000) / RATE, endMs: (p.end * 1000) / RATE })),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The two-speaker capture.

interface Sent {
  speaker: Speaker;
  /** Index of the packet (20 ms frame) in its speaker's encoded track. */
  frame: number;
  payload: Uint8Array;
  /** When it left the sender and when the proxy received it, ms after the capture began. */
  sentAt: number;
  receivedAt: number;
}

function makeCapture(work: string) {
  // The timeline, in samples from the beginning of the capture (A's `start` event).
  const aPcms: Int16Array[] = [];
  const bPcms: Int16Array[] = [];
  const a1 = lay(aPcms, TURNS.a1, A.voice, ms(200), work);
  const b1 = lay(bPcms, TURNS.b1, B.voice, a1.at(-1)!.end - ms(OVERLAP_MS), work);
  const a2 = lay(aPcms, TURNS.a2, A.voice, b1.at(-1)!.end - ms(OVERLAP_MS), work);

  // Each participant's microphone track, encoded whole, as its client's encoder ran: A's from
  // the beginning, B's from when B unmuted (its first packet). Silence is encoded too; DTX
  // then leaves out the packets of A's long silence.
  const frameOf = (sample: number) => Math.floor(sample / FRAME);
  const aTurns = [a1, a2].map((turn, i) => ({ from: i === 0 ? 0 : frameOf(turn[0]!.start), to: frameOf(turn.at(-1)!.end) }));
  const bFrom = frameOf(b1[0]!.start) - DTX_LEAD_IN_MS / 20;
  const aTrack = mix([...a1, ...a2].map((p, i) => ({ pcm: aPcms[i]!, at: p.start })), a2.at(-1)!.end + ms(DTX_HANGOVER_MS));
  const bTrack = mix(b1.map((p, i) => ({ pcm: bPcms[i]!, at: p.start - bFrom * FRAME })), b1.at(-1)!.end - bFrom * FRAME + ms(DTX_HANGOVER_MS));
  const aPackets = oggPackets(encode(aTrack, 0x41414131, A.opusenc));
  const bPackets = oggPackets(encode(bTrack, 0x42424231, B.opusenc));

  // A transmits during its turns, plus DTX's hangover after and lead-in before each; nothing between.
  const hangover = DTX_HANGOVER_MS / 20;
  const leadIn = DTX_LEAD_IN_MS / 20;
  const aSends = (frame: number) => aTurns.some((t) => frame >= t.from - leadIn && frame < t.to + hangover);

  // Arrival: 20 ms of audio is captured, then crosses the network and the bridge. A seeded
  // latency of 6-19 ms, with now and then a 10-50 ms hiccup, and once a 240 ms stall on B's
  // path that delivers its queued packets in a burst. One WebSocket: nothing overtakes.
  const next = random(20260101);
  const stallFrame = Math.floor(bPackets.length / 2);
  const sent: Sent[] = [];
  const schedule = (speaker: Speaker, packets: Uint8Array[], startMs: number, sends: (frame: number) => boolean) => {
    let previous = 0;
    packets.forEach((payload, frame) => {
      if (!sends(frame)) return;
      const sentAt = startMs + 20 * (frame + 1);
      let latency = 6 + (next() % 14);
      if (next() % 100 < 6) latency += 10 + (next() % 41);
      if (speaker === B && frame >= stallFrame && frame < stallFrame + 12) latency += 240 - 20 * (frame - stallFrame);
      const receivedAt = Math.max(previous, sentAt + latency);
      previous = receivedAt;
      sent.push({ speaker, frame, payload, sentAt, receivedAt });
    });
  };
  schedule(A, aPackets, 0, aSends);
  schedule(B, bPackets, bFrom * 20, () => true);

  // In arrival order (ties: A first, then by frame), each frame numbered as the bridge does.
  sent.sort((x, y) => x.receivedAt - y.receivedAt || (x.speaker === y.speaker ? x.frame - y.frame : x.speaker === A ? -1 : 1));
  const tag = (s: Speaker) => `${s.endpointId}-${s.ssrc}`;
  const lines: string[] = [];
  let sequenceNumber = 0;
  let last = 0;
  const record = (receivedAt: number, frame: string) => {
    last = Math.max(last, receivedAt);
    lines.push(JSON.stringify({ timestamp: EPOCH_MS + last, direction: 'incoming', data: frame }));
  };
  const start = (s: Speaker, receivedAt: number) => {
    const body = { tag: tag(s), mediaFormat: { encoding: 'opus', sampleRate: 48000, channels: 2 }, customParameters: { endpointId: s.endpointId } };
    // The bridge's frames repeat the key `event`: written by hand, as JSON.stringify cannot.
    record(receivedAt, `{"event":"start","sequenceNumber":"${++sequenceNumber}","start":${JSON.stringify(body)},"event":"start"}`);
  };
  const chunks = new Map<Speaker, number>([
    [A, A.firstChunk],
    [B, B.firstChunk],
  ]);
  start(A, 0);
  let bStarted = false;
  for (const s of sent) {
    if (s.speaker === B && !bStarted) {
      start(B, s.receivedAt - 2);
      bStarted = true;
    }
    const chunk = chunks.get(s.speaker)!;
    chunks.set(s.speaker, chunk + 1);
    const media = {
      tag: tag(s.speaker),
      chunk: String(chunk),
      timestamp: String(s.speaker.firstTimestamp + 960 * s.frame),
      payload: Buffer.from(s.payload).toString('base64'),
    };
    record(s.receivedAt, `{"event":"media","sequenceNumber":"${++sequenceNumber}","media":${JSON.stringify(media)},"event":"media"}`);
  }

  const toMs = (sample: number) => (sample * 1000) / RATE;
  const speakers = [A, B].map((speaker) => {
    const mine = sent.filter((s) => s.speaker === speaker);
    const gaps = [];
    for (let i = 1; i < mine.length; i++) {
      const frames = mine[i]!.frame - mine[i - 1]!.frame - 1;
      if (frames > 0) gaps.push({ afterChunk: speaker.firstChunk + i - 1, frames, ms: frames * 20, fromMs: mine[i - 1]!.sentAt, toMs: mine[i]!.sentAt - 20 });
    }
    const turns = speaker === A ? [a1, a2] : [b1];
    return {
      tag: tag(speaker),
      endpointId: speaker.endpointId,
      voice: `flite ${speaker.voice}`,
      opusenc: speaker.opusenc.join(' '),
      packets: mine.length,
      firstReceivedMs: mine[0]!.receivedAt,
      lastReceivedMs: mine.at(-1)!.receivedAt,
      turns: turns.map((turn) => ({
        startMs: toMs(turn[0]!.start),
        endMs: toMs(turn.at(-1)!.end),
        sentences: turn.map((p) => p.text),
      })),
      dtxGaps: gaps,
    };
  });
  const receivedAts = sent.map((s) => s.receivedAt);
  return {
    jsonl: `${lines.join('\n')}\n`,
    entry: {
      format: 'one JSON record per line: {"timestamp":<epoch ms received>,"direction":"incoming","data":"<the WebSocket text frame, verbatim>"}',
      records: lines.length,
      epochMs: EPOCH_MS,
      durationMs: Math.max(...receivedAts),
      speakers,
    },
  };
}

// ---------------------------------------------------------------------------------------------

/** Makes every fixture into `root` (the repository, or a temporary directory). */
function makeFixtures(root: string): Record<string, Uint8Array> {
  const work = mkdtempSync(join(tmpdir(), 'make-fixtures-'));
  try {
    const speech = makeSpeech(work);
    const capture = makeCapture(work);
    const manifest = {
      about: 'Made by scripts/make-fixtures.ts (npm run fixtures); do not edit by hand. Sentences: Harvard sentences (IEEE 1969).',
      tools: toolVersions(),
      [OUTPUTS.speech]: speech.entry,
      [OUTPUTS.capture]: capture.entry,
    };
    const files: Record<string, Uint8Array> = {
      [OUTPUTS.speech]: speech.ogg,
      [OUTPUTS.capture]: new TextEncoder().encode(capture.jsonl),
      [OUTPUTS.manifest]: new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`),
    };
    for (const [name, bytes] of Object.entries(files)) {
      mkdirSync(dirname(join(root, name)), { recursive: true });
      writeFileSync(join(root, name), bytes);
    }
    return files;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * libopus's float encoder picks SIMD code paths by CPU at run time (SSE4.1, AVX2, ...) and
 * those round differently, so the same PCM gives a handful of different bytes on another
 * machine's CPU. That is not a change of the fixture: the PCM (flite's, laid out here), the
 * manifest, the timeline and every packet's mode (its TOC byte) must still be identical, and
 * only a few packets' contents may differ. Returns how many differ, or undefined when the
 * files really differ.
 */
function encoderRounding(name: string, committed: Uint8Array, made: Uint8Array): string | undefined {
  const packetsOf = (bytes: Uint8Array): Uint8Array[] | undefined => {
    if (name.endsWith('.ogg')) return oggPackets(bytes);
    if (!name.endsWith('.jsonl')) return undefined;
    return new TextDecoder()
      .decode(bytes)
      .trim()
      .split('\n')
      .map((line) => JSON.parse((JSON.parse(line) as { data: string }).data) as { media?: { payload: string } })
      .filter((event) => event.media !== undefined)
      .map((event) => Uint8Array.from(Buffer.from(event.media!.payload, 'base64')));
  };
  // Everything but the packets' bytes must match exactly: blank the payloads and compare.
  const skeleton = (bytes: Uint8Array) =>
    name.endsWith('.jsonl') ? new TextDecoder().decode(bytes).replace(/\\"payload\\":\\"[^\\]*\\"/g, '') : '';
  const before = packetsOf(committed);
  const after = packetsOf(made);
  if (before === undefined || after === undefined || before.length !== after.length) return undefined;
  if (skeleton(committed) !== skeleton(made)) return undefined;
  let differing = 0;
  for (let i = 0; i < before.length; i++) {
    if (before[i]![0] !== after[i]![0]) return undefined;
    if (sha256(before[i]!) !== sha256(after[i]!)) differing++;
  }
  return differing <= before.length * MAX_ROUNDED_SHARE ? `${differing} of ${before.length} packets` : undefined;
}

/** More packets than this share differing is a real change of the audio, not rounding. */
const MAX_ROUNDED_SHARE = 0.05;

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function main(): number {
  const check = process.argv.includes('--check');
  const missing = missingTools();
  if (missing.length > 0) {
    const why = `${missing.join(' and ')} not installed (apt-get install flite opus-tools)`;
    if (check) {
      console.log(`make-fixtures --check: skipped, ${why}`);
      return 0;
    }
    console.error(`make-fixtures: ${why}`);
    return 1;
  }
  if (!check) {
    for (const [name, bytes] of Object.entries(makeFixtures(ROOT))) console.log(`${name}: ${bytes.length} bytes, sha256 ${sha256(bytes)}`);
    return 0;
  }
  const temporary = mkdtempSync(join(tmpdir(), 'fixtures-check-'));
  try {
    const made = makeFixtures(temporary);
    const rounded: string[] = [];
    const differ = Object.entries(made).filter(([name, bytes]) => {
      let committed: Uint8Array;
      try {
        committed = readFileSync(join(ROOT, name));
      } catch {
        return true;
      }
      if (sha256(committed) === sha256(bytes)) return false;
      const rounding = encoderRounding(name, committed, bytes);
      if (rounding === undefined) return true;
      rounded.push(`${name} (${rounding})`);
      return false;
    });
    if (differ.length > 0) {
      const tools = toolVersions();
      console.error(`make-fixtures --check: regenerating gives different bytes for ${differ.map(([name]) => name).join(', ')}`);
      console.error(`  (made with flite ${tools.flite}, ${tools.opusenc}; the manifest names the tools the committed files came from;`);
      console.error('   run `npm run fixtures` and commit the result if the change is intended)');
      return 1;
    }
    const exact = Object.keys(made).filter((name) => !rounded.some((r) => r.startsWith(`${name} `)));
    console.log(`make-fixtures --check: ${exact.join(', ')} regenerate byte for byte`);
    if (rounded.length > 0) console.log(`make-fixtures --check: equal up to the Opus encoder's CPU-dependent rounding: ${rounded.join('; ')}`);
    return 0;
  } finally {
    rmSync(temporary, { recursive: true, force: true });
  }
}

process.exitCode = main();
