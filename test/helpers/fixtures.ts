/**
 * The shared real-traffic fixtures (../shared/fixtures beside the checkout; see its
 * README.md), read in place, never copied into the project.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const FIXTURES = new URL('../../../shared/fixtures/', import.meta.url);

export function fixturePath(name: string): string {
  return fileURLToPath(new URL(name, FIXTURES));
}

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

/** jvb-two-speakers.jsonl, parsed: 2 start and 2,125 media records, in order. */
export function readJvbCapture(name = 'jvb-two-speakers.jsonl'): JvbRecord[] {
  const lines = readFileSync(fixturePath(name), 'utf8').split('\n').filter((line) => line.length > 0);
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

/** The capture's Opus packets per tag, in arrival order. */
export function jvbPacketsByTag(records = readJvbCapture()): Map<string, Uint8Array[]> {
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
 * The packets of a single-stream Ogg Opus file: a minimal page walk (RFC 3533, CRC
 * checked) for tests. The product's streaming demuxer lives in src/codec/ogg.ts.
 */
export function readOggOpus(path = fixturePath('speech-10s.ogg')): OggOpus {
  const file = new Uint8Array(readFileSync(path));
  const name = path;
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
