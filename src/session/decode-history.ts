/**
 * How to produce a participant's decoded PCM again, at a twelfth of its size: the Opus
 * packets and decoder calls that produced it, with a snapshot of the decoder's state every
 * few seconds. A provider stream keeps positions into it (spans) for the audio it may have
 * to replay after a lost connection, instead of the PCM itself (issue 21: 48 KB per second
 * of audio at 24 kHz against ~4 KB of packets).
 *
 * Positions number the decoded samples, one running count across every call recorded and
 * every decoder replacement. Rebuilding a range restores the snapshot at or before it into
 * a scratch decoder and re-runs the calls from there: the output is bit-identical to the
 * live one because the state is (`OpusDecoder.saveState`).
 *
 * The calls are kept in chunks, each starting with a snapshot: one byte arena of packets
 * and three typed arrays per chunk, not one object per 20 ms frame (whose overhead alone
 * would eat the gain). A chunk goes once nothing needs its positions any more.
 */
import type { OpusCodec, OpusDecoder } from '../codec/opus.ts';
import type { PcmRate } from '../codec/pcm.ts';

/** Decoded PCM that can be produced again by position (what a replay entry points into). */
export interface PcmSource {
  readonly sampleRate: number;
  /** A cursor over the history, fastest for ranges in ascending order. Close it when done. */
  reader(): PcmReader;
}

export interface PcmReader {
  /** Samples `[start, end)`, exactly as they were decoded live; a copy of their own. */
  read(start: number, end: number): Int16Array;
  close(): void;
}

export interface DecodeHistoryOptions {
  /** Decoded samples between snapshots (default 10 s at the rate). */
  snapshotEverySamples?: number;
  /**
   * The oldest position anyone may still ask for; asked at each snapshot, and everything
   * only older positions need is released. Without it, `release` is the only way.
   */
  oldestNeeded?: () => number;
}

const DECODE = 0;
const CONCEAL = 1;
const RECOVER = 2;

const SNAPSHOT_EVERY_MS = 10_000;
const INITIAL_CALLS = 64;
const INITIAL_ARENA_BYTES = 2048;

/** The calls made from one decoder state on. */
class Chunk {
  /** Position of the first sample its calls produced; `end` of the last. */
  readonly start: number;
  end: number;
  count = 0;
  /** DECODE, CONCEAL or RECOVER per call. */
  kinds = new Uint8Array(INITIAL_CALLS);
  /** Samples each call produced (at most 5,760). */
  outputs = new Uint16Array(INITIAL_CALLS);
  /** Where each call's packet ends in `arena` (it starts where the previous one ended). */
  packetEnds = new Uint32Array(INITIAL_CALLS);
  arena = new Uint8Array(INITIAL_ARENA_BYTES);
  arenaBytes = 0;

  constructor(
    /** The decoder's state before the first call (`saveState`). */
    readonly state: Uint8Array,
    start: number,
  ) {
    this.start = start;
    this.end = start;
  }

  add(kind: number, packet: Uint8Array | undefined, samples: number): void {
    const i = this.count;
    if (i === this.kinds.length) {
      this.kinds = grow(this.kinds, i * 2);
      this.outputs = grow(this.outputs, i * 2);
      this.packetEnds = grow(this.packetEnds, i * 2);
    }
    if (packet) {
      const need = this.arenaBytes + packet.byteLength;
      if (need > this.arena.length) this.arena = grow(this.arena, Math.max(need, this.arena.length * 2));
      this.arena.set(packet, this.arenaBytes);
      this.arenaBytes = need;
    }
    this.kinds[i] = kind;
    this.outputs[i] = samples;
    this.packetEnds[i] = this.arenaBytes;
    this.count = i + 1;
    this.end += samples;
  }

  /** No more calls: the slack goes (one copy per chunk, every few seconds). */
  seal(): void {
    this.kinds = this.kinds.slice(0, this.count);
    this.outputs = this.outputs.slice(0, this.count);
    this.packetEnds = this.packetEnds.slice(0, this.count);
    this.arena = this.arena.slice(0, this.arenaBytes);
  }

  packet(i: number): Uint8Array {
    return this.arena.subarray(i === 0 ? 0 : this.packetEnds[i - 1]!, this.packetEnds[i]!);
  }

  get bytes(): number {
    return this.state.byteLength + this.kinds.byteLength + this.outputs.byteLength + this.packetEnds.byteLength + this.arena.byteLength;
  }
}

function grow<T extends Uint8Array | Uint16Array | Uint32Array>(array: T, length: number): T {
  const bigger = new (array.constructor as new (length: number) => T)(length);
  bigger.set(array);
  return bigger;
}

/**
 * Records the calls made on one participant's live decoder (through it: `decode`, `conceal`,
 * `recover`), across decoder replacements (`restart`), and rebuilds any range still held.
 * Holds no WebAssembly memory between rebuilds: it lives, like any JavaScript object, as
 * long as a replay entry points into it.
 */
export class DecodeHistory implements PcmSource {
  readonly sampleRate: PcmRate;
  private readonly chunks: Chunk[] = [];
  private readonly snapshotEvery: number;
  private readonly oldestNeeded: (() => number) | undefined;

  /** `decoder` is the live one, in the state the first recorded call will find it. */
  constructor(
    private readonly codec: OpusCodec,
    decoder: OpusDecoder,
    options: DecodeHistoryOptions = {},
  ) {
    this.sampleRate = decoder.sampleRate;
    this.snapshotEvery = options.snapshotEverySamples ?? (decoder.sampleRate * SNAPSHOT_EVERY_MS) / 1000;
    this.oldestNeeded = options.oldestNeeded;
    this.chunks.push(new Chunk(decoder.saveState(), 0));
  }

  /** Position of the next sample to be decoded. */
  get position(): number {
    return this.chunks.at(-1)!.end;
  }

  /** The oldest position that can still be rebuilt. */
  get oldest(): number {
    return this.chunks[0]!.start;
  }

  /** What the history holds, in bytes (packets, snapshots, call records). */
  get retainedBytes(): number {
    let bytes = 0;
    for (const chunk of this.chunks) bytes += chunk.bytes;
    return bytes;
  }

  /** Snapshots held. */
  get snapshots(): number {
    return this.chunks.length;
  }

  /** `decoder.decodeInt16(packet)`, recorded. A packet libopus rejects throws, unrecorded (its state is unchanged). */
  decode(decoder: OpusDecoder, packet: Uint8Array): Int16Array {
    const pcm = decoder.decodeInt16(packet);
    this.record(decoder, DECODE, packet, pcm.length);
    return pcm;
  }

  /** `decoder.conceal(samples)`, recorded. */
  conceal(decoder: OpusDecoder, samples: number): Int16Array {
    const pcm = decoder.conceal(samples);
    this.record(decoder, CONCEAL, undefined, pcm.length);
    return pcm;
  }

  /** `decoder.recover(next, samples)`, recorded. */
  recover(decoder: OpusDecoder, next: Uint8Array, samples: number): Int16Array {
    const pcm = decoder.recover(next, samples);
    this.record(decoder, RECOVER, next, pcm.length);
    return pcm;
  }

  /**
   * The live decoder was replaced or reset (it must be at the history's rate): the next calls
   * start from its state, and positions go on counting.
   */
  restart(decoder: OpusDecoder): void {
    if (decoder.sampleRate !== this.sampleRate) throw new RangeError(`a ${decoder.sampleRate} Hz decoder cannot continue a ${this.sampleRate} Hz history`);
    this.startChunk(decoder);
  }

  /** Nothing before `position` will be asked for again: what only that needed goes. */
  release(position: number): void {
    while (this.chunks.length > 1 && this.chunks[1]!.start <= position) this.chunks.shift();
  }

  reader(): PcmReader {
    return new Reader(this.codec, this.sampleRate, this.chunks);
  }

  /** Samples `[start, end)` rebuilt at once (`reader()` for several ranges in a row). */
  rebuild(start: number, end: number): Int16Array {
    const reader = this.reader();
    try {
      return reader.read(start, end);
    } finally {
      reader.close();
    }
  }

  private record(decoder: OpusDecoder, kind: number, packet: Uint8Array | undefined, samples: number): void {
    const chunk = this.chunks.at(-1)!;
    chunk.add(kind, packet, samples);
    if (chunk.end - chunk.start >= this.snapshotEvery) this.startChunk(decoder);
  }

  private startChunk(decoder: OpusDecoder): void {
    const last = this.chunks.at(-1)!;
    const next = new Chunk(decoder.saveState(), last.end);
    if (last.count === 0) {
      // Nothing decoded from the old state: only the new one matters.
      this.chunks[this.chunks.length - 1] = next;
    } else {
      last.seal();
      this.chunks.push(next);
    }
    if (this.oldestNeeded) this.release(this.oldestNeeded());
  }
}

/** A scratch decoder walking the chunks forwards; it restores a snapshot only to go back or jump ahead. */
class Reader implements PcmReader {
  private decoder: OpusDecoder | undefined;
  private chunk: Chunk | undefined;
  private call = 0;
  /** Position of the next sample the scratch decoder will produce. */
  private at = 0;

  constructor(
    private readonly codec: OpusCodec,
    private readonly sampleRate: PcmRate,
    /** The history's own list (it may shrink between reads, never while one runs). */
    private readonly chunks: readonly Chunk[],
  ) {}

  read(start: number, end: number): Int16Array {
    const first = this.chunks[0]!;
    const last = this.chunks.at(-1)!;
    if (!(Number.isInteger(start) && Number.isInteger(end) && first.start <= start && start <= end && end <= last.end)) {
      throw new RangeError(`samples [${start}, ${end}) are not in the history (it holds [${first.start}, ${last.end}))`);
    }
    const out = new Int16Array(end - start);
    if (start === end) return out;
    const target = this.chunkAt(start);
    if (this.chunk === undefined || start < this.at || this.chunks.indexOf(this.chunk) < this.chunks.indexOf(target)) this.enter(target);
    while (this.at < end) {
      let chunk = this.chunk!;
      if (this.call === chunk.count) {
        chunk = this.chunks[this.chunks.indexOf(chunk) + 1]!;
        this.enter(chunk);
        continue;
      }
      const i = this.call;
      const samples = chunk.outputs[i]!;
      const pcm = this.run(chunk, i, samples);
      if (pcm.length !== samples) throw new Error(`decode history diverged: ${pcm.length} samples rebuilt where ${samples} were decoded`);
      const from = Math.max(start, this.at);
      const to = Math.min(end, this.at + samples);
      if (to > from) out.set(pcm.subarray(from - this.at, to - this.at), from - start);
      this.at += samples;
      this.call = i + 1;
    }
    return out;
  }

  close(): void {
    this.decoder?.close();
    this.decoder = undefined;
    this.chunk = undefined;
  }

  /** The last chunk starting at or before `position`. */
  private chunkAt(position: number): Chunk {
    let found = this.chunks[0]!;
    for (const chunk of this.chunks) {
      if (chunk.start > position) break;
      found = chunk;
    }
    return found;
  }

  private enter(chunk: Chunk): void {
    this.decoder ??= this.codec.createDecoder(this.sampleRate);
    this.decoder.restoreState(chunk.state);
    this.chunk = chunk;
    this.call = 0;
    this.at = chunk.start;
  }

  private run(chunk: Chunk, i: number, samples: number): Int16Array {
    const decoder = this.decoder!;
    switch (chunk.kinds[i]) {
      case DECODE:
        return decoder.decodeInt16(chunk.packet(i));
      case CONCEAL:
        return decoder.conceal(samples);
      default:
        return decoder.recover(chunk.packet(i), samples);
    }
  }
}
