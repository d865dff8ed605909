// Hand-written rather than npm codec-parser: that library targets whole files / async iterators and does far more per call than this per-message hot path needs.
/**
 * Streaming Ogg Opus demuxer (RFC 3533 framing, RFC 7845 mapping).
 *
 * Feed arbitrary byte slices with {@link OggOpusDemuxer.push}; it returns the Opus audio packets
 * completed by that input, in stream order. Every returned packet is a fresh copy that the caller
 * owns and may keep (the internal buffer is reused). OpusHead is parsed into {@link head};
 * OpusHead/OpusTags are never returned as audio. Zero-length packets (RFC 7845 §3 "lost") are
 * not returned.
 *
 * Robustness: pages failing the capture/version/CRC checks are skipped and the parser
 * resynchronises on the next `OggS`; nothing ever throws on bad input. The internal buffer never
 * holds more than one incomplete page (< {@link OGG_MAX_PAGE_SIZE} bytes), whatever is pushed.
 *
 * Scope: one logical stream at a time (a new serial, with or without BOS, replaces the old one).
 */

/** Largest possible Ogg page: header + 255 lacing values + 255 * 255 body bytes. */
export const OGG_MAX_PAGE_SIZE = 27 + 255 + 255 * 255;

export interface OpusHead {
  /** OpusHead version byte (major version in the high nibble is always 0). */
  version: number;
  channels: number;
  /** Samples (at 48 kHz) to discard from the decoder output at the start of the stream. */
  preSkip: number;
  /** Informational only: the encoder's input rate. Opus always decodes at 48 kHz (or 8/12/16/24). */
  inputSampleRate: number;
  /** Q7.8 dB gain to apply to the decoded output (RFC 7845 §5.1). */
  outputGain: number;
  mappingFamily: number;
  /** 1 for family 0. */
  streamCount: number;
  /** channels === 2 ? 1 : 0 for family 0. */
  coupledCount: number;
  /** The channel mapping table (family ≠ 0 only). */
  channelMapping: Uint8Array | undefined;
}

export type OggErrorReason =
  /** Bytes that are not an Ogg page (reported once per run of junk). */
  | 'garbage'
  /** A capture pattern followed by a stream_structure_version other than 0. */
  | 'bad-version'
  /** A page whose CRC does not match. */
  | 'bad-crc'
  /** A BOS page without a valid OpusHead. */
  | 'bad-head'
  /** An audio packet larger than RFC 7845 §6 allows (61,440 bytes per stream); dropped. */
  | 'oversized-packet';

export type OggPageKind = 'header' | 'audio';

export interface OggOpusDemuxerOptions {
  /** Called for each problem counted in {@link OggOpusDemuxer.errors}; `offset` is the stream byte offset. */
  onError?: (reason: OggErrorReason, offset: number) => void;
  /**
   * Called, during push(), with each verified page (a fresh copy the callee may keep), in order,
   * before the packets of that page are returned. For pass-through consumers that forward Ogg
   * as-is. Pages are only copied when this is set.
   */
  onPage?: (page: Uint8Array, kind: OggPageKind) => void;
}

const CRC_TABLE = /* @__PURE__ */ (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let k = 0; k < 8; k++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    t[i] = r >>> 0;
  }
  return t;
})();

/** Ogg CRC-32 of `b[from, to)`, continuing from `crc`. */
export function crc32(crc: number, b: Uint8Array, from: number, to: number): number {
  const t = CRC_TABLE;
  for (let i = from; i < to; i++) crc = (crc << 8) ^ t[((crc >>> 24) ^ b[i]) & 0xff];
  return crc;
}

function u32(b: Uint8Array, i: number): number {
  return (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
}

const MAGIC_HEAD = [0x4f, 0x70, 0x75, 0x73, 0x48, 0x65, 0x61, 0x64]; // "OpusHead"
const MAGIC_TAGS = [0x4f, 0x70, 0x75, 0x73, 0x54, 0x61, 0x67, 0x73]; // "OpusTags"
const CAPTURE = [0x4f, 0x67, 0x67, 0x53]; // "OggS"

function hasMagic(b: Uint8Array, at: number, len: number, magic: readonly number[]): boolean {
  if (len < magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (b[at + i] !== magic[i]) return false;
  return true;
}

/** True if `bytes` starts with the Ogg capture pattern `OggS`. */
export function isOggStart(bytes: Uint8Array): boolean {
  return hasMagic(bytes, 0, bytes.length, CAPTURE);
}

/** `b[at, end)` is a (possibly partial) `OggS`. */
function isCapturePrefix(b: Uint8Array, at: number, end: number): boolean {
  const n = Math.min(4, end - at);
  for (let i = 0; i < n; i++) if (b[at + i] !== CAPTURE[i]) return false;
  return true;
}

// Header state of the logical stream.
const EXPECT_HEAD = 0;
const EXPECT_TAGS = 1;
const EXPECT_AUDIO = 2;
// What the packet being assembled is.
const K_AUDIO = 0;
const K_HEAD = 1;
const K_TAGS = 2;
const K_DISCARD = 3;

const INITIAL_CAPACITY = 8192;
/** Never reached in practice: the residue after parsing is always < OGG_MAX_PAGE_SIZE. */
const MAX_CAPACITY = 2 * 65536;
/** RFC 7845 §6: audio packets larger than this per stream are invalid. */
const MAX_PACKET_PER_STREAM = 61440;

export class OggOpusDemuxer {
  private readonly onError: OggOpusDemuxerOptions['onError'];
  private readonly onPage: OggOpusDemuxerOptions['onPage'];

  // Byte buffer: unparsed bytes are buf[start, end); `base` is the stream offset of buf[0].
  private buf = new Uint8Array(INITIAL_CAPACITY);
  private start = 0;
  private end = 0;
  private base = 0;
  /** Total size of the page at `start`, once known (0 = not yet known). */
  private need = 0;
  /** Inside a run of bytes already reported (junk, or the remains of a rejected page). */
  private lostSync = false;

  // Logical stream state.
  private hasSerial = false;
  private serial = 0;
  private lastSeq = 0;
  private expect = EXPECT_AUDIO;
  private audioStarted = false;
  private headerChunks: Uint8Array[] | null = null;
  private headersDone = false;
  /** The page being parsed started an OpusHead/OpusTags packet. */
  private pageHasHeader = false;

  // Packet spanning pages.
  private pktActive = false;
  private pktKind = K_AUDIO;
  private pending = new Uint8Array(0);
  private pendingLen = 0;

  private _head: OpusHead | undefined;
  private _headerPages: Uint8Array | undefined;
  private _errors = 0;
  private _sequenceGaps = 0;
  private _granulePosition = -1;
  private _ended = false;

  constructor(options: OggOpusDemuxerOptions = {}) {
    this.onError = options.onError;
    this.onPage = options.onPage;
  }

  /**
   * The parsed OpusHead of the current stream; undefined if the stream was joined mid-way (a serial
   * change without BOS keeps the previous one; a BOS page replaces it).
   */
  get head(): OpusHead | undefined {
    return this._head;
  }
  /**
   * Raw bytes of the header pages (OpusHead page + OpusTags pages, concatenated), available once
   * OpusTags is complete; re-send them first to a pass-through provider after a reconnect.
   * Undefined when the stream was joined without its headers.
   */
  get headerPages(): Uint8Array | undefined {
    return this._headerPages;
  }
  /** Problems counted (corrupt pages, junk runs, bad OpusHead, oversized packets). */
  get errors(): number {
    return this._errors;
  }
  /** Page sequence discontinuities seen within one logical stream (lost pages). */
  get sequenceGaps(): number {
    return this._sequenceGaps;
  }
  /** Granule position of the last verified page (-1 if none / unset). */
  get granulePosition(): number {
    return this._granulePosition;
  }
  /** True if the last verified page had the EOS flag. */
  get ended(): boolean {
    return this._ended;
  }
  /** Bytes held waiting for the rest of a page (always < OGG_MAX_PAGE_SIZE). */
  get bufferedBytes(): number {
    return this.end - this.start;
  }
  /** Current size of the internal buffer (diagnostics; bounded by 128 KiB). */
  get bufferCapacity(): number {
    return this.buf.length;
  }

  /** Forget everything, as if newly constructed (the buffer allocation is kept). */
  reset(): void {
    this.start = this.end = this.base = this.need = 0;
    this.lostSync = false;
    this.hasSerial = false;
    this.serial = this.lastSeq = 0;
    this.expect = EXPECT_AUDIO;
    this.audioStarted = false;
    this.headerChunks = null;
    this.headersDone = false;
    this.pktActive = false;
    this.pendingLen = 0;
    this._head = undefined;
    this._headerPages = undefined;
    this._errors = this._sequenceGaps = 0;
    this._granulePosition = -1;
    this._ended = false;
  }

  /** Feed the next bytes of the stream; returns the audio packets they complete (caller-owned copies). */
  push(bytes: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    const n = bytes.length;
    let off = 0;
    while (off < n) {
      let room = this.buf.length - this.end;
      if (room < n - off && this.start > 0) {
        // Compact: move the (small) residue to the front. Grow when the residue fills over half
        // the buffer so that compaction stays amortised.
        const residue = this.end - this.start;
        if (residue * 2 > this.buf.length && this.buf.length < MAX_CAPACITY) {
          const bigger = new Uint8Array(this.buf.length * 2);
          bigger.set(this.buf.subarray(this.start, this.end));
          this.buf = bigger;
        } else {
          this.buf.copyWithin(0, this.start, this.end);
        }
        this.base += this.start;
        this.end = residue;
        this.start = 0;
        room = this.buf.length - this.end;
      }
      if (room === 0) {
        // Only when start === 0 and the buffer is full of one incomplete page; cannot happen at
        // MAX_CAPACITY since a page is < 64 KiB.
        const bigger = new Uint8Array(Math.min(this.buf.length * 2, MAX_CAPACITY));
        bigger.set(this.buf.subarray(0, this.end));
        this.buf = bigger;
        room = this.buf.length - this.end;
      }
      const take = Math.min(room, n - off);
      this.buf.set(take === n ? bytes : bytes.subarray(off, off + take), this.end);
      this.end += take;
      off += take;
      this.drain(out);
    }
    return out;
  }

  private report(reason: OggErrorReason, at: number): void {
    this._errors++;
    this.onError?.(reason, this.base + at);
  }

  /** Move `start` to the next (possibly partial) capture pattern after `from`; false if more bytes are needed. */
  private resync(from: number): boolean {
    const buf = this.buf;
    const end = this.end;
    this.need = 0;
    let i = from;
    for (;;) {
      i = buf.indexOf(0x4f, i);
      if (i < 0 || i >= end) {
        this.start = end;
        return false;
      }
      if (isCapturePrefix(buf, i, end)) {
        this.start = i;
        return i + 4 <= end;
      }
      i++;
    }
  }

  /** Parse every complete page in the buffer. */
  private drain(out: Uint8Array[]): void {
    const buf = this.buf;
    for (;;) {
      const s = this.start;
      const avail = this.end - s;
      if (avail === 0 || avail < this.need) break;
      if (!isCapturePrefix(buf, s, this.end)) {
        if (!this.lostSync) {
          this.lostSync = true;
          this.report('garbage', s);
        }
        if (!this.resync(s + 1)) break;
        continue;
      }
      if (avail < 27) break;
      if (buf[s + 4] !== 0) {
        if (!this.lostSync) {
          this.lostSync = true;
          this.report('bad-version', s);
        }
        if (!this.resync(s + 1)) break;
        continue;
      }
      const nseg = buf[s + 26];
      const hdr = 27 + nseg;
      if (avail < hdr) break;
      if (this.need === 0) {
        let body = 0;
        for (let k = s + 27; k < s + hdr; k++) body += buf[k];
        this.need = hdr + body;
        if (avail < this.need) break;
      }
      const total = this.need;
      let crc = crc32(0, buf, s, s + 22);
      crc = crc32(crc, ZERO4, 0, 4);
      crc = crc32(crc, buf, s + 26, s + total);
      if (crc >>> 0 !== u32(buf, s + 22)) {
        // Counted even when already out of sync: this is a page-shaped thing that failed.
        this.lostSync = true;
        this.report('bad-crc', s);
        if (!this.resync(s + 1)) break;
        continue;
      }
      this.lostSync = false;
      this.need = 0;
      this.start = s + total;
      this.page(s, hdr, total, out);
    }
    if (this.start === this.end) {
      this.base += this.end;
      this.start = this.end = 0;
    }
  }

  /** Handle one verified page at buf[s, s + total). */
  private page(s: number, hdr: number, total: number, out: Uint8Array[]): void {
    const buf = this.buf;
    const flags = buf[s + 5];
    const serial = u32(buf, s + 14);
    const seq = u32(buf, s + 18);
    // Signed high word makes the "no granule" value 0xFFFF...FF come out as -1.
    this._granulePosition = (buf[s + 10] | (buf[s + 11] << 8) | (buf[s + 12] << 16) | (buf[s + 13] << 24)) * 0x100000000 + u32(buf, s + 6);
    this._ended = (flags & 4) !== 0;

    if (flags & 2) {
      // BOS: a new logical stream, which must start with OpusHead.
      this.expect = EXPECT_HEAD;
      this.audioStarted = false;
      this.headerChunks = [];
      this.headersDone = false;
      this._head = undefined;
      this._headerPages = undefined;
      this.pktActive = false;
    } else if (!this.hasSerial || serial !== this.serial) {
      // Joined mid-way (or the sender restarted with a new serial): decode from here.
      this.expect = EXPECT_AUDIO;
      this.audioStarted = false;
      this.headerChunks = null;
      this.pktActive = false;
    } else if (seq !== ((this.lastSeq + 1) >>> 0)) {
      this._sequenceGaps++;
      this.pktActive = false; // the rest of a spanning packet is lost
    }
    this.hasSerial = true;
    this.serial = serial;
    this.lastSeq = seq;

    if (flags & 1) {
      // Continued packet: without its beginning (joined mid-way, lost page) it is discarded.
      if (!this.pktActive) {
        this.pktActive = true;
        this.pktKind = K_DISCARD;
        this.pendingLen = 0;
      }
    } else if (this.pktActive) {
      this.pktActive = false; // the expected continuation never came
    }

    const headerState =
      this.expect !== EXPECT_AUDIO || (this.pktActive && (this.pktKind === K_TAGS || this.pktKind === K_HEAD));
    this.pageHasHeader = false;

    let frag = s + hdr;
    let q = frag;
    const lacingEnd = s + hdr;
    for (let k = s + 27; k < lacingEnd; k++) {
      const v = buf[k];
      q += v;
      if (v < 255) {
        if (this.pktActive) {
          this.append(frag, q);
          this.pktActive = false;
          this.complete(this.pktKind, this.pending, 0, this.pendingLen, out);
          this.pendingLen = 0;
        } else {
          this.complete(this.classify(frag, q - frag), buf, frag, q - frag, out);
        }
        frag = q;
      }
    }
    if (hdr > 27 && buf[lacingEnd - 1] === 255) {
      // The last packet continues on the next page.
      if (!this.pktActive) {
        this.pktActive = true;
        this.pktKind = this.classify(frag, q - frag);
        this.pendingLen = 0;
      }
      this.append(frag, q);
    }
    if (flags & 4) this.pktActive = false;
    const isHeader = headerState || this.pageHasHeader;

    if (this.onPage) this.onPage(buf.slice(s, s + total), isHeader ? 'header' : 'audio');
    if (isHeader && this.headerChunks) {
      this.headerChunks.push(buf.slice(s, s + total));
      if (this.headersDone) {
        let len = 0;
        for (const c of this.headerChunks) len += c.length;
        const all = new Uint8Array(len);
        len = 0;
        for (const c of this.headerChunks) {
          all.set(c, len);
          len += c.length;
        }
        this._headerPages = all;
        this.headerChunks = null;
      }
    }
  }

  /** Decide what a packet starting at buf[at] (first fragment of `len` bytes) is. */
  private classify(at: number, len: number): number {
    const buf = this.buf;
    if (this.expect === EXPECT_HEAD) {
      if (hasMagic(buf, at, len, MAGIC_HEAD)) return this.headerPacket(K_HEAD);
      this.report('bad-head', at);
      this.expect = EXPECT_AUDIO;
      this.headerChunks = null;
      return K_DISCARD;
    }
    if (this.expect === EXPECT_TAGS) {
      this.expect = EXPECT_AUDIO;
      if (hasMagic(buf, at, len, MAGIC_TAGS)) return this.headerPacket(K_TAGS);
      this.headersDone = true; // non-conformant: no OpusTags; keep what we have
      return K_AUDIO;
    }
    if (!this.audioStarted && buf[at] === 0x4f) {
      // Joined mid-way at the header pages (no BOS seen).
      if (hasMagic(buf, at, len, MAGIC_TAGS)) return this.headerPacket(K_TAGS);
      if (hasMagic(buf, at, len, MAGIC_HEAD)) return this.headerPacket(K_HEAD);
    }
    return K_AUDIO;
  }

  private headerPacket(kind: number): number {
    this.pageHasHeader = true;
    return kind;
  }

  /** Add buf[from, to) to the packet spanning pages. */
  private append(from: number, to: number): void {
    const kind = this.pktKind;
    if (kind === K_TAGS || kind === K_DISCARD) return; // not needed: skip without copying
    const len = this.pendingLen + (to - from);
    if (kind === K_AUDIO && len > this.maxPacket()) {
      this.report('oversized-packet', from);
      this.pktKind = K_DISCARD;
      this.pendingLen = 0;
      return;
    }
    if (len > this.pending.length) {
      const bigger = new Uint8Array(Math.max(len, this.pending.length * 2, 1024));
      bigger.set(this.pending.subarray(0, this.pendingLen));
      this.pending = bigger;
    }
    this.pending.set(this.buf.subarray(from, to), this.pendingLen);
    this.pendingLen = len;
  }

  private maxPacket(): number {
    return MAX_PACKET_PER_STREAM * Math.max(1, this._head?.streamCount ?? 1);
  }

  /** A whole packet of `kind` is at src[at, at + len). */
  private complete(kind: number, src: Uint8Array, at: number, len: number, out: Uint8Array[]): void {
    switch (kind) {
      case K_AUDIO:
        if (len === 0) return;
        if (len > this.maxPacket()) {
          this.report('oversized-packet', at);
          return;
        }
        this.audioStarted = true;
        out.push(src.slice(at, at + len));
        return;
      case K_HEAD:
        this._head = parseOpusHead(src, at, len);
        if (!this._head) {
          this.report('bad-head', at);
          this.headerChunks = null;
        }
        this.expect = EXPECT_TAGS;
        return;
      case K_TAGS:
        this.headersDone = true;
        return;
    }
  }
}

const ZERO4 = new Uint8Array(4);

function parseOpusHead(b: Uint8Array, at: number, len: number): OpusHead | undefined {
  if (len < 19) return undefined;
  const version = b[at + 8];
  const channels = b[at + 9];
  const mappingFamily = b[at + 18];
  if (version >> 4 !== 0 || channels === 0) return undefined;
  let streamCount = 1;
  let coupledCount = channels === 2 ? 1 : 0;
  let channelMapping: Uint8Array | undefined;
  if (mappingFamily === 0) {
    if (channels > 2) return undefined;
  } else {
    if (len < 21 + channels) return undefined;
    streamCount = b[at + 19];
    coupledCount = b[at + 20];
    if (streamCount === 0 || coupledCount > streamCount) return undefined;
    channelMapping = b.slice(at + 21, at + 21 + channels);
  }
  const gain = b[at + 16] | (b[at + 17] << 8);
  return {
    version,
    channels,
    preSkip: b[at + 10] | (b[at + 11] << 8),
    inputSampleRate: u32(b, at + 12),
    outputGain: gain >= 0x8000 ? gain - 0x10000 : gain,
    mappingFamily,
    streamCount,
    coupledCount,
    channelMapping,
  };
}
