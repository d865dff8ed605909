/**
 * Raw Opus packets into an Ogg Opus stream (RFC 3533 pages, RFC 7845 headers), several packets
 * per page: for a provider that takes a container, one upstream message then carries a batch
 * of audio instead of one 20 ms packet, and a raw packet's boundaries survive the byte stream.
 *
 * Hand-written: it is the demuxer's CRC plus a header per page; the Ogg writers on npm are
 * bindings to native libogg or browser recorders.
 */
import { crc32 } from './ogg.ts';

const HEADER_BYTES = 27;
const MAX_SEGMENTS = 255;
const BEGINNING_OF_STREAM = 0x02;
const VENDOR = new TextEncoder().encode('opus-transcriber-proxy');

export class OggOpusWriter {
  /** OpusHead and OpusTags, each on its own page (RFC 7845 §3): what a decoder needs first. */
  readonly headerPages: Uint8Array;
  private sequence = 0;
  /** 48 kHz samples of the packets written so far: the next page's granule position. */
  private granule = 0;
  private readonly packets: Uint8Array[] = [];
  private pendingSamples = 0;

  constructor(private readonly serial: number) {
    this.headerPages = concat([this.page([opusHead()], 0, BEGINNING_OF_STREAM), this.page([opusTags()], 0, 0)]);
  }

  /** Audio gathered for the next page, in 48 kHz samples. */
  get pending(): number {
    return this.pendingSamples;
  }

  /** Keeps `packet` (not a copy: the caller must not change it) for the next page; `samples` is its duration at 48 kHz. */
  add(packet: Uint8Array, samples: number): void {
    this.packets.push(packet);
    this.pendingSamples += samples;
  }

  /** What was gathered, as one or more whole pages (more only past 255 lacing values), or undefined. */
  take(): Uint8Array | undefined {
    if (this.packets.length === 0) return undefined;
    this.granule += this.pendingSamples;
    const pages: Uint8Array[] = [];
    let from = 0;
    let segments = 0;
    for (let i = 0; i < this.packets.length; i++) {
      const needs = Math.floor(this.packets[i]!.length / 255) + 1;
      if (segments + needs > MAX_SEGMENTS && i > from) {
        // Granule positions are only exact at the last page; an earlier one ends mid-batch, which decoders accept as an estimate.
        pages.push(this.page(this.packets.slice(from, i), this.granule, 0));
        from = i;
        segments = 0;
      }
      segments += needs;
    }
    pages.push(this.page(this.packets.slice(from), this.granule, 0));
    this.packets.length = 0;
    this.pendingSamples = 0;
    return pages.length === 1 ? pages[0] : concat(pages);
  }

  private page(packets: readonly Uint8Array[], granule: number, flags: number): Uint8Array {
    let segments = 0;
    let body = 0;
    for (const p of packets) {
      segments += Math.floor(p.length / 255) + 1;
      body += p.length;
    }
    const page = new Uint8Array(HEADER_BYTES + segments + body);
    const view = new DataView(page.buffer);
    page.set([0x4f, 0x67, 0x67, 0x53]); // "OggS"; version 0
    page[5] = flags;
    view.setBigUint64(6, BigInt(granule), true);
    view.setUint32(14, this.serial, true);
    view.setUint32(18, this.sequence++, true);
    page[26] = segments;
    let lacing = HEADER_BYTES;
    let at = HEADER_BYTES + segments;
    for (const p of packets) {
      for (let left = p.length; left >= 255; left -= 255) page[lacing++] = 255;
      page[lacing++] = p.length % 255;
      page.set(p, at);
      at += p.length;
    }
    view.setUint32(22, crc32(0, page, 0, page.length) >>> 0, true);
    return page;
  }
}

/** RFC 7845 §5.1, mono, no pre-skip: the packets come from the middle of a live stream, and the provider's times must count from its first sample. */
function opusHead(): Uint8Array {
  const head = new Uint8Array(19);
  head.set(new TextEncoder().encode('OpusHead'));
  head[8] = 1; // version
  head[9] = 1; // channels
  new DataView(head.buffer).setUint32(12, 48000, true);
  return head;
}

/** RFC 7845 §5.2: the vendor string and no comments. */
function opusTags(): Uint8Array {
  const tags = new Uint8Array(8 + 4 + VENDOR.length + 4);
  tags.set(new TextEncoder().encode('OpusTags'));
  new DataView(tags.buffer).setUint32(8, VENDOR.length, true);
  tags.set(VENDOR, 12);
  return tags;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
