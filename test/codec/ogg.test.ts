import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { OGG_MAX_PAGE_SIZE, OggOpusDemuxer, isOggStart, type OggErrorReason, type OggPageKind } from '../../src/codec/ogg.ts';
import { SPEECH_OGG_PATH, manifest, readOggOpus, sharedFixture, sharedFixtures } from '../helpers/fixtures.ts';

// ---------------------------------------------------------------------------------------------
// Independent reference: a straightforward whole-buffer walk (bitwise CRC, no table, no streaming).

function crcBitwise(page: Uint8Array): number {
  let crc = 0;
  for (let i = 0; i < page.length; i++) {
    crc ^= (i >= 22 && i < 26 ? 0 : page[i]) << 24;
    for (let k = 0; k < 8; k++) crc = crc & 0x80000000 ? (crc << 1) ^ 0x04c11db7 : crc << 1;
  }
  return crc >>> 0;
}

interface RefPage {
  offset: number;
  length: number;
  flags: number;
  seq: number;
  granule: bigint;
  /** Packets completed on this page (with their beginnings from earlier pages). */
  packets: Uint8Array[];
}

function walk(data: Uint8Array): RefPage[] {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const pages: RefPage[] = [];
  let partial: number[] | null = null;
  let off = 0;
  while (off + 27 <= data.length) {
    if (String.fromCharCode(...data.subarray(off, off + 4)) !== 'OggS') throw new Error(`no page at ${off}`);
    const nseg = data[off + 26];
    const lacing = [...data.subarray(off + 27, off + 27 + nseg)];
    const length = 27 + nseg + lacing.reduce((a, b) => a + b, 0);
    if (crcBitwise(data.subarray(off, off + length)) !== dv.getUint32(off + 22, true)) throw new Error(`bad crc at ${off}`);
    const flags = data[off + 5];
    const page: RefPage = { offset: off, length, flags, seq: dv.getUint32(off + 18, true), granule: dv.getBigInt64(off + 6, true), packets: [] };
    // A continued page without the beginning of its packet (joined mid-way) discards the fragment.
    let cur: number[] | null = flags & 1 ? partial : [];
    let body = off + 27 + nseg;
    for (const v of lacing) {
      if (cur) cur.push(...data.subarray(body, body + v));
      body += v;
      if (v < 255) {
        if (cur) page.packets.push(Uint8Array.from(cur));
        cur = [];
      }
    }
    partial = lacing.length > 0 && lacing[lacing.length - 1] === 255 ? cur : null;
    pages.push(page);
    off += length;
  }
  return pages;
}

const isHeaderPacket = (p: Uint8Array) => {
  const s = String.fromCharCode(...p.subarray(0, 8));
  return s === 'OpusHead' || s === 'OpusTags';
};
const audioOf = (pages: RefPage[]) => pages.flatMap((p) => p.packets).filter((p) => p.length > 0 && !isHeaderPacket(p));

// ---------------------------------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(n: number, seed: number): Uint8Array {
  const r = mulberry32(seed);
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  // No accidental capture pattern.
  for (let i = 0; i + 4 <= n; i++) if (b[i] === 0x4f && b[i + 1] === 0x67 && b[i + 2] === 0x67 && b[i + 3] === 0x53) b[i] = 0;
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Feed `data` in slices of the given sizes (cycled); returns all packets. */
function feed(d: OggOpusDemuxer, data: Uint8Array, size: number | (() => number) = data.length): Uint8Array[] {
  const out: Uint8Array[] = [];
  let off = 0;
  while (off < data.length) {
    const n = Math.max(1, typeof size === 'number' ? size : size());
    out.push(...d.push(data.subarray(off, off + n)));
    off += n;
  }
  return out;
}

interface RealFile {
  path: string;
  /** What its documentation says: the audio packets and, where documented, the pages. */
  packets: number;
  pages?: number;
}

/**
 * The demuxer on a whole Ogg Opus file as an encoder wrote it, sliced and corrupted every way.
 * Figures come from the reference walk of the same file: `before(k)` is the number of audio
 * packets completed before page k.
 */
function realFileSuite(file: () => RealFile): void {
  let FILE: Uint8Array;
  let REF: RefPage[];
  let REF_AUDIO: Uint8Array[];
  let WHOLE: Uint8Array[];
  let HEAD: ReturnType<typeof readOggOpus>;
  let LAST: RefPage;
  let before: (page: number) => number;

  beforeAll(() => {
    const { path } = file();
    FILE = new Uint8Array(readFileSync(path));
    REF = walk(FILE);
    REF_AUDIO = audioOf(REF);
    WHOLE = feed(new OggOpusDemuxer(), FILE);
    HEAD = readOggOpus(path);
    LAST = REF[REF.length - 1];
    before = (page) => audioOf(REF.slice(0, page)).length;
  });

  it('reference walk sees the documented structure, with enough pages for these tests', () => {
    const { packets, pages } = file();
    if (pages !== undefined) expect(REF.length).toBe(pages);
    expect(REF.length).toBeGreaterThanOrEqual(11);
    expect(REF_AUDIO.length).toBe(packets);
    expect(LAST.offset + LAST.length).toBe(FILE.length);
    // The audio pages hold whole packets: page k's packets are REF_AUDIO[before(k), before(k + 1)).
    expect(REF.every((page) => !(page.flags & 1))).toBe(true);
  });

  it('whole file: every packet equal to the reference walk, OpusHead parsed', () => {
    const d = new OggOpusDemuxer();
    const packets = d.push(FILE);
    expect(packets.length).toBe(REF_AUDIO.length);
    expect(packets).toEqual(REF_AUDIO);
    expect(d.head).toMatchObject({ version: 1, channels: HEAD.channels, preSkip: HEAD.preSkip, inputSampleRate: HEAD.inputSampleRate, outputGain: 0, mappingFamily: 0, streamCount: 1, coupledCount: 0 });
    expect(d.errors).toBe(0);
    expect(d.sequenceGaps).toBe(0);
    expect(d.granulePosition).toBe(Number(LAST.granule));
    expect(d.ended).toBe(true);
    expect(d.bufferedBytes).toBe(0);
    // Packets are independent copies, not views into the internal buffer.
    expect(packets.every((p) => p.byteOffset === 0 && p.buffer.byteLength === p.length)).toBe(true);
  });

  it('exposes the header pages (OpusHead + OpusTags pages) byte for byte', () => {
    const d = new OggOpusDemuxer();
    expect(d.headerPages).toBeUndefined();
    d.push(FILE.subarray(0, REF[1].offset + 10));
    expect(d.headerPages).toBeUndefined(); // OpusTags not complete yet
    d.push(FILE.subarray(REF[1].offset + 10));
    expect(d.headerPages).toEqual(FILE.subarray(0, REF[2].offset));
  });

  it('hands out verified pages with their kind when asked (pass-through)', () => {
    const pages: Array<[Uint8Array, OggPageKind]> = [];
    const d = new OggOpusDemuxer({ onPage: (p, k) => pages.push([p, k]) });
    feed(d, FILE, 200);
    expect(pages.length).toBe(REF.length);
    expect(concat(...pages.map((p) => p[0]))).toEqual(FILE);
    expect(pages.map((p) => p[1])).toEqual(['header', 'header', ...Array(REF.length - 2).fill('audio')]);
  });

  it.each([
    ['1-byte', 1],
    ['200-byte', 200],
    ['4096-byte', 4096],
  ])('%s slices give the same packets as whole', (_name, size) => {
    const d = new OggOpusDemuxer();
    const packets = feed(d, FILE, size);
    expect(packets).toEqual(WHOLE);
    expect(d.head?.preSkip).toBe(HEAD.preSkip);
    expect(d.errors).toBe(0);
  });

  it('random-size slices (seeded) give the same packets as whole', () => {
    for (const seed of [1, 2, 3, 42, 1234]) {
      const r = mulberry32(seed);
      const d = new OggOpusDemuxer();
      expect(feed(d, FILE, () => (r() < 0.1 ? 1 + ((r() * 8000) | 0) : (r() * 400) | 0))).toEqual(WHOLE);
      expect(d.errors).toBe(0);
    }
  });

  it('returns packets as soon as their page completes', () => {
    const d = new OggOpusDemuxer();
    expect(d.push(FILE.subarray(0, REF[3].offset - 1)).length).toBe(0); // the first audio page lacks its last byte
    expect(d.push(FILE.subarray(REF[3].offset - 1, REF[3].offset)).length).toBe(before(3) - before(2));
    expect(d.push(FILE.subarray(REF[3].offset, REF[4].offset)).length).toBe(before(4) - before(3));
  });

  it.each([
    ['whole', undefined],
    ['200-byte slices', 200],
  ])('corrupted byte in the middle page (%s): page skipped, errors=1, later pages still decoded', (_n, size) => {
    const bad = FILE.slice();
    bad[REF[6].offset + (REF[6].length >> 1)] ^= 0x55;
    const errs: Array<[OggErrorReason, number]> = [];
    const d = new OggOpusDemuxer({ onError: (r, o) => errs.push([r, o]) });
    const packets = feed(d, bad, size);
    const expected = [...REF_AUDIO.slice(0, before(6)), ...REF_AUDIO.slice(before(7))];
    expect(packets.length).toBe(REF_AUDIO.length - (before(7) - before(6)));
    expect(packets).toEqual(expected);
    expect(d.errors).toBe(1);
    expect(errs).toEqual([['bad-crc', REF[6].offset]]);
    expect(d.sequenceGaps).toBe(1);
  });

  it('corrupted version byte and corrupted segment table: each page skipped once', () => {
    const bad = FILE.slice();
    bad[REF[4].offset + 4] = 1; // version
    bad[REF[8].offset + 30] ^= 0xff; // a lacing value: the page length is wrong too
    const errs: OggErrorReason[] = [];
    const d = new OggOpusDemuxer({ onError: (r) => errs.push(r) });
    const packets = feed(d, bad, 333);
    expect(errs).toEqual(['bad-version', 'bad-crc']);
    expect(packets).toEqual([...REF_AUDIO.slice(0, before(4)), ...REF_AUDIO.slice(before(5), before(8)), ...REF_AUDIO.slice(before(9))]);
  });

  it('two consecutive corrupt pages count two errors', () => {
    const bad = FILE.slice();
    bad[REF[5].offset + (REF[5].length >> 1)] ^= 1;
    bad[REF[6].offset + (REF[6].length >> 1)] ^= 1;
    const d = new OggOpusDemuxer();
    const packets = d.push(bad);
    expect(d.errors).toBe(2);
    expect(packets).toEqual([...REF_AUDIO.slice(0, before(5)), ...REF_AUDIO.slice(before(7))]);
  });

  it('garbage prefix and garbage between pages are skipped and counted once per run', () => {
    const errs: Array<[OggErrorReason, number]> = [];
    const d = new OggOpusDemuxer({ onError: (r, o) => errs.push([r, o]) });
    const junk = randomBytes(5000, 7);
    const data = concat(junk, FILE.subarray(0, REF[5].offset), randomBytes(777, 8), FILE.subarray(REF[5].offset));
    const packets = feed(d, data, 200);
    expect(packets).toEqual(REF_AUDIO);
    expect(d.head?.channels).toBe(HEAD.channels);
    expect(d.errors).toBe(2);
    expect(errs).toEqual([
      ['garbage', 0],
      ['garbage', 5000 + REF[5].offset],
    ]);
    // A prefix that ends in a partial "OggS" does not lose the real page.
    const d2 = new OggOpusDemuxer();
    expect(feed(d2, concat(new Uint8Array([1, 2, 0x4f, 0x67]), FILE), 3)).toEqual(REF_AUDIO);
    expect(d2.errors).toBe(1);
  });

  it('truncated file: no crash, no partial packet, the rest is held', () => {
    const held = LAST.length >> 1;
    const cut = LAST.offset + held;
    for (const size of [cut, 200, 1]) {
      const d = new OggOpusDemuxer();
      const packets = feed(d, FILE.subarray(0, cut), size);
      expect(packets).toEqual(REF_AUDIO.slice(0, before(REF.length - 1)));
      expect(d.errors).toBe(0);
      expect(d.bufferedBytes).toBe(held);
    }
  });

  it('truncated page followed by a new stream: the cut page is rejected, the new stream decoded', () => {
    const d = new OggOpusDemuxer();
    const packets = feed(d, concat(FILE.subarray(0, REF[7].offset + (REF[7].length >> 1)), FILE), 500);
    expect(d.errors).toBe(1);
    expect(packets).toEqual([...REF_AUDIO.slice(0, before(7)), ...REF_AUDIO]);
    expect(d.head?.preSkip).toBe(HEAD.preSkip);
    expect(d.headerPages).toEqual(FILE.subarray(0, REF[2].offset));
  });

  it('joining mid-way at the 5th page yields the packets of the 5th page on', () => {
    const d = new OggOpusDemuxer();
    const packets = feed(d, FILE.subarray(REF[4].offset), 200);
    expect(packets.length).toBe(REF_AUDIO.length - before(4));
    expect(packets).toEqual(REF_AUDIO.slice(before(4)));
    expect(d.head).toBeUndefined();
    expect(d.headerPages).toBeUndefined();
    expect(d.errors).toBe(0);
  });

  it('joining in the middle of a page: junk counted once, decoding resumes at the next page', () => {
    const d = new OggOpusDemuxer();
    const packets = feed(d, FILE.subarray(REF[4].offset + 100), 200);
    expect(packets).toEqual(REF_AUDIO.slice(before(5)));
    expect(d.errors).toBe(1);
  });

  it('joining at the OpusTags page does not emit OpusTags as audio', () => {
    const kinds: OggPageKind[] = [];
    const d = new OggOpusDemuxer({ onPage: (_p, k) => kinds.push(k) });
    expect(d.push(FILE.subarray(REF[1].offset))).toEqual(REF_AUDIO);
    expect(kinds.slice(0, 2)).toEqual(['header', 'audio']);
    expect(d.headerPages).toBeUndefined(); // incomplete without OpusHead
  });

  it('keeps its buffer bounded under megabytes of garbage, then still decodes', () => {
    const junk = randomBytes(4 << 20, 99);
    const d = new OggOpusDemuxer();
    expect(feed(d, junk, 65536)).toEqual([]);
    expect(d.bufferedBytes).toBeLessThan(4);
    expect(d.bufferCapacity).toBeLessThanOrEqual(131072);
    expect(d.push(junk)).toEqual([]); // one huge push
    expect(d.bufferCapacity).toBeLessThanOrEqual(131072);
    expect(d.errors).toBe(1);
    expect(d.push(FILE)).toEqual(REF_AUDIO);
  });

  it('a fake page header claiming a maximum-size page is bounded and rejected', () => {
    const fake = new Uint8Array(27 + 255);
    fake.set([0x4f, 0x67, 0x67, 0x53, 0, 0]);
    fake[26] = 255;
    fake.fill(255, 27);
    const d = new OggOpusDemuxer();
    const data = concat(fake, randomBytes(OGG_MAX_PAGE_SIZE, 5), FILE);
    expect(feed(d, data, 1000)).toEqual(REF_AUDIO);
    expect(d.bufferCapacity).toBeLessThanOrEqual(131072);
    expect(d.errors).toBe(1);
  });

  it('reset() forgets everything', () => {
    const d = new OggOpusDemuxer();
    d.push(FILE.subarray(0, REF[5].offset + 77));
    d.reset();
    expect(d.head).toBeUndefined();
    expect(d.bufferedBytes).toBe(0);
    expect(d.push(FILE)).toEqual(REF_AUDIO);
    expect(d.errors).toBe(0);
  });

  it('isOggStart sniffs the capture pattern', () => {
    expect(isOggStart(FILE)).toBe(true);
    expect(isOggStart(FILE.subarray(1))).toBe(false);
    expect(isOggStart(new Uint8Array([0x4f, 0x67, 0x67]))).toBe(false);
    expect(isOggStart(new TextEncoder().encode('OggS'))).toBe(true);
  });
}

describe('OggOpusDemuxer on samples/speech.ogg', () => {
  realFileSuite(() => ({ path: SPEECH_OGG_PATH, packets: manifest.speech.packets }));
});

// A file from another encoder (the Opus codec site's speech sample), when the shared fixtures are there.
const shared = sharedFixtures.availableFor(import.meta.url, 'the demuxer tests on the shared speech-10s.ogg');
describe.skipIf(!shared)('OggOpusDemuxer on the shared speech-10s.ogg', () => {
  realFileSuite(() => ({ path: sharedFixture('speech-10s.ogg'), packets: 541, pages: 13 }));
});

// ---------------------------------------------------------------------------------------------
// Synthetic streams: packets spanning pages, multi-page OpusTags, lost continuation pages.

function makePage(flags: number, granule: number, serial: number, seq: number, lacing: number[], body: Uint8Array): Uint8Array {
  const page = new Uint8Array(27 + lacing.length + body.length);
  const dv = new DataView(page.buffer);
  page.set([0x4f, 0x67, 0x67, 0x53, 0, flags]);
  dv.setBigInt64(6, BigInt(granule), true);
  dv.setUint32(14, serial, true);
  dv.setUint32(18, seq, true);
  page[26] = lacing.length;
  page.set(lacing, 27);
  page.set(body, 27 + lacing.length);
  dv.setUint32(22, crcBitwise(page), true);
  return page;
}

/** Each group of packets starts on a fresh page; at most `segs` lacing values per page. */
function makeStream(groups: Uint8Array[][], segs: number, serial = 0x1234): Uint8Array[] {
  const pages: Uint8Array[] = [];
  let seq = 0;
  groups.forEach((packets, gi) => {
    let lacing: number[] = [];
    let body: number[] = [];
    let continued = false;
    const flush = (nextContinued: boolean) => {
      const flags = (continued ? 1 : 0) | (seq === 0 ? 2 : 0);
      pages.push(makePage(flags, gi < 2 ? 0 : seq * 960, serial, seq++, lacing, Uint8Array.from(body)));
      lacing = [];
      body = [];
      continued = nextContinued;
    };
    for (const p of packets) {
      const vals = [...Array(Math.floor(p.length / 255)).fill(255), p.length % 255];
      let o = 0;
      vals.forEach((v, vi) => {
        if (lacing.length === segs) flush(vi > 0);
        lacing.push(v);
        body.push(...p.subarray(o, o + v));
        o += v;
      });
    }
    if (lacing.length) flush(false);
  });
  // EOS on the last page.
  const last = pages[pages.length - 1];
  const fixed = makePage(last[5] | 4, Number(new DataView(last.buffer).getBigInt64(6, true)), serial, seq - 1, [...last.subarray(27, 27 + last[26])], last.subarray(27 + last[26]));
  pages[pages.length - 1] = fixed;
  return pages;
}

function opusHead(channels: number, preSkip: number, gain: number): Uint8Array {
  const b = new Uint8Array(19);
  const dv = new DataView(b.buffer);
  b.set(new TextEncoder().encode('OpusHead'));
  b[8] = 1;
  b[9] = channels;
  dv.setUint16(10, preSkip, true);
  dv.setUint32(12, 16000, true);
  dv.setInt16(16, gain, true);
  return b;
}

describe('OggOpusDemuxer on synthetic streams', () => {
  const rnd = mulberry32(77);
  const tags = concat(new TextEncoder().encode('OpusTags'), randomBytes(1200, 3));
  const sizes = [100, 700, 255, 510, 30, 1, 2000, 254, 256, 60, 61, 62, 3000, 5];
  const audio = sizes.map((n) => {
    const p = new Uint8Array(n);
    for (let i = 0; i < n; i++) p[i] = (rnd() * 256) | 0;
    p[0] = 0xfc; // a plausible TOC byte
    return p;
  });
  const pages = makeStream([[opusHead(2, 3840, -256)], [tags], audio], 4);
  const stream = concat(...pages);
  const tagsPageCount = Math.ceil((Math.floor(tags.length / 255) + 1) / 4);

  it('the construction really spans packets across pages', () => {
    const ref = walk(stream);
    expect(ref.some((p) => p.flags & 1)).toBe(true);
    expect(audioOf(ref)).toEqual(audio);
    expect(tagsPageCount).toBeGreaterThan(1);
  });

  it('reassembles packets spanning pages, skips a multi-page OpusTags, exposes all header pages', () => {
    for (const size of [stream.length, 1, 17, 300]) {
      const kinds: OggPageKind[] = [];
      const d = new OggOpusDemuxer({ onPage: (_p, k) => kinds.push(k) });
      expect(feed(d, stream, size)).toEqual(audio);
      expect(d.head).toMatchObject({ channels: 2, preSkip: 3840, outputGain: -256, inputSampleRate: 16000, coupledCount: 1 });
      expect(d.headerPages).toEqual(concat(...pages.slice(0, 1 + tagsPageCount)));
      expect(kinds.filter((k) => k === 'header').length).toBe(1 + tagsPageCount);
      expect(d.errors).toBe(0);
      expect(d.ended).toBe(true);
    }
  });

  it('joining on a continued page discards the leading fragment', () => {
    const ref = walk(stream);
    const i = ref.findIndex((p, k) => k > 1 + tagsPageCount && p.flags & 1 && p.packets.length > 1);
    const d = new OggOpusDemuxer();
    const got = feed(d, stream.subarray(ref[i].offset), 100);
    // The packet that began before page i is gone; those that begin on or after it survive.
    expect(got).toEqual(audioOf(walk(stream.subarray(ref[i].offset))));
    const begun = audio.findIndex((p) => p.length === ref[i].packets[0].length);
    expect(got).toEqual(audio.slice(begun + 1));
    expect(d.errors).toBe(0);
  });

  /** A page that holds only a middle fragment of a packet, and the packet it belongs to. */
  function middlePage(): { index: number; lost: number } {
    const ref = walk(stream);
    const index = ref.findIndex((p, k) => k > 1 + tagsPageCount && p.flags & 1 && p.packets.length === 0);
    const lost = audio.findIndex((p) => p.length === ref[index + 1].packets[0].length);
    expect(audio[lost].length).toBeGreaterThan(4 * 255);
    return { index, lost };
  }

  it('a lost page inside a spanning packet drops only that packet', () => {
    const { index, lost } = middlePage();
    const d = new OggOpusDemuxer();
    const got = d.push(concat(...pages.slice(0, index), ...pages.slice(index + 1)));
    expect(got).toEqual(audio.filter((_p, k) => k !== lost));
    expect(d.sequenceGaps).toBe(1);
    expect(d.errors).toBe(0);
  });

  it('a corrupt page inside a spanning packet drops only that packet and counts one error', () => {
    const { index, lost } = middlePage();
    const bad = stream.slice();
    bad[walk(stream)[index].offset + 40] ^= 1;
    const d = new OggOpusDemuxer();
    expect(feed(d, bad, 64)).toEqual(audio.filter((_p, k) => k !== lost));
    expect(d.errors).toBe(1);
  });

  it('a BOS with a non-Opus first packet is reported, later packets still returned', () => {
    const errs: OggErrorReason[] = [];
    const s2 = concat(...makeStream([[new TextEncoder().encode('\x01vorbis.......')], audio.slice(0, 3)], 255, 9));
    const d = new OggOpusDemuxer({ onError: (r) => errs.push(r) });
    expect(d.push(s2)).toEqual(audio.slice(0, 3));
    expect(errs).toEqual(['bad-head']);
    expect(d.head).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// OpusHead fields and limits (RFC 7845 §5.1, §6), stream state, reset.

/** An OpusHead of any shape: `family` ≠ 0 adds stream count, coupled count and `mapping`. */
function head(o: { version?: number; channels: number; family?: number; streams?: number; coupled?: number; mapping?: number[]; preSkip?: number; rate?: number; gain?: number }): Uint8Array {
  const family = o.family ?? 0;
  const b = new Uint8Array(family === 0 ? 19 : 21 + (o.mapping?.length ?? 0));
  const dv = new DataView(b.buffer);
  b.set(new TextEncoder().encode('OpusHead'));
  b[8] = o.version ?? 1;
  b[9] = o.channels;
  dv.setUint16(10, o.preSkip ?? 312, true);
  dv.setUint32(12, o.rate ?? 48000, true);
  dv.setUint16(16, (o.gain ?? 0) & 0xffff, true);
  b[18] = family;
  if (family !== 0) {
    b[19] = o.streams ?? 1;
    b[20] = o.coupled ?? 0;
    b.set(o.mapping ?? [], 21);
  }
  return b;
}

const TAGS = concat(new TextEncoder().encode('OpusTags'), new Uint8Array(16));
const packetOf = (n: number, fill: number) => new Uint8Array(n).fill(fill);

describe('OggOpusDemuxer: OpusHead', () => {
  const demux = (headPacket: Uint8Array) => {
    const errs: OggErrorReason[] = [];
    const d = new OggOpusDemuxer({ onError: (r) => errs.push(r) });
    const packets = d.push(concat(...makeStream([[headPacket], [TAGS], [packetOf(3, 0xfc), packetOf(4, 0xfd)]], 255)));
    return { d, errs, packets };
  };

  it('reads every field: pre-skip, input rate, signed Q7.8 gain, mapping family 1 with its table', () => {
    const { d, errs, packets } = demux(head({ version: 15, channels: 3, family: 1, streams: 2, coupled: 1, mapping: [0, 2, 1], preSkip: 0xfedc, rate: 4_000_000_000, gain: -32768 }));
    expect(errs).toEqual([]);
    expect(d.head).toEqual({
      version: 15,
      channels: 3,
      preSkip: 0xfedc,
      inputSampleRate: 4_000_000_000,
      outputGain: -32768,
      mappingFamily: 1,
      streamCount: 2,
      coupledCount: 1,
      channelMapping: new Uint8Array([0, 2, 1]),
    });
    expect(packets).toEqual([packetOf(3, 0xfc), packetOf(4, 0xfd)]);
    expect(d.headerPages).toBeDefined();
  });

  it('family 0: mono has no coupled stream, stereo one; the largest positive gain', () => {
    expect(demux(head({ channels: 1, gain: 32767 })).d.head).toMatchObject({ channels: 1, streamCount: 1, coupledCount: 0, outputGain: 32767, channelMapping: undefined });
    expect(demux(head({ channels: 2, gain: 1 })).d.head).toMatchObject({ channels: 2, streamCount: 1, coupledCount: 1, outputGain: 1 });
    // As many coupled streams as streams is allowed.
    expect(demux(head({ channels: 2, family: 1, streams: 1, coupled: 1, mapping: [0, 1] })).d.head).toMatchObject({ streamCount: 1, coupledCount: 1 });
  });

  it.each([
    ['a major version of 1', head({ version: 16, channels: 1 })],
    ['no channels', head({ channels: 0 })],
    ['family 0 with 3 channels', head({ channels: 3 })],
    ['no stream', head({ channels: 1, family: 1, streams: 0, mapping: [0] })],
    ['more coupled streams than streams', head({ channels: 2, family: 1, streams: 1, coupled: 2, mapping: [0, 1] })],
    ['a mapping table shorter than its channels', head({ channels: 3, family: 1, streams: 2, coupled: 1, mapping: [0, 1] })],
    ['18 bytes', head({ channels: 1 }).subarray(0, 18)],
  ])('rejects an OpusHead with %s: bad-head, no head, no header pages, the audio still returned', (_what, bad) => {
    const { d, errs, packets } = demux(bad);
    expect(errs).toEqual(['bad-head']);
    expect(d.head).toBeUndefined();
    expect(d.headerPages).toBeUndefined();
    expect(packets).toEqual([packetOf(3, 0xfc), packetOf(4, 0xfd)]);
  });

  it('an OpusHead of 18 bytes is refused even when the next byte on its page would complete it', () => {
    // The byte after the packet is 0: read as a mapping family, it would make a valid head.
    const page = makePage(2, 0, 7, 0, [18, 3], concat(head({ channels: 1 }).subarray(0, 18), new Uint8Array([0, 0, 0])));
    const errs: OggErrorReason[] = [];
    const d = new OggOpusDemuxer({ onError: (r) => errs.push(r) });
    d.push(page);
    expect(errs).toEqual(['bad-head']);
    expect(d.head).toBeUndefined();
  });

  it('a BOS page whose first packet only starts like "OpusHead" is not one', () => {
    const { d, errs } = demux(new TextEncoder().encode('OpusHea'));
    expect(errs).toEqual(['bad-head']);
    expect(d.head).toBeUndefined();
  });
});

describe('OggOpusDemuxer: packet size limit (61,440 bytes per stream)', () => {
  /** Each packet starts a page; with 255 lacing values a page holds up to 65,024 bytes of one packet. */
  const stream = (headPacket: Uint8Array, sizes: number[], segs: number) => {
    const errs: Array<[OggErrorReason, number]> = [];
    const d = new OggOpusDemuxer({ onError: (r, o) => errs.push([r, o]) });
    const packets = d.push(concat(...makeStream([[headPacket], [TAGS], ...sizes.map((n, i) => [packetOf(n, i + 1)])], segs)));
    return { errs, sizes: packets.map((p) => p.length) };
  };

  it.each([
    ['on one page', 255],
    ['spanning pages', 60],
  ])('%s: 61,440 bytes pass, 61,441 are dropped and reported, the next packet is returned', (_how, segs) => {
    const { errs, sizes } = stream(head({ channels: 1 }), [61_440, 61_441, 10], segs);
    expect(sizes).toEqual([61_440, 10]);
    expect(errs.map((e) => e[0])).toEqual(['oversized-packet']);
    expect(errs[0]![1]).toBeGreaterThan(61_440);
  });

  it('spanning pages, the packet is reported where it goes over the limit: the fragment on its last page', () => {
    const pages = makeStream([[head({ channels: 1 })], [TAGS], [packetOf(61_441, 1)]], 60);
    const last = pages.length - 1;
    expect(pages[last]![26]).toBe(1); // 60 + 60 + 60 + 60 lacing values of 255, then one of 241
    const errs: Array<[OggErrorReason, number]> = [];
    const d = new OggOpusDemuxer({ onError: (r, o) => errs.push([r, o]) });
    expect(d.push(concat(...pages))).toEqual([]);
    const lastBody = pages.slice(0, last).reduce((n, p) => n + p.length, 0) + 27 + 1;
    expect(errs).toEqual([['oversized-packet', lastBody]]);
  });

  it('an OpusHead spanning pages is not an audio packet: no size limit, parsed', () => {
    const long = concat(head({ channels: 2, preSkip: 999 }), new Uint8Array(70_000));
    const errs: OggErrorReason[] = [];
    const d = new OggOpusDemuxer({ onError: (r) => errs.push(r) });
    expect(d.push(concat(...makeStream([[long], [TAGS], [packetOf(3, 0xfc)]], 100)))).toEqual([packetOf(3, 0xfc)]);
    expect(errs).toEqual([]);
    expect(d.head).toMatchObject({ channels: 2, preSkip: 999 });
  });

  it('the limit grows with the stream count of the OpusHead', () => {
    const two = head({ channels: 2, family: 1, streams: 2, coupled: 0, mapping: [0, 1] });
    expect(stream(two, [122_880, 122_881, 10], 255)).toEqual({ errs: [['oversized-packet', expect.any(Number)]], sizes: [122_880, 10] });
    expect(stream(two, [122_880, 122_881, 10], 100).sizes).toEqual([122_880, 10]);
  });
});

describe('OggOpusDemuxer: stream state', () => {
  const audio = [packetOf(5, 1), packetOf(6, 2), packetOf(7, 3), packetOf(8, 4)];
  const pages = makeStream([[head({ channels: 1 })], [TAGS], [audio[0]!], [audio[1]!], [audio[2]!], [audio[3]!]], 255);

  it('reports the granule position of the last page: large values exactly, "none" (all ones) as -1', () => {
    const d = new OggOpusDemuxer();
    const big = 2 ** 40 + 2 ** 32 + 7;
    d.push(makePage(2, 0, 5, 0, [19], head({ channels: 1 })));
    expect(d.granulePosition).toBe(0);
    d.push(makePage(0, big, 5, 1, [24], TAGS));
    expect(d.granulePosition).toBe(big);
    expect(d.ended).toBe(false);
    expect(d.push(makePage(4, -1, 5, 2, [5], audio[0]!))).toEqual([audio[0]]);
    expect(d.granulePosition).toBe(-1);
    expect(d.ended).toBe(true);
  });

  it('a new serial without BOS: decoded from its first page, the head kept, no sequence gap', () => {
    const d = new OggOpusDemuxer();
    expect(d.push(concat(...pages.slice(0, 4)))).toEqual(audio.slice(0, 2));
    const other = makePage(0, 9600, 0x9999, 40, [7], audio[2]!);
    const next = makePage(0, 10560, 0x9999, 41, [8], audio[3]!);
    expect(d.push(concat(other, next))).toEqual(audio.slice(2));
    expect(d.sequenceGaps).toBe(0);
    expect(d.head?.channels).toBe(1);
    // A gap in the new stream counts.
    expect(d.push(makePage(0, 0, 0x9999, 43, [5], audio[0]!))).toEqual([audio[0]]);
    expect(d.sequenceGaps).toBe(1);
  });

  it('reset() forgets the stream: serial, sequence, granule, EOS, header pages and counts', () => {
    const d = new OggOpusDemuxer();
    const bad = pages[3]!.slice();
    bad[30] ^= 1;
    d.push(concat(...pages.slice(0, 3), bad, pages[5]!));
    expect([d.errors, d.sequenceGaps, d.ended, d.headerPages !== undefined]).toEqual([1, 1, true, true]);
    d.reset();
    expect([d.errors, d.sequenceGaps, d.granulePosition, d.ended, d.head, d.headerPages, d.bufferedBytes]).toEqual([0, 0, -1, false, undefined, undefined, 0]);
    // The same stream's page 4 after a reset is a join, not a gap.
    expect(d.push(pages[4]!)).toEqual([audio[2]]);
    expect(d.sequenceGaps).toBe(0);
  });

  it('a zero-length packet (RFC 7845 §3: lost) is not returned', () => {
    const d = new OggOpusDemuxer();
    expect(d.push(concat(...makeStream([[head({ channels: 1 })], [TAGS], [audio[0]!, new Uint8Array(0), audio[1]!]], 255)))).toEqual([audio[0], audio[1]]);
    expect(d.errors).toBe(0);
  });

  it('joined mid-way: once audio has started, a packet that starts like "OpusTags" or "OpusHead" is audio', () => {
    const tagsLike = concat(new TextEncoder().encode('OpusTags'), new Uint8Array(4));
    const headLike = head({ channels: 1 });
    const d = new OggOpusDemuxer();
    const joined = [audio[0]!, tagsLike, headLike].map((p, i) => makePage(0, 960 * (i + 5), 0x77, 5 + i, [p.length], p));
    expect(d.push(concat(...joined))).toEqual([audio[0], tagsLike, headLike]);
    expect(d.head).toBeUndefined();
  });

  it('reset() drops a packet half assembled across pages', () => {
    const long = packetOf(700, 9);
    const spanning = makeStream([[head({ channels: 1 })], [TAGS], [long, audio[0]!]], 2);
    const firstPart = spanning.findIndex((p) => p[5]! & 1) - 1;
    const d = new OggOpusDemuxer();
    d.push(concat(...spanning.slice(0, firstPart + 1)));
    d.reset();
    expect(d.push(concat(...spanning.slice(firstPart + 1)))).toEqual([audio[0]]);
    expect(d.errors).toBe(0);
  });
});
