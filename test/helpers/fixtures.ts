/**
 * The audio fixtures of the tests and benchmarks: one API for both kinds.
 *
 * The repository's own, always there (made by scripts/make-fixtures.ts from synthesized
 * English sentences; test/fixtures/manifest.json says what is said, by whom and when):
 *   - readCapture(): test/fixtures/two-speakers.jsonl, a Jitsi Videobridge-like capture of two
 *     participants taking turns, in the shared real capture's exact format;
 *   - readOggOpus(): samples/speech.ogg, one speaker, Ogg Opus (the sample users stream);
 *   - manifest: the sentences and the capture's figures.
 *
 * The shared real traffic (../shared/fixtures beside the checkout; see its README.md), read in
 * place and never copied into the project, is an extra that a fresh clone lacks: tests on it
 * go behind `sharedFixtures.availableFor(import.meta.url, what)` (which prints one line
 * saying why they skip) and take their paths from sharedFixture(name).
 */
import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT_URL = new URL('../../', import.meta.url);
const ROOT = fileURLToPath(ROOT_URL);
const repoPath = (path: string) => fileURLToPath(new URL(path, ROOT_URL));

/** test/fixtures/two-speakers.jsonl */
export const CAPTURE_PATH = repoPath('test/fixtures/two-speakers.jsonl');
/** samples/speech.ogg */
export const SPEECH_OGG_PATH = repoPath('samples/speech.ogg');

interface ManifestFile {
  'samples/speech.ogg': {
    voice: string;
    opusenc: string;
    durationMs: number;
    packets: number;
    sentences: { text: string; startMs: number; endMs: number }[];
  };
  'test/fixtures/two-speakers.jsonl': {
    records: number;
    epochMs: number;
    durationMs: number;
    speakers: {
      tag: string;
      endpointId: string;
      voice: string;
      opusenc: string;
      packets: number;
      firstReceivedMs: number;
      lastReceivedMs: number;
      turns: { startMs: number; endMs: number; sentences: string[] }[];
      /** Stretches of discontinuous transmission: no packets, `chunk` contiguous, the RTP timestamp jumps. */
      dtxGaps: { afterChunk: number; frames: number; ms: number; fromMs: number; toMs: number }[];
    }[];
  };
}

const manifestFile = JSON.parse(readFileSync(repoPath('test/fixtures/manifest.json'), 'utf8')) as ManifestFile;

/** What the repository's fixtures say, and their figures (test/fixtures/manifest.json). */
export const manifest = {
  speech: manifestFile['samples/speech.ogg'],
  capture: manifestFile['test/fixtures/two-speakers.jsonl'],
};

// ---------------------------------------------------------------------------------------------
// The shared real traffic, when it is beside the checkout.

const SHARED_DIR = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));

/** The shared fixtures' files. */
export type SharedFixture = 'jvb-two-speakers.jsonl' | 'speech-10s.ogg';
const SHARED_FILES: readonly SharedFixture[] = ['jvb-two-speakers.jsonl', 'speech-10s.ogg'];

export const sharedFixtures = {
  dir: SHARED_DIR,
  /** Both files are there (a fresh clone has no ../shared). */
  available: SHARED_FILES.every((name) => existsSync(`${SHARED_DIR}${name}`)),
  /**
   * For a test file's `describe.skipIf(!shared)`: whether the shared fixtures are there; when
   * they are not, prints one line naming the file, what it skips and why.
   */
  availableFor(testFile: string, what: string): boolean {
    if (!this.available) skipNote(testFile, what, '../shared/fixtures is not beside this checkout');
    return this.available;
  },
};

/** The path of a shared fixture; throws when the shared fixtures are not there. */
export function sharedFixture(name: SharedFixture): string {
  if (!sharedFixtures.available) throw new Error(`${name}: the shared fixtures are not beside this checkout (${SHARED_DIR})`);
  return `${SHARED_DIR}${name}`;
}

/**
 * For benchmarks: the shared real traffic when it is beside the checkout (so that figures
 * compare with earlier runs), else the repository's fixtures. Says on stderr which.
 */
export function benchFixtures(): { capture: string; speech: string } {
  const files = sharedFixtures.available
    ? { capture: sharedFixture('jvb-two-speakers.jsonl'), speech: sharedFixture('speech-10s.ogg') }
    : { capture: CAPTURE_PATH, speech: SPEECH_OGG_PATH };
  process.stderr.write(`fixtures: ${relative(ROOT, files.capture)} and ${relative(ROOT, files.speech)}\n`);
  return files;
}

/** One line on stdout, outside vitest's per-test console capture: why `what` in `testFile` is skipped. */
export function skipNote(testFile: string, what: string, why: string): void {
  const file = relative(ROOT, testFile.startsWith('file:') ? fileURLToPath(testFile) : testFile);
  process.stdout.write(`skipping ${what} (${file}): ${why}\n`);
}

// ---------------------------------------------------------------------------------------------
// Captures: a media server's frames, as the proxy received them.

interface JvbCommon {
  /** When the proxy received the frame (epoch ms). */
  receivedAt: number;
  sequenceNumber: number;
  tag: string;
  /** The WebSocket text frame, verbatim (for replaying it). */
  data: string;
}

export interface JvbStart extends JvbCommon {
  event: 'start';
  encoding: string;
  sampleRate: number;
  channels: number;
}

export interface JvbMedia extends JvbCommon {
  event: 'media';
  chunk: number;
  timestamp: number;
  /** One Opus packet. */
  payload: Uint8Array;
}

export type JvbRecord = JvbStart | JvbMedia;

/** A capture in the Videobridge JSON-lines format, parsed, in order: by default the repository's. */
export function readCapture(path = CAPTURE_PATH): JvbRecord[] {
  const name = relative(ROOT, path);
  const lines = readFileSync(path, 'utf8').split('\n').filter((line) => line.length > 0);
  return lines.map((line, index) => {
    const { timestamp, data } = JSON.parse(line) as { timestamp: number; data: string };
    const frame = JSON.parse(data) as Record<string, any>;
    const common = { receivedAt: timestamp, sequenceNumber: Number(frame.sequenceNumber), data };
    if (frame.event === 'start') {
      const format = frame.start.mediaFormat;
      return { event: 'start', ...common, tag: frame.start.tag, encoding: format.encoding, sampleRate: format.sampleRate, channels: format.channels };
    }
    if (frame.event === 'media') {
      const media = frame.media;
      return {
        event: 'media',
        ...common,
        tag: media.tag,
        chunk: Number(media.chunk),
        timestamp: Number(media.timestamp),
        payload: new Uint8Array(Buffer.from(media.payload, 'base64')),
      };
    }
    throw new Error(`${name}:${index + 1}: unexpected event ${String(frame.event)}`);
  });
}

/** The participants of a capture, in the order of their `start` events: tag and endpoint id. */
export function captureParticipants(records: readonly JvbRecord[]): { tag: string; id: string }[] {
  return records
    .filter((r): r is JvbStart => r.event === 'start')
    .map((r) => ({ tag: r.tag, id: (JSON.parse(r.data) as { start: { customParameters: { endpointId: string } } }).start.customParameters.endpointId }));
}

/** The capture's Opus packets per tag, in arrival order. */
export function packetsByTag(records = readCapture()): Map<string, Uint8Array[]> {
  const byTag = new Map<string, Uint8Array[]>();
  for (const record of records) {
    if (record.event !== 'media') continue;
    let packets = byTag.get(record.tag);
    if (packets === undefined) byTag.set(record.tag, (packets = []));
    packets.push(record.payload);
  }
  return byTag;
}

export interface OggOpus {
  channels: number;
  preSkip: number;
  inputSampleRate: number;
  /** Audio packets (OpusHead and OpusTags excluded), in order. */
  packets: Uint8Array[];
  /** Granule position of the last page: samples at 48 kHz including pre-skip. */
  finalGranule: bigint;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let bit = 0; bit < 8; bit++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    table[i] = r >>> 0;
  }
  return table;
})();

function oggCrc(page: Uint8Array): number {
  let crc = 0;
  for (let i = 0; i < page.length; i++) {
    const byte = i >= 22 && i < 26 ? 0 : page[i]; // the CRC field itself counts as zeros
    crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ byte) & 0xff]) >>> 0;
  }
  return crc;
}

/**
 * The packets of a single-stream Ogg Opus file (by default samples/speech.ogg): a minimal
 * page walk (RFC 3533, CRC checked) for tests. The product's streaming demuxer lives in
 * src/codec/ogg.ts.
 */
export function readOggOpus(path = SPEECH_OGG_PATH): OggOpus {
  const file = new Uint8Array(readFileSync(path));
  const name = relative(ROOT, path);
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const packets: Uint8Array[] = [];
  let partial: Uint8Array[] = [];
  let finalGranule = 0n;
  let offset = 0;
  while (offset < file.length) {
    if (view.getUint32(offset) !== 0x4f676753) throw new Error(`${name}: no Ogg page at byte ${offset}`);
    const segments = file[offset + 26];
    const lacing = file.subarray(offset + 27, offset + 27 + segments);
    let body = offset + 27 + segments;
    const pageEnd = body + lacing.reduce((sum, n) => sum + n, 0);
    if (oggCrc(file.subarray(offset, pageEnd)) !== view.getUint32(offset + 22, true)) {
      throw new Error(`${name}: bad CRC in the page at byte ${offset}`);
    }
    finalGranule = view.getBigInt64(offset + 6, true);
    for (const size of lacing) {
      partial.push(file.subarray(body, body + size));
      body += size;
      if (size < 255) {
        const packet = new Uint8Array(partial.reduce((sum, p) => sum + p.length, 0));
        let at = 0;
        for (const part of partial) packet.set(part, (at += part.length) - part.length);
        packets.push(packet);
        partial = [];
      }
    }
    offset = pageEnd;
  }
  const [head, tags, ...audio] = packets;
  const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes?.subarray(0, 8));
  if (text(head) !== 'OpusHead' || text(tags) !== 'OpusTags') throw new Error(`${name}: not an Ogg Opus file`);
  const headView = new DataView(head.buffer, head.byteOffset, head.byteLength);
  return {
    channels: head[9],
    preSkip: headView.getUint16(10, true),
    inputSampleRate: headView.getUint32(12, true),
    packets: audio,
    finalGranule,
  };
}
