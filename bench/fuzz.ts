/**
 * Fuzzer (`npm run bench:fuzz`; not run in CI): the built server (`npm start`'s command, in its
 * own process, as bench/load.ts starts it) in front of the fake OpenAI in timing-only mode on
 * a thread (bench/sinks.ts), so that valid audio is decoded and flows somewhere, takes
 * FUZZ_FRAMES (default 1,000,000) hostile frames on FUZZ_SOCKETS (20) sockets in parallel,
 * each socket a string of sessions (reopened when the server closes one, 1008 or 1009, or when
 * the session has had its random lifetime), the sessions in opus, Ogg or l16 mode, or chaos.
 *
 * The mix (each frame is labelled `family:variant`; the families are counted in the report):
 * valid frames from the capture (real decoding: packets in order, gaps for PLC/FEC, Ogg
 * slices of samples/speech.ogg, l16 PCM), JSON garbage (truncated, deeply nested in every
 * field, huge and odd numbers, NaN strings, wrong types for every field, missing fields,
 * `__proto__`/`constructor` keys, repeated keys, unknown events, arrays, unicode and lone
 * surrogates), bad base64, valid base64 of random bytes, Opus TOCs with garbage, Ogg pages
 * truncated, with a broken CRC, a bad version or OpusHead, oversized packets, l16 with odd
 * byte counts, binary frames, frames at, just over and far over MAX_MESSAGE_BYTES and over
 * the transport limit (closed 1009), absurd values (chunk -1, 1e308, 2^53, sampleRate 7,
 * channels 255, 300-character tags), start/stop/format storms, 10,000 distinct tags in one
 * session (start, a packet, stop each), participant floods up to MAX_PARTICIPANTS
 * (FUZZ_MAX_PARTICIPANTS, 256: closed 1008), pings with odd ids.
 *
 * Everything a socket sends comes from its own PRNG, seeded from FUZZ_SEED and the socket's
 * number, so a run is reproducible. After every batch the socket sends a ping of its own and
 * keeps at most three batches unanswered: frames are handled in order, so a pong proves every
 * frame before it was handled, and the frames after the last pong are the suspects when
 * something breaks.
 *
 * Checks (the verdict, last line: `fuzz: PASS` or `fuzz: FAIL <why>`, exit 0 or 1): the server
 * is alive at the end and was never restarted; /health answers 200 and, within 60 s of the
 * last frame (finishing streams, resumable sessions), counts no session and no participant;
 * no Opus decoder left live; a fresh session still gets `info` and a `pong`; no uncaught
 * exception or unhandled rejection on its stderr; no `level:"error"` log line (stdout and
 * stderr: the logger writes warn and error lines to stderr); no provider connection left
 * open; no batch left unanswered for 60 s. Also reported: error events by code, the
 * server's own refusal counters, its RSS (before, peak, once the sessions are gone, after
 * FUZZ_IDLE_SECONDS = 30 s idle), /health latency during the run, and how long new sessions
 * waited for `info`.
 * When the server dies (or stops answering), the fuzzer replays each socket's unanswered
 * frames one at a time, each followed by a ping, on a separate server started with
 * --enable-source-maps, to name the exact frame and the stack; it writes the candidates to
 * /tmp/fuzz-crash-<n>.jsonl, stops generating that frame's variant, restarts the server and
 * goes on. `FUZZ_REPLAY=/tmp/fuzz-crash-1.jsonl npm run bench:fuzz` replays such a file.
 *
 *   npm run bench:fuzz                         (builds dist/ first)
 *   FUZZ_FRAMES=100000 FUZZ_SEED=7 npm run bench:fuzz
 *   FUZZ_SOCKETS=20 FUZZ_PROVIDER=deepgram FUZZ_MAX_PARTICIPANTS=0 FUZZ_LOG_LEVEL=info
 *   FUZZ_SKIP=deep:ping.id,deep:info.extra       (variants not to generate, e.g. known crashes)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import WebSocket from 'ws';
import { threadSink } from './sink-thread.ts';
import type { TimingSink } from './sinks.ts';
import { TICKS_PER_SECOND, capture, cpuTicks, rssKb, startServer, stopServer, type ServerProcess, type StartOptions } from './server.ts';

const FRAMES = Number(process.env.FUZZ_FRAMES ?? 1_000_000);
const SEED = process.env.FUZZ_SEED ?? '1';
const SOCKETS = Number(process.env.FUZZ_SOCKETS ?? 20);
const PROVIDER = (process.env.FUZZ_PROVIDER ?? 'openai') as 'openai' | 'deepgram';
const MAX_PARTICIPANTS = Number(process.env.FUZZ_MAX_PARTICIPANTS ?? 256);
const LOG_LEVEL = process.env.FUZZ_LOG_LEVEL ?? 'info';
const REPLAY = process.env.FUZZ_REPLAY;
/** Variants (`family:variant`, comma-separated) not to generate, e.g. crashes already reported. */
const SKIP = (process.env.FUZZ_SKIP ?? '').split(',').map((k) => k.trim()).filter(Boolean);
/** The server's default MAX_MESSAGE_BYTES; its transport limit is max(16 x that, 16 MiB). */
const MAX_MESSAGE = 262_144;
const TRANSPORT_LIMIT = Math.max(16 * MAX_MESSAGE, 16 << 20);
/** Frames per batch, and batches a socket may have unanswered. */
const BATCH = 48;
const WINDOW = 3;
/** A batch not answered within this long: the server is stuck (or hopelessly behind). */
const ACK_TIMEOUT_MS = 60_000;
/** A session whose `info` has not come within this long counts as an open failure. */
const OPEN_TIMEOUT_MS = 30_000;
/** Time from `new WebSocket` to `info`, per session opened. */
const openLatencies: number[] = [];
/** Distinct tags of the one marathon session (socket 0's third session). */
const MARATHON_TAGS = 10_000;
/** After the run, how long the server idles before its RSS is read again. */
const IDLE_SECONDS = Number(process.env.FUZZ_IDLE_SECONDS ?? 30);
/** After the run, how long the sessions may take to be gone from /health. */
const SETTLE_SECONDS = 60;

const SERVER_ENV: Record<string, string> = {
  LOG_LEVEL,
  MAX_PARTICIPANTS: String(MAX_PARTICIPANTS),
  MAX_MESSAGE_BYTES: String(MAX_MESSAGE),
};

// ================================================================ PRNG

/** mulberry32, seeded by an FNV-1a hash of a string. */
class Rng {
  private state: number;
  constructor(seed: string) {
    let h = 2166136261;
    for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 16777619);
    this.state = h >>> 0 || 1;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** 0 ≤ n < max */
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
  /** min ≤ n ≤ max */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }
  /** Log-uniform integer in [min, max]: small values as likely as large ones per decade. */
  logRange(min: number, max: number): number {
    return Math.min(max, Math.floor(Math.exp(Math.log(min) + this.next() * (Math.log(max + 1) - Math.log(min)))));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) out.writeUInt32LE((this.next() * 4294967296) >>> 0, i);
    for (; i < n; i++) out[i] = this.int(256);
    return out;
  }
  weighted<T>(entries: readonly (readonly [T, number])[]): T {
    let total = 0;
    for (const [, w] of entries) total += w;
    let r = this.next() * total;
    for (const [item, w] of entries) {
      if ((r -= w) < 0) return item;
    }
    return entries[entries.length - 1]![0];
  }
}

// ================================================================ JSON with raw parts

/** Verbatim JSON text (or not-JSON) inside a value built for `ser`. */
class Raw {
  constructor(readonly text: string) {}
}
/** An object whose keys may repeat or be `__proto__` (a JS object literal cannot hold those). */
class Pairs {
  constructor(readonly pairs: [string, unknown][]) {}
}

function ser(value: unknown): string {
  if (value instanceof Raw) return value.text;
  if (value instanceof Pairs) return `{${value.pairs.map(([k, v]) => `${JSON.stringify(k)}:${ser(v)}`).join(',')}}`;
  if (Array.isArray(value)) return `[${value.map(ser).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${ser(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

type Json = Record<string, unknown>;

/** Every path (of keys) into an object built from plain objects. */
function paths(value: unknown, prefix: string[] = []): string[][] {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Raw || value instanceof Pairs) return [];
  const out: string[][] = [];
  for (const [k, v] of Object.entries(value)) {
    out.push([...prefix, k]);
    out.push(...paths(v, [...prefix, k]));
  }
  return out;
}

function setPath(obj: Json, path: string[], value: unknown): void {
  let at = obj;
  for (const key of path.slice(0, -1)) at = at[key] as Json;
  at[path[path.length - 1]!] = value;
}

function deletePath(obj: Json, path: string[]): void {
  let at = obj;
  for (const key of path.slice(0, -1)) at = at[key] as Json;
  delete at[path[path.length - 1]!];
}

const clone = (o: Json): Json => structuredClone(o);

// ================================================================ material

const { tags: captureTags, speech: speechPath } = capture();
const PACKETS = captureTags.map(([, packets]) => packets.map((p) => Buffer.from(p)));
const B64 = PACKETS.map((packets) => packets.map((p) => p.toString('base64')));
const OGG = readFileSync(speechPath);

/** The Ogg file's pages, as byte ranges. */
const OGG_PAGES: Buffer[] = (() => {
  const pages: Buffer[] = [];
  let at = 0;
  while (at + 27 <= OGG.length && OGG.toString('latin1', at, at + 4) === 'OggS') {
    const segments = OGG[at + 26]!;
    let size = 27 + segments;
    for (let i = 0; i < segments; i++) size += OGG[at + 27 + i]!;
    pages.push(OGG.subarray(at, at + size));
    at += size;
  }
  return pages;
})();

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let b = 0; b < 8; b++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    t[i] = r >>> 0;
  }
  return t;
})();

/** Writes the page's CRC (the field itself counted as zeros). */
function sealPage(page: Buffer): Buffer {
  page.writeUInt32LE(0, 22);
  let crc = 0;
  for (const byte of page) crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ byte) & 0xff]!) >>> 0;
  page.writeUInt32LE(crc, 22);
  return page;
}

/** An Ogg page with the given packets' segments (flags: 1 continued, 2 BOS, 4 EOS). */
function oggPage(body: Buffer, options: { flags?: number; granule?: bigint; serial?: number; seq?: number; version?: number; lacing?: number[] } = {}): Buffer {
  const lacing = options.lacing ?? (() => {
    const l: number[] = [];
    let left = body.length;
    while (left >= 255) {
      l.push(255);
      left -= 255;
    }
    l.push(left);
    return l.slice(0, 255);
  })();
  const page = Buffer.alloc(27 + lacing.length + body.length);
  page.write('OggS', 0, 'latin1');
  page[4] = options.version ?? 0;
  page[5] = options.flags ?? 0;
  page.writeBigInt64LE(options.granule ?? 0n, 6);
  page.writeUInt32LE(options.serial ?? 0x12345678, 14);
  page.writeUInt32LE(options.seq ?? 0, 18);
  page[26] = lacing.length;
  Buffer.from(lacing).copy(page, 27);
  body.copy(page, 27 + lacing.length);
  return sealPage(page);
}

function opusHead(rng: Rng): Buffer {
  const channels = rng.pick([0, 1, 2, 3, 8, 255]);
  const family = rng.pick([0, 1, 2, 255]);
  const head = Buffer.alloc(19 + (family === 0 ? 0 : 2 + rng.int(channels + 2)));
  head.write('OpusHead', 0, 'latin1');
  head[8] = rng.pick([0, 1, 15, 16, 255]);
  head[9] = channels;
  head.writeUInt16LE(rng.pick([0, 312, 3840, 65535]), 10);
  head.writeUInt32LE(rng.pick([0, 8000, 48000, 0xffffffff]), 12);
  head.writeInt16LE(rng.pick([0, -32768, 32767]), 16);
  head[18] = family;
  for (let i = 19; i < head.length; i++) head[i] = rng.int(256);
  return rng.chance(0.2) ? head.subarray(0, rng.int(head.length)) : head;
}

/** 1 s of a 440 Hz tone, int16 LE at 16 kHz: l16 material. */
const TONE = (() => {
  const b = Buffer.alloc(32000);
  for (let i = 0; i < 16000; i++) b.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 16000)), i * 2);
  return b;
})();

const HOSTILE_VALUES: unknown[] = [
  null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, 2 ** 31, 2 ** 32, 65535, 65536,
  new Raw('-0'), new Raw('1e400'), new Raw('-1e400'), new Raw('123456789012345678901234567890'), new Raw('1E+2'), new Raw('0.0000'),
  new Raw('NaN'), new Raw('Infinity'), new Raw('undefined'), new Raw("'single'"),
  '', ' ', '-1', '1e3', '0x10', 'NaN', 'Infinity', '-Infinity', '１２３', '9999999999999999', '999999999999999',
  '00000000000000000001', ' 1', '1 ', '1.0', '+1', '٣', [], [1, 2], [[[]]], {}, { a: 1 }, { tag: 'x' },
  'x'.repeat(300), 'y'.repeat(5000), '\u0000', '\ud800', '\udfff\ud800', '🎤🎧', '\u202e\u200b', 'media', 'opus', 'l16',
  new Pairs([['__proto__', { polluted: true }]]), new Pairs([['constructor', { prototype: { polluted: true } }]]),
  new Raw('{"__proto__":null}'), 'toString', '__proto__', 'constructor', 'hasOwnProperty',
];

const ODD_EVENT_NAMES: unknown[] = [
  '', ' ', 'MEDIA', 'media ', ' media', 'Media', 'start\u0000', 'medi', 'mediaa', 'stop ', 'pong', 'error', 'info ',
  'transcription-result', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'prototype',
  '🎤', '\ud800', 'a'.repeat(64), 'b'.repeat(65), 'c'.repeat(10_000), null, 0, 1, true, false, [], ['media'], {}, { media: 1 }, 1e308,
];

const TEMPLATE_STARTS = (tag: string, encoding: string, rate?: number): Json => ({
  event: 'start',
  sequenceNumber: '1',
  start: { tag, mediaFormat: { encoding, ...(rate === undefined ? {} : { sampleRate: rate }), channels: 1 }, customParameters: { endpointId: tag.split('-')[0] } },
});

// ================================================================ a session's generator

type Format = 'opus' | 'ogg' | 'l16';
type Mode = 'opus' | 'ogg' | 'l16' | 'chaos' | 'marathon';

interface Frame {
  /** `family:variant`; a variant that crashed the server is no longer generated. */
  kind: string;
  data: string | Buffer;
}

interface TagState {
  format: Format;
  chunk: number;
  /** Which capture participant's packets (opus), or where in the Ogg file / tone. */
  source: number;
  cursor: number;
  numericChunks: boolean;
}

const quarantined = new Set<string>(SKIP);
let distinctTags = 0;
/** The marathon (10,000 distinct tags in one session) runs once, from socket 0's third session (again if a crash cut it short). */
let marathonStarted = false;

class SessionGen {
  readonly tags = new Map<string, TagState>();
  private frames: Frame[] = [];
  private tagSeq = 0;
  private marathonLeft = 0;

  constructor(
    private readonly rng: Rng,
    readonly mode: Mode,
    private readonly label: string,
  ) {
    const count = mode === 'marathon' ? 1 : rng.range(1, 3);
    for (let i = 0; i < count; i++) this.newTag(this.tagFormat());
    if (mode === 'marathon') this.marathonLeft = MARATHON_TAGS;
  }

  /** The URL's `encoding` for this session (sometimes none). */
  urlEncoding(): string | undefined {
    if (this.mode === 'ogg') return this.rng.pick([undefined, 'ogg', 'ogg-opus']);
    return this.rng.pick([undefined, undefined, 'opus']);
  }

  /** The opening `start`s. */
  opening(): Frame[] {
    const out: Frame[] = [];
    for (const [tag, st] of this.tags) {
      if (st.format === 'opus' && this.rng.chance(0.3)) continue; // a media without start creates the stream
      out.push({ kind: 'valid:start', data: ser(TEMPLATE_STARTS(tag, this.encodingName(st.format), this.rate(st.format))) });
    }
    return out;
  }

  private tagFormat(): Format {
    if (this.mode === 'ogg' || this.mode === 'l16' || this.mode === 'opus') return this.mode;
    if (this.mode === 'marathon') return 'opus';
    return this.rng.pick(['opus', 'opus', 'ogg', 'l16'] as const);
  }

  private encodingName(format: Format): string {
    if (format === 'ogg') return this.rng.pick(['ogg', 'ogg-opus']);
    return format;
  }

  private rate(format: Format): number | undefined {
    if (format === 'l16') return this.rng.pick([undefined, 8000, 12000, 16000, 24000, 48000]);
    return this.rng.pick([undefined, 48000]);
  }

  private newTag(format: Format, tag?: string): string {
    const name = tag ?? `${(this.rng.int(0xffffffff) >>> 0).toString(16).padStart(8, '0')}-${this.label}-${this.tagSeq++}`;
    this.tags.set(name, { format, chunk: this.rng.range(0, 70000), source: this.rng.int(PACKETS.length), cursor: 0, numericChunks: this.rng.chance(0.3) });
    distinctTags++;
    return name;
  }

  private anyTag(): [string, TagState] {
    const entries = [...this.tags.entries()];
    if (entries.length === 0) {
      const t = this.newTag(this.tagFormat());
      return [t, this.tags.get(t)!];
    }
    return this.rng.pick(entries);
  }

  /** The next batch: about BATCH frames, or a storm. */
  batch(): Frame[] {
    this.frames = [];
    if (this.mode === 'marathon') {
      this.marathon();
      return this.frames;
    }
    const storm = this.rng.next();
    if (storm < 0.01) this.distinctTagStorm();
    else if (storm < 0.016) this.startStopStorm();
    else if (storm < 0.02) this.formatStorm();
    else if (storm < 0.022) this.participantFlood();
    else if (storm < 0.026) this.pingStorm();
    else if (storm < 0.028) this.stopAll();
    else while (this.frames.length < BATCH) this.one();
    return this.frames;
  }

  private push(kind: string, data: string | Buffer): void {
    this.frames.push({ kind, data });
  }

  /** One frame from the weighted mix; a quarantined variant is drawn again. */
  private one(): void {
    for (let tries = 0; tries < 20; tries++) {
      const before = this.frames.length;
      this.rng.weighted(this.mix())();
      const added = this.frames.splice(before);
      const kept = added.filter((f) => !quarantined.has(f.kind));
      if (kept.length === added.length || tries === 19) {
        this.frames.push(...kept);
        return;
      }
    }
  }

  private mixCache: (readonly [() => void, number])[] | undefined;
  private mix(): (readonly [() => void, number])[] {
    if (this.mixCache) return this.mixCache;
    const chaos = this.mode === 'chaos';
    const valid = chaos ? 60 : 330;
    this.mixCache = [
      [() => this.validAudio(), valid],
      [() => this.validControl(), 26],
      [() => this.truncated(), 35],
      [() => this.garbageText(), 20],
      [() => this.deep(), 12],
      [() => this.numbers(), 30],
      [() => this.wrongType(), 70],
      [() => this.missing(), 20],
      [() => this.extraKeys(), 20],
      [() => this.repeatedKeys(), 20],
      [() => this.unknownEvent(), 30],
      [() => this.arrays(), 8],
      [() => this.unicode(), 25],
      [() => this.textEdge(), 6],
      [() => this.badBase64(), 40],
      [() => this.randomOpus(), 40],
      [() => this.tocGarbage(), 40],
      [() => this.bigPayload(), 4],
      [() => this.absurdChunk(), 25],
      [() => this.gap(), 20],
      [() => this.oggHostile(), this.mode === 'ogg' ? 150 : 30],
      [() => this.l16Hostile(), this.mode === 'l16' ? 80 : 15],
      [() => this.startFormats(), 30],
      [() => this.oddTags(), 10],
      [() => this.oddStops(), 10],
      [() => this.oddPing(), 20],
      [() => this.binary(), 20],
      [() => this.size(), 1.2],
    ];
    return this.mixCache;
  }

  // ---------------------------------------------------------------- valid

  private media(tag: string, st: TagState, payload: string, chunkOverride?: unknown): string {
    const chunk = chunkOverride ?? (st.numericChunks ? st.chunk : String(st.chunk));
    const ts = typeof chunkOverride === 'undefined' ? (st.numericChunks ? st.chunk * 960 : String(st.chunk * 960)) : 0;
    return ser({ event: 'media', sequenceNumber: String(st.chunk), media: { tag, chunk, timestamp: ts, payload } });
  }

  /** The next unit of the tag's audio, as the tag's format wants it. */
  private audioPayload(st: TagState): string {
    switch (st.format) {
      case 'opus': {
        const packets = B64[st.source % B64.length]!;
        return packets[st.cursor++ % packets.length]!;
      }
      case 'ogg': {
        if (st.cursor >= OGG.length) st.cursor = 0; // the file again: a new OpusHead mid-stream
        const size = this.rng.chance(0.5) ? (OGG_PAGES[this.rng.int(OGG_PAGES.length)]!.length) : this.rng.logRange(1, 8000);
        const slice = OGG.subarray(st.cursor, st.cursor + size);
        st.cursor += slice.length;
        return slice.toString('base64');
      }
      case 'l16': {
        const size = this.rng.logRange(1, 6000);
        const at = this.rng.int(TONE.length - size);
        return TONE.subarray(at, at + size).toString('base64');
      }
    }
  }

  private validAudio(): void {
    const [tag, st] = this.anyTag();
    st.chunk++;
    this.push(`valid:${st.format}`, this.media(tag, st, this.audioPayload(st)));
  }

  private validControl(): void {
    const r = this.rng.int(26);
    if (r < 10) this.push('valid:ping', ser({ event: 'ping', id: this.rng.pick([1, 'x', null, { n: 2 }]) }));
    else if (r < 18) {
      const [tag, st] = this.anyTag();
      this.push('valid:start', ser(TEMPLATE_STARTS(tag, this.encodingName(st.format), this.rate(st.format))));
    } else if (r < 22) {
      const [tag] = this.anyTag();
      this.tags.delete(tag);
      this.push('valid:stop', ser({ event: 'stop', stop: { tag } }));
    } else this.push('valid:info', ser({ event: 'info', text: 'fuzz', n: this.rng.int(100) }));
  }

  private gap(): void {
    const [tag, st] = this.anyTag();
    if (st.format !== 'opus') return this.validAudio();
    const variant = this.rng.pick(['loss', 'restart', 'late', 'nochunk', 'wrap'] as const);
    if (variant === 'loss') st.chunk += this.rng.range(2, 12);
    else if (variant === 'restart') st.chunk += this.rng.pick([3000, 3001, 10_000, -3000, -5000]);
    else if (variant === 'late') st.chunk -= this.rng.range(1, 50);
    else if (variant === 'wrap') st.chunk = this.rng.pick([65534, 65535, 32767, 32768]);
    else {
      this.push('gap:nochunk', ser({ event: 'media', media: { tag, payload: this.audioPayload(st) } }));
      return;
    }
    st.chunk = Math.max(0, st.chunk);
    this.push(`gap:${variant}`, this.media(tag, st, this.audioPayload(st)));
  }

  // ---------------------------------------------------------------- JSON garbage

  private template(): [string, Json] {
    const [tag, st] = this.anyTag();
    const event = this.rng.pick(['media', 'media', 'start', 'stop', 'ping', 'info'] as const);
    switch (event) {
      case 'media':
        return [event, { event, sequenceNumber: '7', media: { tag, chunk: String(st.chunk + 1), timestamp: '960', payload: this.audioPayload(st) } }];
      case 'start':
        return [event, TEMPLATE_STARTS(tag, this.encodingName(st.format), this.rate(st.format))];
      case 'stop':
        return [event, { event, stop: { tag } }];
      case 'ping':
        return [event, { event, id: 1 }];
      case 'info':
        return [event, { event, what: 'x' }];
    }
  }

  private truncated(): void {
    const [event, t] = this.template();
    const text = ser(t);
    this.push(`json:truncated-${event}`, text.slice(0, this.rng.int(text.length)));
  }

  private garbageText(): void {
    const variant = this.rng.int(6);
    if (variant === 0) this.push('json:garbage-bytes', this.rng.bytes(this.rng.logRange(1, 2000)).toString('latin1'));
    else if (variant === 1) this.push('json:garbage-utf8', this.rng.bytes(this.rng.logRange(1, 2000)).toString('utf8'));
    else if (variant === 2) this.push('json:scalar', this.rng.pick(['null', 'true', 'false', '0', '-1', '1e308', '"media"', '""', '"{}"', 'NaN', '[]', '{}', '[null]']));
    else if (variant === 3) this.push('json:ws-only', this.rng.pick([' ', '\n', '\t\r\n ', ' '.repeat(1000)]));
    else if (variant === 4) this.push('json:two-objects', `${ser(this.template()[1])}${ser(this.template()[1])}`);
    else this.push('json:comments', `{"event":"ping", /* c */ "id": 1} // trailing`);
  }

  /** Deep nesting (1k to 100k levels) at the top or in one field. */
  private deep(): void {
    const arrays = this.rng.chance(0.6);
    const depth = this.rng.pick(arrays ? [100, 1000, 5000, 20_000, 100_000] : [100, 1000, 5000, 20_000, 40_000]);
    const nest = arrays ? new Raw('['.repeat(depth) + ']'.repeat(depth)) : new Raw('{"a":'.repeat(depth) + '1' + '}'.repeat(depth));
    const where = this.rng.pick([
      'top', 'event', 'ping.id', 'info.extra', 'media', 'media.tag', 'media.payload', 'media.chunk', 'media.extra',
      'start.tag', 'start.mediaFormat', 'start.mediaFormat.encoding', 'start.customParameters', 'start.customParameters.x',
      'stop.tag', 'unknown.extra',
    ]);
    const kind = `deep:${where}`;
    if (quarantined.has(kind)) return;
    const [tag, st] = this.anyTag();
    let frame: Json;
    switch (where) {
      case 'top':
        this.push(kind, nest.text);
        return;
      case 'event':
        frame = { event: nest };
        break;
      case 'ping.id':
        frame = { event: 'ping', id: nest };
        break;
      case 'info.extra':
        frame = { event: 'info', extra: nest };
        break;
      case 'unknown.extra':
        frame = { event: 'fuzz-unknown', extra: nest };
        break;
      case 'stop.tag':
        frame = { event: 'stop', stop: { tag: nest } };
        break;
      default: {
        const [event, ...path] = where.split('.') as [string, ...string[]];
        frame =
          event === 'media'
            ? { event: 'media', media: { tag, chunk: String(st.chunk), payload: this.audioPayload(st) } }
            : TEMPLATE_STARTS(tag, 'opus');
        const root = frame[event] as Json;
        if (path.length === 0) frame[event] = nest;
        else if (path[0] === 'customParameters' && path.length === 2) (root.customParameters as Json).x = nest;
        else if (path.length === 2) ((root[path[0]!] as Json)[path[1]!] = nest);
        else root[path[0]!] = nest;
      }
    }
    this.push(kind, ser(frame));
  }

  private numbers(): void {
    const [tag, st] = this.anyTag();
    const field = this.rng.pick(['chunk', 'timestamp', 'sampleRate', 'channels', 'sequenceNumber'] as const);
    const value = this.rng.pick([
      -1, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, 2 ** 64, 1.5, 0.1, 1e-300, 4294967295, 4294967296, 65535, 65536, 0, 7, 255, 44100,
      new Raw('-0'), new Raw('1e400'), new Raw('123456789012345678901234567890'), new Raw('0.00000000000000000001'),
      'NaN', 'Infinity', '-1', '1e3', '0x10', '１２３', '999999999999999', '9999999999999999', '000000000000000', ' 1', '', '1.0', '٣٤',
    ]);
    const kind = `json:number-${field}`;
    if (field === 'sampleRate' || field === 'channels') {
      const t = TEMPLATE_STARTS(tag, this.rng.pick(['opus', 'l16', 'ogg']), 16000);
      ((t.start as Json).mediaFormat as Json)[field] = value;
      this.push(kind, ser(t));
    } else {
      const m: Json = { event: 'media', sequenceNumber: '1', media: { tag, chunk: String(st.chunk + 1), timestamp: '0', payload: this.audioPayload(st) } };
      if (field === 'sequenceNumber') m.sequenceNumber = value;
      else (m.media as Json)[field] = value;
      this.push(kind, ser(m));
    }
  }

  private wrongType(): void {
    const [event, t] = this.template();
    const all = paths(t);
    const path = this.rng.pick(all);
    setPath(t, path, this.rng.pick(HOSTILE_VALUES));
    this.push(`json:type-${event}.${path.join('.')}`.slice(0, 60), ser(t));
  }

  private missing(): void {
    const [event, t] = this.template();
    const path = this.rng.pick(paths(t));
    deletePath(t, path);
    this.push(`json:missing-${event}.${path.join('.')}`, ser(t));
  }

  private extraKeys(): void {
    const [event, t] = this.template();
    const key = this.rng.pick(['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', '']);
    const value = this.rng.pick([{ polluted: true }, { prototype: { polluted: true } }, null, 1, 'x', [], new Pairs([['__proto__', { tag: 'p' }]])]);
    const where = this.rng.pick(['top', 'inner'] as const);
    const inner = Object.keys(t).find((k) => typeof t[k] === 'object' && t[k] !== null);
    if (where === 'inner' && inner) {
      const obj = t[inner] as Json;
      t[inner] = new Pairs([[key, value], ...Object.entries(obj)]);
    } else {
      this.push(`json:extra-${key || 'empty'}-top`, ser(new Pairs([[key, value], ...Object.entries(t)])));
      return;
    }
    this.push(`json:extra-${key || 'empty'}-${event}`, ser(t));
  }

  private repeatedKeys(): void {
    const [tag, st] = this.anyTag();
    const media = { tag, chunk: String(st.chunk + 1), payload: this.audioPayload(st) };
    const variant = this.rng.int(5);
    if (variant === 0) this.push('json:repeat-event', ser(new Pairs([['event', 'media'], ['media', media], ['event', this.rng.pick(['stop', 'ping', 'nope', null])]])));
    else if (variant === 1) this.push('json:repeat-event2', ser(new Pairs([['event', 'ping'], ['event', 'media'], ['media', media]])));
    else if (variant === 2) this.push('json:repeat-media', ser(new Pairs([['event', 'media'], ['media', media], ['media', { tag: 7 }]])));
    else if (variant === 3) this.push('json:repeat-tag', ser(new Pairs([['event', 'media'], ['media', new Pairs([['tag', tag], ['payload', media.payload], ['tag', this.rng.pick(['', 5, tag + 'x'])]])]])));
    else this.push('json:repeat-many', `{${'"event":"media",'.repeat(1000)}"media":${ser(media)}}`);
  }

  private unknownEvent(): void {
    const name = this.rng.chance(0.5) ? this.rng.pick(ODD_EVENT_NAMES) : `ev-${this.rng.int(100_000)}`;
    const variant = this.rng.int(3);
    if (variant === 0) this.push('json:unknown-event', ser({ event: name }));
    else if (variant === 1) this.push('json:unknown-event-body', ser({ event: name, media: { tag: 'x', payload: 'AAAA' }, start: {} }));
    else this.push('json:no-event', ser(this.rng.pick([{}, { media: { tag: 't', payload: 'AAAA' } }, { Event: 'media' }, { type: 'media' }])));
  }

  private arrays(): void {
    const [, t] = this.template();
    this.push('json:array', ser(this.rng.pick([[t], [t, t], [], [[t]], [null], ['media']])));
  }

  private unicode(): void {
    const [tag, st] = this.anyTag();
    const weird = this.rng.pick(['🎤', '\u0000', '\ud800', '\udc00\ud800', '\u202e', 'é', 'e\u0301', '\ufeff', '\u2028\u2029', '𝕏', '中文', '\u00a0']);
    const variant = this.rng.int(5);
    if (variant === 0) {
      const name = `${weird}-${tag}`.slice(0, 256);
      this.newTag(st.format, name);
      this.push('json:unicode-tag', this.media(name, this.tags.get(name)!, this.audioPayload(st)));
    } else if (variant === 1) this.push('json:unicode-payload', ser({ event: 'media', media: { tag, payload: `AA${weird}A` } }));
    else if (variant === 2) this.push('json:unicode-event', ser({ event: `media${weird}` }));
    else if (variant === 3) this.push('json:unicode-escapes', `{"event":"\\u006dedia","media":{"tag":"\\ud800\\udfff${tag}","payload":"${this.audioPayload(st)}"}}`);
    else this.push('json:unicode-key', `{"event":"media","m\\u0065dia":{"tag":"${tag}","payload":"AAAA"}}`);
  }

  private textEdge(): void {
    const [, t] = this.template();
    this.push('text:edge', this.rng.pick(['', '\ufeff' + ser(t), ser(t) + '\u0000', ' '.repeat(100) + ser(t), ser(t) + ' garbage', '\u0000']));
  }

  // ---------------------------------------------------------------- payloads

  private badBase64(): void {
    const [tag, st] = this.anyTag();
    const good = B64[0]![this.rng.int(B64[0]!.length)]!;
    const variant = this.rng.int(10);
    const payload = [
      good.replace(/\+/g, '-').replace(/\//g, '_') + '-_', // base64url
      good.replace(/=+$/, '') + (good.endsWith('=') ? '' : 'A'), // unpadded / length % 4 = 1
      good + '====',
      good.slice(0, 8) + '\n' + good.slice(8),
      good.slice(0, 4) + ' ' + good.slice(4),
      'data:audio/opus;base64,' + good,
      good.slice(0, 4) + '=' + good.slice(5),
      good.slice(0, 6) + 'é' + good.slice(7),
      '*'.repeat(this.rng.range(1, 40)),
      good + '\u0000',
    ][variant]!;
    this.push(`b64:bad-${variant}`, this.media(tag, st, payload));
  }

  private randomOpus(): void {
    const [tag, st] = this.anyTag();
    st.chunk++;
    this.push('opus:random', this.media(tag, st, this.rng.bytes(this.rng.logRange(1, 1500) - (this.rng.chance(0.05) ? 1 : 0)).toString('base64')));
  }

  /** A well-formed TOC byte (any config, mono/stereo, code 0-3) and garbage after it. */
  private tocGarbage(): void {
    const [tag, st] = this.anyTag();
    const config = this.rng.int(32);
    const stereo = this.rng.int(2);
    const code = this.rng.int(4);
    const parts: number[] = [(config << 3) | (stereo << 2) | code];
    if (code === 3) {
      const vbr = this.rng.int(2);
      const padding = this.rng.int(2);
      parts.push((vbr << 7) | (padding << 6) | this.rng.pick([0, 1, 2, 6, 24, 48, 63]));
      if (padding) parts.push(...Array.from({ length: this.rng.range(1, 4) }, () => this.rng.pick([0, 1, 254, 255])));
    } else if (code === 2) parts.push(this.rng.pick([0, 1, 251, 252, 253, 255]), this.rng.int(256));
    const body = this.rng.bytes(this.rng.logRange(1, 1275));
    st.chunk++;
    this.push(`opus:toc-code${code}`, this.media(tag, st, Buffer.concat([Buffer.from(parts), body]).subarray(0, this.rng.chance(0.1) ? this.rng.range(1, 3) : undefined).toString('base64')));
  }

  private bigPayload(): void {
    const [tag, st] = this.anyTag();
    st.chunk++;
    this.push('opus:big', this.media(tag, st, this.rng.bytes(this.rng.logRange(1276, 190_000)).toString('base64')));
  }

  private absurdChunk(): void {
    const [tag, st] = this.anyTag();
    const value = this.rng.pick([-1, 1e308, 2 ** 53, 2 ** 53 - 1, 0, 65535, 65536, 2 ** 32, '999999999999999', '000000000000001', '-1', 1.5, new Raw('1e400')]);
    this.push('opus:absurd-chunk', this.media(tag, st, this.audioPayload(st), value));
  }

  private oggHostile(): void {
    const [tag, st] = this.anyTag();
    const page = OGG_PAGES[this.rng.int(OGG_PAGES.length)]!;
    const variant = this.rng.pick(['random', 'truncated', 'crc', 'version', 'head', 'oversized', 'capture', 'multi', 'lacing'] as const);
    let bytes: Buffer;
    switch (variant) {
      case 'random':
        bytes = this.rng.bytes(this.rng.logRange(1, 9000));
        break;
      case 'truncated':
        bytes = page.subarray(0, this.rng.int(page.length));
        break;
      case 'crc': {
        bytes = Buffer.from(page);
        const at = this.rng.int(bytes.length);
        bytes[at] = bytes[at]! ^ (1 << this.rng.int(8));
        break;
      }
      case 'version':
        bytes = oggPage(page.subarray(27 + page[26]!), { version: this.rng.range(1, 255), flags: this.rng.int(8) });
        break;
      case 'head':
        bytes = oggPage(opusHead(this.rng), { flags: 2, serial: this.rng.int(4) });
        break;
      case 'oversized': {
        // Pages of 255 full segments whose packet never ends.
        const pages = Array.from({ length: this.rng.range(1, 2) }, (_, i) =>
          oggPage(this.rng.bytes(255 * 255), { flags: i === 0 ? this.rng.pick([0, 1]) : 1, seq: st.cursor + i, lacing: new Array(255).fill(255) }),
        );
        bytes = Buffer.concat(pages);
        break;
      }
      case 'capture':
        bytes = Buffer.concat([Buffer.from('OggS'), this.rng.bytes(this.rng.logRange(1, 400))]);
        break;
      case 'multi':
        bytes = Buffer.concat(Array.from({ length: this.rng.range(2, 12) }, () => OGG_PAGES[this.rng.int(OGG_PAGES.length)]!));
        break;
      case 'lacing': {
        const segments = this.rng.range(0, 255);
        const lacing = Array.from({ length: segments }, () => this.rng.int(256));
        bytes = oggPage(this.rng.bytes(this.rng.int(2000)), { lacing, flags: this.rng.int(8), granule: this.rng.pick([-1n, 0n, 2n ** 62n]) });
        break;
      }
    }
    st.chunk++;
    this.push(`ogg:${variant}`, this.media(tag, st, bytes.toString('base64')));
  }

  private l16Hostile(): void {
    const [tag, st] = this.anyTag();
    const size = this.rng.pick([0, 1, 2, 3, 5, 7, 4097, 3, 1, 1, this.rng.logRange(1, 120_000) | 1]);
    st.chunk++;
    this.push(`l16:${size === 0 ? 'empty' : size & 1 ? 'odd' : 'even'}`, this.media(tag, st, this.rng.bytes(size).toString('base64')));
  }

  // ---------------------------------------------------------------- start / stop / ping

  private startFormats(): void {
    const [tag, st] = this.anyTag();
    const encoding = this.rng.pick(['opus', 'ogg-opus', 'ogg', 'l16', 'OPUS', 'pcm', 'linear16', '', null, 7, 'opus ', 'l16\u0000']);
    const sampleRate = this.rng.pick([undefined, 7, 0, -1, 8000, 16000, 44100, 48000, '48000', '16000', 1e308, 96000, 'NaN']);
    const channels = this.rng.pick([undefined, 0, 1, 2, 255, 256, -1, '2', 1e308]);
    const format: Json = { encoding };
    if (sampleRate !== undefined) format.sampleRate = sampleRate;
    if (channels !== undefined) format.channels = channels;
    const frame = { event: 'start', start: { tag, mediaFormat: format } };
    // A valid switch changes what this tag's audio must be.
    if (encoding === 'opus' || encoding === 'l16') st.format = encoding;
    else if (encoding === 'ogg' || encoding === 'ogg-opus') {
      st.format = 'ogg';
      st.cursor = 0;
    }
    this.push('start:format', ser(frame));
  }

  private oddTags(): void {
    const len = this.rng.pick([0, 1, 255, 256, 257, 300, 10_000]);
    const tag = len === 0 ? '' : `${(this.rng.int(0xffffff)).toString(16)}-`.padEnd(len, 'T').slice(0, len);
    const st: TagState = { format: 'opus', chunk: 0, source: 0, cursor: 0, numericChunks: true };
    if (len > 0 && len <= 256) {
      this.tags.set(tag, st);
      distinctTags++;
    }
    if (this.rng.chance(0.5)) this.push(`tag:start-len${len}`, ser(TEMPLATE_STARTS(tag, 'opus')));
    else this.push(`tag:media-len${len}`, this.media(tag, st, this.audioPayload(st)));
  }

  private oddStops(): void {
    const [tag] = this.anyTag();
    this.push('stop:odd', ser(this.rng.pick([{ event: 'stop' }, { event: 'stop', stop: {} }, { event: 'stop', stop: { tag: 'never-started' } }, { event: 'stop', stop: { tag: tag + '?' } }, { event: 'stop', stop: null }, { event: 'stop', stop: [tag] }])));
  }

  private oddPing(): void {
    const id = this.rng.pick([
      undefined, null, 0, -0, 1e308, -1, 2 ** 53 + 2, '', 'x'.repeat(100_000), '\ud800', '🎤', [], [1, [2, [3]]], {}, { a: { b: { c: 1 } } },
      new Pairs([['__proto__', { polluted: true }]]), new Pairs([['id', 1], ['id', 2]]), true, new Raw('1e400'), new Raw('-0'),
      Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, i])),
    ]);
    if (id === undefined) this.push('ping:no-id', '{"event":"ping"}');
    else this.push('ping:odd-id', ser(new Pairs([['event', 'ping'], ['id', id]])));
  }

  private binary(): void {
    const variant = this.rng.int(3);
    if (variant === 0) this.push('binary:random', this.rng.bytes(this.rng.logRange(1, 4000)));
    else if (variant === 1) this.push('binary:json', Buffer.from(ser(this.template()[1])));
    else this.push('binary:empty', Buffer.alloc(0));
  }

  /** Frames at, just over and far over MAX_MESSAGE_BYTES, and over the transport limit. */
  private size(): void {
    const [tag, st] = this.anyTag();
    const r = this.rng.next();
    const padded = (chars: number, fill: string) => {
      const head = `{"event":"media","media":{"tag":${JSON.stringify(tag)},"payload":"${B64[0]![0]}"},"pad":"`;
      const room = chars - head.length - 2;
      return head + fill.repeat(Math.max(0, Math.floor(room / fill.length))) + 'x'.repeat(Math.max(0, room % fill.length)) + '"}';
    };
    if (r < 0.75) {
      const delta = this.rng.pick([-1, 0, 1, 2, -100]);
      this.push(`size:limit${delta >= 0 ? '+' : ''}${delta}`, padded(MAX_MESSAGE + delta, 'a'));
    } else if (r < 0.85) this.push('size:limit-multibyte', padded(MAX_MESSAGE, this.rng.pick(['é', '😀', '中'])));
    else if (r < 0.93) this.push('size:1MB', padded(1 << 20, 'b'));
    else if (r < 0.97) this.push('size:4MB-binary', Buffer.alloc(4 << 20, 1));
    else this.push('size:over-transport', 'x'.repeat(TRANSPORT_LIMIT + 1));
    void st;
  }

  // ---------------------------------------------------------------- storms

  /** start, one packet, stop, for tags never seen before. */
  private distinctTagStorm(): void {
    const n = this.rng.range(30, 100);
    for (let i = 0; i < n; i++) this.oneDistinctTag('storm:distinct-tags');
  }

  private oneDistinctTag(kind: string): void {
    const tag = this.newTag('opus');
    const st = this.tags.get(tag)!;
    this.push(kind, ser(TEMPLATE_STARTS(tag, 'opus', 48000)));
    st.chunk++;
    this.push(kind, this.media(tag, st, this.audioPayload(st)));
    this.push(kind, ser({ event: 'stop', stop: { tag } }));
    this.tags.delete(tag);
  }

  private marathon(): void {
    const n = Math.min(this.marathonLeft, 16);
    for (let i = 0; i < n; i++) this.oneDistinctTag('marathon:distinct-tags');
    this.marathonLeft -= n;
  }

  get marathonDone(): boolean {
    return this.mode === 'marathon' && this.marathonLeft === 0;
  }

  private startStopStorm(): void {
    const n = this.rng.range(50, 300);
    for (let i = 0; i < n; i++) {
      const [tag, st] = this.rng.chance(0.8) ? this.anyTag() : [this.newTag('opus'), undefined];
      if (this.rng.chance(0.5)) this.push('storm:start-stop', ser(TEMPLATE_STARTS(tag, this.encodingName(st?.format ?? 'opus'))));
      else {
        this.push('storm:start-stop', ser({ event: 'stop', stop: { tag } }));
        if (this.rng.chance(0.5)) this.tags.delete(tag);
      }
    }
  }

  /** A tag switching format back and forth, with audio in between. */
  private formatStorm(): void {
    const [tag, st] = this.anyTag();
    for (let i = 0; i < this.rng.range(20, 80); i++) {
      const format = this.rng.pick(['opus', 'ogg', 'l16'] as const);
      st.format = format;
      st.cursor = 0;
      this.push('storm:format', ser(TEMPLATE_STARTS(tag, this.encodingName(format), this.rate(format))));
      for (let k = this.rng.range(0, 3); k > 0; k--) {
        st.chunk++;
        this.push('storm:format', this.media(tag, st, this.audioPayload(st)));
      }
    }
  }

  /** New tags (start only) until the server closes the socket at MAX_PARTICIPANTS. */
  private participantFlood(): void {
    const n = MAX_PARTICIPANTS > 0 ? MAX_PARTICIPANTS + 2 : 300;
    for (let i = 0; i < n; i++) this.push('storm:participants', ser(TEMPLATE_STARTS(this.newTag('opus'), 'opus')));
  }

  private pingStorm(): void {
    for (let i = this.rng.range(50, 200); i > 0; i--) this.oddPing();
  }

  private stopAll(): void {
    for (const tag of [...this.tags.keys()]) this.push('storm:stop-all', ser({ event: 'stop', stop: { tag } }));
    // The same tags again: a media after stop starts a new stream.
    for (const [tag, st] of this.tags) {
      st.chunk++;
      this.push('storm:stop-all', this.media(tag, st, this.audioPayload(st)));
    }
  }
}

// ================================================================ the server, restarts, triage

interface Crash {
  n: number;
  cause: string;
  /** The server's stderr, not JSON log lines (the stack). */
  stderr: string[];
  culprit?: { slot: number; index: number; frame: Frame; stderr: string[]; preceding: number };
  file: string;
  candidates: number;
}

class Logs {
  byLevel = new Map<string, number>();
  errorLines: string[] = [];
  /** stderr lines that are not JSON log lines: stacks, warnings. */
  raw: string[] = [];
  stdoutLines = 0;

  line(text: string, stream: 'stdout' | 'stderr'): void {
    if (stream === 'stdout') this.stdoutLines++;
    if (text.startsWith('{')) {
      try {
        const record = JSON.parse(text) as { level?: string };
        const level = String(record.level);
        this.byLevel.set(level, (this.byLevel.get(level) ?? 0) + 1);
        if (level === 'error' && this.errorLines.length < 20) this.errorLines.push(text.slice(0, 2000));
        return;
      } catch {
        // fall through: not a log line
      }
    }
    if (this.raw.length < 2000) this.raw.push(`${stream}: ${text}`);
  }
}

const UNCAUGHT = /uncaught|unhandled|^\s+at |Error:|Node\.js v\d|throw |FATAL|Aborted|out of memory/i;

let sink: TimingSink;
let server: ServerProcess;
let serverLogs = new Logs();
const allLogs: Logs[] = [];
let restarts = 0;
const crashes: Crash[] = [];
let serverUp: Promise<void> = Promise.resolve();
let handlingFailure = false;
let finished = false;

async function launch(options: Partial<StartOptions> = {}, logs = new Logs()): Promise<ServerProcess> {
  return startServer(sink, {
    env: SERVER_ENV,
    onStdout: (line) => logs.line(line, 'stdout'),
    onStderr: (line) => logs.line(line, 'stderr'),
    ...options,
  });
}

async function startMain(): Promise<void> {
  serverLogs = new Logs();
  allLogs.push(serverLogs);
  server = await launch({}, serverLogs);
  const mine = server;
  void mine.exited.then(({ code, signal }) => {
    if (!finished && server === mine) void serverFailed(`exited with ${code ?? signal}`);
  });
}

/** The server died or hangs: name the frame, restart, let the sockets reconnect. */
async function serverFailed(cause: string): Promise<void> {
  if (handlingFailure) return;
  handlingFailure = true;
  let release!: () => void;
  serverUp = new Promise((r) => (release = r));
  const failedLogs = serverLogs;
  const failed = server;
  if (server.child.exitCode === null) {
    server.child.kill('SIGKILL');
    await server.exited;
  }
  // Give the sockets a moment to see the close, then take their suspects.
  await sleep(200);
  const suspects = slots.map((s) => ({ slot: s.index, query: s.query, frames: s.suspects(failed), history: s.historySnapshot(failed) }));
  const n = crashes.length + 1;
  const crash: Crash = {
    n,
    cause,
    stderr: failedLogs.raw.filter((l) => l.startsWith('stderr')).slice(-60),
    file: `/tmp/fuzz-crash-${n}.jsonl`,
    candidates: suspects.reduce((k, s) => k + s.frames.length, 0),
  };
  crashes.push(crash);
  console.log(`\n!! server ${cause}; ${crash.candidates} unanswered frames on ${suspects.filter((s) => s.frames.length).length} sockets; triage…`);
  for (const line of crash.stderr.slice(-25)) console.log(`   ${line}`);
  writeFileSync(
    crash.file,
    suspects
      .flatMap((s) => s.frames.map((f) => JSON.stringify({ slot: s.slot, query: s.query, kind: f.kind, binary: typeof f.data !== 'string', data: typeof f.data === 'string' ? f.data : f.data.toString('base64') })))
      .join('\n') + '\n',
  );
  crash.culprit = await triage(suspects.map((s) => ({ slot: s.slot, query: s.query, frames: s.frames })));
  if (!crash.culprit) {
    console.log('   not reproduced from the unanswered frames alone; replaying each socket\'s whole session…');
    crash.culprit = await triage(suspects.map((s) => ({ slot: s.slot, query: s.query, frames: s.history })));
  }
  if (crash.culprit) {
    quarantined.add(crash.culprit.frame.kind);
    console.log(`   culprit: socket ${crash.culprit.slot}, ${describeFrame(crash.culprit.frame)}; variant ${crash.culprit.frame.kind} no longer generated`);
    for (const line of crash.culprit.stderr.slice(-30)) console.log(`   | ${line}`);
  } else console.log(`   no single frame reproduced it; the suspects are in ${crash.file}`);
  restarts++;
  await startMain();
  handlingFailure = false;
  release();
}

/**
 * Replays each socket's frames in order on a server of its own (source-mapped stacks), each
 * frame followed by a ping; the frame after which the server dies or stops answering is the culprit.
 */
async function triage(sets: { slot: number; query: string; frames: Frame[] }[]): Promise<Crash['culprit']> {
  for (const set of sets) {
    if (set.frames.length === 0) continue;
    const logs = new Logs();
    const probe = await launch({ nodeArgs: ['--enable-source-maps'] }, logs);
    let died = false;
    void probe.exited.then(() => (died = true));
    try {
      let ws: Client | undefined;
      for (const [index, frame] of set.frames.entries()) {
        if (!ws || ws.closed) {
          ws = await Client.open(probe.port, set.query).catch(() => undefined);
          if (!ws) break; // the server died on the previous frame's close (reported below) or refuses
        }
        ws.send(frame.data);
        const answered = await ws.ping(`triage-${index}`, 10_000);
        if (answered !== 'pong') await sleep(300); // a close: was it the server dying?
        if (died || answered === 'timeout') {
          if (!died) probe.child.kill('SIGKILL');
          await probe.exited;
          await sleep(100); // the last stderr lines
          return { slot: set.slot, index, frame, stderr: logs.raw.filter((l) => l.startsWith('stderr')).map((l) => l.slice(8)).slice(-40), preceding: index };
        }
      }
      ws?.terminate();
    } finally {
      await stopServer(probe);
    }
  }
  return undefined;
}

function describeFrame(frame: Frame): string {
  const text = typeof frame.data === 'string' ? frame.data : `<binary ${frame.data.length} bytes: ${frame.data.subarray(0, 32).toString('hex')}…>`;
  const shown = text.length <= 400 ? text : `${text.slice(0, 200)} …[${text.length - 300} more characters]… ${text.slice(-100)}`;
  return `kind ${frame.kind}, ${text.length} characters: ${shown}`;
}

// ================================================================ a client socket

class Client {
  closed = false;
  closeCode: number | undefined;
  private acks = new Map<string, (r: 'pong' | 'closed' | 'timeout') => void>();
  onError?: (code: string) => void;
  onPong?: () => void;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString();
      let msg: { event?: string; id?: unknown; code?: string };
      try {
        msg = JSON.parse(text);
      } catch {
        counters.unparsedReplies++;
        return;
      }
      if (msg.event === 'pong') {
        counters.pongs++;
        if (typeof msg.id === 'string') this.acks.get(msg.id)?.('pong');
      } else if (msg.event === 'error') this.onError?.(String(msg.code));
    });
    ws.on('close', (code) => {
      this.closed = true;
      this.closeCode = code;
      for (const resolve of this.acks.values()) resolve('closed');
      this.acks.clear();
    });
    ws.on('error', () => {
      counters.clientErrors++;
    });
  }

  /** Opens a session and waits for its `info`; rejects with the HTTP status of a refused upgrade. */
  static async open(port: number, query: string, path = '/transcribe', timeoutMs = OPEN_TIMEOUT_MS): Promise<Client> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}?${query}`, { perMessageDeflate: false, maxPayload: 64 << 20 });
    ws.on('error', () => {});
    const started = performance.now();
    let upgraded: number | undefined;
    ws.once('upgrade', () => (upgraded = performance.now() - started));
    const first = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        ws.terminate();
        const within = `no info within ${timeoutMs / 1000} s`;
        reject(new Error(upgraded === undefined ? `${within} (no 101 either)` : `${within} (101 after ${(upgraded / 1000).toFixed(1)} s)`));
      }, timeoutMs);
      ws.once('unexpected-response', (_req, res) => {
        clearTimeout(timer);
        reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode }));
        res.resume();
      });
      ws.once('message', (data) => {
        clearTimeout(timer);
        resolve(data.toString());
      });
      ws.once('close', () => {
        clearTimeout(timer);
        reject(new Error('closed before info'));
      });
      ws.once('error', (e) => {
        clearTimeout(timer);
        ws.terminate();
        reject(e);
      });
    });
    if (!first.includes('"event":"info"')) {
      ws.terminate();
      throw new Error(`first message is not info: ${first.slice(0, 200)}`);
    }
    openLatencies.push(performance.now() - started);
    return new Client(ws);
  }

  send(data: string | Buffer): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(data, { binary: typeof data !== 'string' });
    return true;
  }

  /** A control ping; resolves when its pong is back (every frame before it handled). */
  ping(id: string, timeoutMs = ACK_TIMEOUT_MS): Promise<'pong' | 'closed' | 'timeout'> {
    if (!this.send(`{"event":"ping","id":${JSON.stringify(id)}}`)) return Promise.resolve('closed');
    return new Promise((resolve) => {
      const timer = setTimeout(() => done('timeout'), timeoutMs);
      const done = (r: 'pong' | 'closed' | 'timeout') => {
        clearTimeout(timer);
        this.acks.delete(id);
        resolve(r);
      };
      this.acks.set(id, done);
    });
  }

  close(): void {
    this.ws.close(1000);
  }

  terminate(): void {
    this.ws.terminate();
  }
}

// ================================================================ the sockets

const counters = {
  sent: 0,
  bytes: 0,
  byFamily: new Map<string, number>(),
  errors: new Map<string, number>(),
  closes: new Map<string, number>(),
  sessions: 0,
  infos: 0,
  refusedUpgrades: new Map<string, number>(),
  openFailures: 0,
  pongs: 0,
  unparsedReplies: 0,
  clientErrors: 0,
  stalls: 0,
  distinctTagsMax: 0,
};

const bump = (map: Map<string, number>, key: string, by = 1) => map.set(key, (map.get(key) ?? 0) + by);

class Slot {
  private readonly rng: Rng;
  private client: Client | undefined;
  private gen: SessionGen | undefined;
  query = '';
  sent = 0;
  private sessionNo = 0;
  private lifetime = 0;
  /** Batches sent and not yet answered, oldest first. */
  private inflight: { id: string; frames: Frame[]; answered: Promise<'pong' | 'closed' | 'timeout'> }[] = [];
  /** The server process the current session runs on. */
  private sessionServer: ServerProcess | undefined;
  /** Suspects kept when the socket closed (the server may have died), and the server they went to. */
  private closedInflight: Frame[] = [];
  private closedServer: ServerProcess | undefined;
  private history: Frame[] = [];
  private historyBytes = 0;
  private closedHistory: Frame[] = [];
  private batchNo = 0;
  /** The session's opening `start`s, sent with its first batch. */
  private opening: Frame[] = [];

  constructor(
    readonly index: number,
    readonly quota: number,
  ) {
    this.rng = new Rng(`${SEED}/${index}`);
  }

  /** The frames sent to `failed` and not answered. */
  suspects(failed: ServerProcess): Frame[] {
    if (this.sessionServer === failed && this.inflight.length) return this.inflight.flatMap((b) => b.frames);
    return this.closedServer === failed ? this.closedInflight : [];
  }

  /** The frames of the session on `failed`, from its start. */
  historySnapshot(failed: ServerProcess): Frame[] {
    if (this.sessionServer === failed && this.history.length) return [...this.history];
    return this.closedServer === failed ? this.closedHistory : [];
  }

  async run(): Promise<void> {
    while (this.sent < this.quota) {
      if (!this.client || this.client.closed) await this.open();
      if (!this.client) continue;
      const frames = this.sessionFrames();
      let sent = 0;
      for (const frame of frames) {
        if (!this.client.send(frame.data)) break;
        sent++;
        this.sent++;
        counters.sent++;
        counters.bytes += frame.data.length;
        bump(counters.byFamily, frame.kind.slice(0, frame.kind.indexOf(':')));
        if (this.historyBytes < 8 << 20) {
          this.history.push(frame);
          this.historyBytes += frame.data.length;
        }
      }
      const id = `fz-${this.index}-${++this.batchNo}`;
      this.inflight.push({ id, frames: frames.slice(0, sent), answered: this.client.ping(id) });
      while (this.inflight.length > WINDOW || (this.inflight.length && this.client.closed)) {
        const oldest = this.inflight[0]!;
        const result = await oldest.answered;
        if (result === 'pong') this.inflight.shift();
        else if (result === 'timeout') {
          counters.stalls++;
          console.log(`\n!! socket ${this.index}: no pong within ${ACK_TIMEOUT_MS / 1000} s (batch ${oldest.id})`);
          if (!handlingFailure) void serverFailed(`stopped answering socket ${this.index} for ${ACK_TIMEOUT_MS / 1000} s`);
          this.client.terminate();
          this.closed();
          break;
        } else {
          this.closed();
          break;
        }
      }
      this.lifetime -= sent;
      if (this.client && !this.client.closed && (this.lifetime <= 0 || this.gen?.marathonDone)) await this.finishSession();
    }
    if (this.client && !this.client.closed) await this.finishSession();
  }

  private sessionFrames(): Frame[] {
    const opening = this.opening;
    this.opening = [];
    return [...opening, ...this.gen!.batch()];
  }

  /** The socket was closed (by the server, or it died): keep the suspects a moment. */
  private closed(): void {
    const code = this.client?.closeCode;
    bump(counters.closes, String(code ?? 'unknown'));
    this.closedInflight = this.inflight.flatMap((b) => b.frames);
    this.closedHistory = this.history;
    this.closedServer = this.sessionServer;
    this.sessionServer = undefined;
    if (this.gen?.mode === 'marathon' && !this.gen.marathonDone) marathonStarted = false;
    this.inflight = [];
    this.history = [];
    this.historyBytes = 0;
    this.client = undefined;
  }

  private async finishSession(): Promise<void> {
    const client = this.client!;
    // Wait for the last batches, then close as a media server would (or abruptly).
    for (const b of this.inflight) await b.answered;
    this.inflight = [];
    this.history = [];
    this.historyBytes = 0;
    const how = this.rng.next();
    if (how < 0.8) client.close();
    else if (how < 0.9) client.terminate();
    else client.ws.close(this.rng.pick([1001, 4000, 3000, 1008]), 'fuzz');
    bump(counters.closes, 'by client');
    this.client = undefined;
    this.sessionServer = undefined;
  }

  private async open(): Promise<void> {
    await serverUp;
    const target = server;
    const port = target.port;
    this.sessionNo++;
    const marathon = this.index === 0 && this.sessionNo >= 3 && !marathonStarted && !quarantined.has('marathon:distinct-tags');
    const mode: Mode = marathon ? 'marathon' : this.rng.weighted([['opus', 55], ['ogg', 15], ['l16', 15], ['chaos', 15]] as const);
    const gen = new SessionGen(this.rng, mode, `${this.index}.${this.sessionNo}`);
    // Now and then a refused upgrade first (bad parameters, wrong path).
    if (this.rng.chance(0.02)) {
      const [path, query] = this.rng.pick([
        ['/transcribe', 'sendBack=maybe'],
        ['/transcribe', 'sendBack=true&lang=english!'],
        ['/transcribe', 'sendBack=true&provider=whisper'],
        ['/transcribe', 'sendBack=true&encoding=mp3'],
        ['/transcribe', `sendBack=true&sessionId=${'s'.repeat(300)}`],
        ['/transcribe', 'sessionId=no-output'],
        ['/transcribe/', 'sendBack=true'],
        ['/x/transcribe', 'sendBack=true'],
      ] as const);
      try {
        const c = await Client.open(port, query, path);
        bump(counters.refusedUpgrades, 'accepted');
        c.close();
      } catch (e) {
        const status = (e as { status?: number }).status;
        if (status !== undefined) bump(counters.refusedUpgrades, String(status));
      }
    }
    const params = new URLSearchParams();
    if (this.rng.chance(0.9)) params.set('sessionId', `fuzz-${this.index}-${this.sessionNo}${this.rng.pick(['', '.a', ':b', '@c', '_d'])}`);
    params.set('sendBack', this.rng.pick(['true', '1', 'yes', 'on', 'TRUE']));
    if (this.rng.chance(0.3)) params.set('sendBackInterim', this.rng.pick(['true', 'false', '0']));
    if (this.rng.chance(0.3)) params.set('lang', this.rng.pick(['en', 'pt-BR', 'de', 'zh-Hant-TW']));
    const encoding = gen.urlEncoding();
    if (encoding) params.set('encoding', encoding);
    if (this.rng.chance(0.1)) params.set('unknownParam', 'x');
    this.query = params.toString();
    try {
      this.client = await Client.open(port, this.query);
    } catch (e) {
      // The server may have died under it (its exit not seen yet): then wait for the restart.
      await sleep(1000);
      if (handlingFailure || port !== server.port) return;
      counters.openFailures++;
      bump(openFailureReasons, (e as Error).message);
      if (counters.openFailures <= 5) console.log(`\n!! socket ${this.index}: open failed: ${(e as Error).message}`);
      if (counters.openFailures > 500) {
        gaveUp = true;
        this.sent = this.quota;
      }
      return;
    }
    counters.sessions++;
    counters.infos++;
    this.sessionServer = target;
    if (mode === 'marathon') marathonStarted = true;
    this.client.onError = (code) => bump(counters.errors, code);
    this.gen = gen;
    this.lifetime = mode === 'marathon' ? Infinity : this.rng.logRange(200, 20_000);
    this.history = [];
    this.historyBytes = 0;
    this.opening = gen.opening();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let slots: Slot[] = [];
/** Set when sessions could no longer be opened: the run stopped early. */
let gaveUp = false;
const openFailureReasons = new Map<string, number>();

// ================================================================ the end checks

async function httpGet(port: number, path: string, timeoutMs = 10_000): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: await res.text() };
}

function metricTotals(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^(\w+)(\{[^}]*\})?\s+([\d.e+-]+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const label = /reason="([^"]*)"/.exec(m[2] ?? '')?.[1] ?? (m[2] ?? '');
    out.set(label, (out.get(label) ?? 0) + Number(m[3]));
  }
  return out;
}

const fmtMap = (map: Map<string, number>) =>
  [...map.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v.toLocaleString('en-US')}`).join(', ') || 'none';

// ================================================================ replay mode

async function replay(file: string): Promise<void> {
  sink = await threadSink(PROVIDER, { arrivals: false });
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
  const bySlot = new Map<number, { slot: number; query: string; frames: Frame[] }>();
  for (const line of lines) {
    const r = JSON.parse(line) as { slot: number; query: string; kind: string; binary: boolean; data: string };
    const set = bySlot.get(r.slot) ?? { slot: r.slot, query: r.query, frames: [] };
    set.frames.push({ kind: r.kind, data: r.binary ? Buffer.from(r.data, 'base64') : r.data });
    bySlot.set(r.slot, set);
  }
  console.log(`replaying ${lines.length} frames of ${bySlot.size} sockets from ${file}`);
  const culprit = await triage([...bySlot.values()]);
  await sink.close();
  if (!culprit) {
    console.log('fuzz replay: the server survived every frame');
    return;
  }
  console.log(`fuzz replay: the server died on socket ${culprit.slot}'s frame ${culprit.index}: ${describeFrame(culprit.frame)}`);
  for (const line of culprit.stderr) console.log(`| ${line}`);
  process.exitCode = 1;
}

// ================================================================ the run

async function main(): Promise<void> {
  console.log(
    `fuzz: ${FRAMES.toLocaleString('en-US')} frames, seed ${SEED}, ${SOCKETS} sockets, provider ${PROVIDER} (fake, timing only), ` +
      `MAX_PARTICIPANTS=${MAX_PARTICIPANTS}, MAX_MESSAGE_BYTES=${MAX_MESSAGE}, LOG_LEVEL=${LOG_LEVEL}`,
  );
  sink = await threadSink(PROVIDER, { arrivals: false });
  await startMain();
  // Warm: the codec loaded and one stream decoded, so RSS before includes them.
  const warm = await Client.open(server.port, 'sessionId=warm&sendBack=true');
  for (let i = 0; i < 50; i++) warm.send(`{"event":"media","media":{"tag":"warm-0","chunk":${i},"payload":"${B64[0]![i]}"}}`);
  await warm.ping('warm');
  warm.close();
  await sleep(500);
  const rssBefore = rssKb(server.pid);

  slots = Array.from({ length: SOCKETS }, (_, i) => new Slot(i, Math.ceil(FRAMES / SOCKETS)));
  const t0 = performance.now();
  const ownCpu0 = process.cpuUsage();
  // Server CPU: the ticks of every server process of the run (a restarted one starts from 0).
  let serverTicks = 0;
  let ticksOf = { pid: server.pid, at: cpuTicks(server.pid) };
  const readTicks = () => {
    try {
      if (ticksOf.pid !== server.pid) ticksOf = { pid: server.pid, at: 0 };
      const now = cpuTicks(server.pid);
      serverTicks += now - ticksOf.at;
      ticksOf.at = now;
    } catch {
      // restarting
    }
  };
  let peakRss = rssBefore;
  const rssSampler = setInterval(() => {
    readTicks();
    try {
      peakRss = Math.max(peakRss, rssKb(server.pid));
    } catch {
      // restarting
    }
  }, 1000);
  let lastSent = 0;
  let lastT = t0;
  const health = { latencies: [] as number[], max: { ms: 0, at: 0 }, recentMax: 0 };
  // This process's own event loop: a stall here would show as the server's.
  const ownDelay = monitorEventLoopDelay({ resolution: 20 });
  ownDelay.enable();
  let ownMax = 0;
  const progress = setInterval(() => {
    if (handlingFailure) return;
    try {
      const rss = rssKb(server.pid);
      const now = performance.now();
      process.stdout.write(
        `  ${((now - t0) / 1000).toFixed(0).padStart(4)} s  ${counters.sent.toLocaleString('en-US').padStart(10)} frames  ` +
          `${(((counters.sent - lastSent) * 1000) / (now - lastT)).toFixed(0).padStart(6)}/s  RSS ${(rss / 1024).toFixed(0)} MB  ` +
          `sessions ${counters.sessions}  /health ≤ ${health.recentMax.toFixed(0)} ms  fuzzer's loop delay ≤ ${(ownDelay.max / 1e6).toFixed(0)} ms  restarts ${restarts}\n`,
      );
      ownMax = Math.max(ownMax, ownDelay.max / 1e6);
      ownDelay.reset();
      health.recentMax = 0;
      lastSent = counters.sent;
      lastT = now;
    } catch {
      // the server is being restarted
    }
  }, 10_000);
  // Responsiveness, and a watchdog: /health asked once a second, one request at a time; 30 s
  // without an answer and the server is taken for hung.
  let monitoring = true;
  const monitor = (async () => {
    while (monitoring) {
      if (handlingFailure) {
        await serverUp;
        continue;
      }
      const port = server.port;
      const t = performance.now();
      const ok = await httpGet(port, '/health', 30_000).then(
        () => true,
        () => false,
      );
      const ms = performance.now() - t;
      if (!monitoring) break;
      if (ok) {
        health.latencies.push(ms);
        if (ms > health.max.ms) health.max = { ms, at: (performance.now() - t0) / 1000 };
        health.recentMax = Math.max(health.recentMax, ms);
      } else {
        // A dead server fails at once: its exit is handled by startMain's watcher.
        await sleep(500);
        if (!handlingFailure && server.port === port && server.child.exitCode === null && ms >= 29_000) {
          void serverFailed('stopped answering /health for 30 s');
        }
      }
      await sleep(Math.max(0, 1000 - ms));
    }
  })();
  await Promise.all(slots.map((s) => s.run()));
  monitoring = false;
  await monitor;
  const elapsed = (performance.now() - t0) / 1000;
  readTicks();
  const ownCpu = process.cpuUsage(ownCpu0);
  clearInterval(rssSampler);
  clearInterval(progress);
  await serverUp;

  // Stopped streams get FINISH_TIMEOUT_MS (5 s) for their finals, a closed session with a
  // sessionId may wait RESUME_GRACE_MS (15 s) for its client: /health is asked until it counts
  // no session and no participant, for at most SETTLE_SECONDS.
  const settleStart = performance.now();
  let settled: number | undefined;
  while (performance.now() - settleStart < SETTLE_SECONDS * 1000 && server.child.exitCode === null) {
    await sleep(1000);
    const h = await httpGet(server.port, '/health').catch(() => undefined);
    const body = h ? (JSON.parse(h.body) as { sessions?: number; participants?: number }) : undefined;
    if (body?.sessions === 0 && body.participants === 0) {
      settled = (performance.now() - settleStart) / 1000;
      break;
    }
  }
  const alive = server.child.exitCode === null && server.child.signalCode === null;
  const rssAfter = alive ? rssKb(server.pid) : NaN;
  let final: { status: number; body: string } | undefined;
  let metrics = '';
  let freshInfo = false;
  let freshPong = false;
  // Provider connections, before the fresh session below opens one.
  const counts = await sink.counts();
  if (alive) {
    final = await httpGet(server.port, '/health').catch(() => undefined);
    metrics = (await httpGet(server.port, '/metrics').catch(() => ({ body: '' }))).body;
    try {
      const fresh = await Client.open(server.port, 'sessionId=fresh&sendBack=true');
      freshInfo = true;
      fresh.send(`{"event":"media","media":{"tag":"fresh-0","chunk":1,"payload":"${B64[0]![0]}"}}`);
      freshPong = (await fresh.ping('fresh', 10_000)) === 'pong';
      fresh.close();
      await sleep(300);
    } catch (e) {
      console.log(`fresh session: ${(e as Error).message}`);
    }
  }
  // Idle: V8 gives memory back (or not) once nothing happens.
  let rssIdle = NaN;
  if (alive && IDLE_SECONDS > 0) {
    await sleep(IDLE_SECONDS * 1000);
    rssIdle = rssKb(server.pid);
  }
  finished = true;
  if (alive) await stopServer(server);
  await sink.close();

  // ---------------------------------------------------------------- report
  const logs = new Logs();
  for (const l of allLogs) {
    for (const [k, v] of l.byLevel) bump(logs.byLevel, k, v);
    logs.errorLines.push(...l.errorLines);
    logs.raw.push(...l.raw);
  }
  const text = (l: string) => l.slice(l.indexOf(': ') + 2);
  const uncaught = logs.raw.filter((l) => UNCAUGHT.test(text(l)));
  const otherRaw = logs.raw.filter((l) => !UNCAUGHT.test(text(l)) && text(l).trim() !== '');
  const errorLevel = logs.byLevel.get('error') ?? 0;
  const liveDecoders = metrics ? (metricTotals(metrics, 'transcriber_opus_decoders').get('') ?? NaN) : NaN;
  const healthBody = final ? (JSON.parse(final.body) as { status?: string; sessions?: number; participants?: number }) : undefined;

  console.log('');
  console.log(`frames sent:        ${counters.sent.toLocaleString('en-US')} (${(counters.bytes / 1e6).toFixed(0)} MB) in ${elapsed.toFixed(0)} s: ${(counters.sent / elapsed).toFixed(0)} frames/s`);
  console.log(`  by family:        ${fmtMap(counters.byFamily)}`);
  console.log(
    `CPU:                server ${(serverTicks / TICKS_PER_SECOND).toFixed(0)} s (${((serverTicks / TICKS_PER_SECOND / elapsed) * 100).toFixed(0)} % of a core), ` +
      `fuzzer + provider thread ${((ownCpu.user + ownCpu.system) / 1e6).toFixed(0)} s`,
  );
  console.log(
    `sessions:           ${counters.sessions.toLocaleString('en-US')} opened (each got info: ${counters.infos === counters.sessions ? 'yes' : `${counters.infos}`}), ` +
      `open failures ${counters.openFailures}${openFailureReasons.size ? ` (${fmtMap(openFailureReasons)})` : ''}; distinct tags ${distinctTags.toLocaleString('en-US')}`,
  );
  console.log(`refused upgrades:   ${fmtMap(counters.refusedUpgrades)}`);
  console.log(`closes:             ${fmtMap(counters.closes)}`);
  console.log(`error events:       ${fmtMap(counters.errors)} (throttled per session and code: 1st-5th, 10th, 100th…)`);
  console.log(`pongs:              ${counters.pongs.toLocaleString('en-US')}; stalls (no pong in ${ACK_TIMEOUT_MS / 1000} s) ${counters.stalls}`);
  if (metrics) {
    console.log(`server input errors: ${fmtMap(metricTotals(metrics, 'transcriber_input_errors_total'))}`);
    console.log(`server decode errors: ${fmtMap(metricTotals(metrics, 'transcriber_decode_errors_total'))}`);
  }
  console.log(`provider (fake ${PROVIDER}): ${counts.appends.toLocaleString('en-US')} audio frames over ${counts.connections.toLocaleString('en-US')} connections; open at the end: ${counts.open}; protocol violations: ${counts.violations.length ? counts.violations.join('; ') : 'none'}`);
  console.log(
    `server RSS:         ${(rssBefore / 1024).toFixed(0)} MB before, ${(peakRss / 1024).toFixed(0)} MB peak, ${(rssAfter / 1024).toFixed(0)} MB after (all sessions gone)` +
      (Number.isNaN(rssIdle) ? '' : `, ${(rssIdle / 1024).toFixed(0)} MB after ${IDLE_SECONDS} s idle`),
  );
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const lat = sorted(health.latencies);
  const opens = sorted(openLatencies);
  const at = (xs: number[], p: number) => (xs.length ? xs[Math.min(xs.length - 1, Math.floor(xs.length * p))]! : NaN);
  const pct = (p: number) => at(lat, p);
  console.log(
    `responsiveness:     /health once a second during the run: p50 ${pct(0.5).toFixed(0)} ms, p99 ${pct(0.99).toFixed(0)} ms, ` +
      `max ${health.max.ms.toFixed(0)} ms (at ${health.max.at.toFixed(0)} s); over 1 s: ${lat.filter((l) => l > 1000).length} of ${lat.length} ` +
      `(the fuzzer's own event loop: max delay ${Math.max(ownMax, ownDelay.max / 1e6).toFixed(0)} ms)`,
  );
  console.log(
    `                    a new session's info: p50 ${at(opens, 0.5).toFixed(0)} ms, p99 ${at(opens, 0.99).toFixed(0)} ms, max ${(opens.at(-1) ?? NaN).toFixed(0)} ms ` +
      `(with every socket pouring frames in)`,
  );
  console.log(`server log lines:   ${fmtMap(logs.byLevel)}`);
  for (const line of logs.errorLines.slice(0, 10)) console.log(`  error line: ${line}`);
  if (otherRaw.length) {
    console.log(`server output that is not a log line (${otherRaw.length}):`);
    for (const line of otherRaw.slice(0, 10)) console.log(`  ${line}`);
  }
  console.log(`restarts:           ${restarts}`);
  for (const c of crashes) {
    console.log(`crash ${c.n}: ${c.cause}; suspects in ${c.file} (${c.candidates})`);
    if (c.culprit) console.log(`  culprit: ${describeFrame(c.culprit.frame)}\n  stack:\n${c.culprit.stderr.map((l) => `    ${l}`).join('\n')}`);
    else console.log(`  stderr:\n${c.stderr.map((l) => `    ${l}`).join('\n')}`);
  }
  if (quarantined.size) console.log(`variants no longer generated after a crash: ${[...quarantined].join(', ')}`);
  console.log(
    `health at the end:  ${final ? `${final.status} ${final.body}` : 'no answer'} ` +
      `(${settled === undefined ? `sessions still counted after ${SETTLE_SECONDS} s` : `no session left ${settled.toFixed(0)} s after the last frame`}); live Opus decoders ${liveDecoders}; ` +
      `fresh session: info ${freshInfo ? 'yes' : 'NO'}, pong ${freshPong ? 'yes' : 'NO'}`,
  );

  const failures: string[] = [];
  if (!alive) failures.push('the server is not alive at the end');
  if (restarts > 0) failures.push(`${restarts} restart(s)`);
  if (!final || final.status !== 200) failures.push(`/health answered ${final?.status ?? 'nothing'}`);
  if (healthBody && (healthBody.sessions !== 0 || healthBody.participants !== 0)) {
    failures.push(`/health still counts ${healthBody.sessions} sessions, ${healthBody.participants} participants ${SETTLE_SECONDS} s after the last frame`);
  }
  if (!freshInfo || !freshPong) failures.push('a fresh session got no info or no pong');
  if (liveDecoders !== 0) failures.push(`${liveDecoders} Opus decoder(s) still live`);
  if (uncaught.length) failures.push(`${uncaught.length} stderr line(s) of an uncaught exception or unhandled rejection`);
  if (errorLevel) failures.push(`${errorLevel} level:"error" log line(s)`);
  if (counts.open > 0) failures.push(`${counts.open} provider connection(s) still open`);
  if (counters.stalls) failures.push(`${counters.stalls} stall(s)`);
  if (counters.sessions !== counters.infos) failures.push('a session without info');
  if (gaveUp) failures.push('gave up: more than 500 sessions could not be opened');
  console.log(failures.length ? `fuzz: FAIL ${failures.join('; ')}` : 'fuzz: PASS');
  process.exitCode = failures.length ? 1 : 0;
}

if (REPLAY) await replay(REPLAY);
else await main();
process.exit(process.exitCode ?? 0);
