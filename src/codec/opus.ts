/**
 * Mono Opus decoding with libopus compiled to WebAssembly (wasm/opus.wasm, built by
 * wasm/build.sh from libopus 1.5.2, float build, no JavaScript glue).
 *
 * Runtime-neutral: only web-standard APIs. The caller supplies the compiled
 * `WebAssembly.Module` (Node: src/runtime/node/wasm.ts; workerd: `import mod from
 * './opus.wasm'`). One `OpusCodec` is one WebAssembly instance hosting any number of
 * decoders (~18 KB of libopus state each), so a process or isolate needs one codec, not
 * one instance per stream.
 *
 * Output is always mono (libopus downmixes stereo packets) at the decoder's rate:
 * libopus decodes natively at 8, 12, 16, 24 and 48 kHz, so no resampler is needed.
 *
 * Decoded samples are returned as views into the instance's memory, valid until the next
 * call on any decoder of the same codec: consume them at once, or `.slice()` them.
 *
 * Decoders hold WebAssembly memory that only `close()` returns; garbage collection of the
 * JavaScript object does not free it.
 */

import type { PcmRate } from './pcm.ts';

/** libopus's error codes (opus_defines.h). */
export const OpusErrorCode = {
  BAD_ARG: -1,
  BUFFER_TOO_SMALL: -2,
  INTERNAL_ERROR: -3,
  INVALID_PACKET: -4,
  UNIMPLEMENTED: -5,
  INVALID_STATE: -6,
  ALLOC_FAIL: -7,
} as const;

const ERROR_TEXT: Record<number, string> = {
  [OpusErrorCode.BAD_ARG]: 'invalid argument',
  [OpusErrorCode.BUFFER_TOO_SMALL]: 'buffer too small',
  [OpusErrorCode.INTERNAL_ERROR]: 'internal error',
  [OpusErrorCode.INVALID_PACKET]: 'corrupted stream',
  [OpusErrorCode.UNIMPLEMENTED]: 'request not implemented',
  [OpusErrorCode.INVALID_STATE]: 'invalid state',
  [OpusErrorCode.ALLOC_FAIL]: 'memory allocation failed',
};

/** A libopus failure; `code` is libopus's (negative) error code, see `OpusErrorCode`. */
export class OpusError extends Error {
  override readonly name = 'OpusError';
  readonly code: number;

  constructor(code: number, message: string) {
    super(`${message}: ${ERROR_TEXT[code] ?? 'unknown error'} (libopus error ${code})`);
    this.code = code;
  }
}

/** One mono decoder. All methods throw `OpusError` once the decoder is closed. */
export interface OpusDecoder {
  readonly sampleRate: PcmRate;
  /** Largest output of one call: 120 ms at `sampleRate` (5,760 samples at 48 kHz). */
  readonly maxSamples: number;
  /**
   * Decodes one packet. Returns a view into WebAssembly memory, valid until the next
   * call on any decoder of the same codec. Throws `OpusError` for a packet libopus
   * rejects (the decoder state is unchanged) and for an empty packet (use `conceal`
   * for a lost one).
   */
  decodeFloat(packet: Uint8Array): Float32Array;
  /** `decodeFloat` with 16-bit output (libopus soft-clips instead of wrapping). */
  decodeInt16(packet: Uint8Array): Int16Array;
  /**
   * Packet loss concealment: `samples` of audio standing in for a lost packet.
   * `samples` must be a multiple of 2.5 ms at `sampleRate`, at most `maxSamples`
   * (RangeError otherwise). Same view semantics as `decodeFloat`.
   */
  conceal(samples: number): Int16Array;
  concealFloat(samples: number): Float32Array;
  /**
   * In-band FEC: rebuilds the lost `samples` that precede `nextPacket` from the
   * redundancy it carries; libopus conceals instead when it carries none. Decode
   * `nextPacket` itself afterwards as usual. Same constraints as `conceal`.
   */
  recover(nextPacket: Uint8Array, samples: number): Int16Array;
  recoverFloat(nextPacket: Uint8Array, samples: number): Float32Array;
  /** Samples the packet decodes to at `sampleRate`; throws `OpusError` if invalid. */
  packetSamples(packet: Uint8Array): number;
  /** Back to the state of a fresh decoder (OPUS_RESET_STATE), e.g. at a stream change. */
  reset(): void;
  /**
   * A copy of the decoder's whole state (its rate, then libopus's bytes). Restored into any
   * decoder of the same `OpusCodec` at the same rate, the next calls return exactly what they
   * would have returned on this one: libopus keeps offsets, not pointers, to the decoder's
   * CELT and SILK parts, and its only pointers are to the module's static tables.
   */
  saveState(): Uint8Array;
  /** Puts back a `saveState()` copy; RangeError for one of another rate or size (nothing changed). */
  restoreState(state: Uint8Array): void;
  /** Frees the decoder's memory. Idempotent. */
  close(): void;
  readonly closed: boolean;
}

/** The exports of wasm/opus.wasm (see wasm/opus_shim.c). Pointers are byte offsets. */
interface ShimExports {
  memory: WebAssembly.Memory;
  _initialize(): void;
  opus_shim_decoder_size(): number;
  opus_shim_decoder_create(sampleRate: number): number;
  opus_shim_decoder_destroy(decoder: number): void;
  opus_shim_decoder_reset(decoder: number): number;
  opus_shim_decode_float(decoder: number, data: number, length: number, pcm: number, maxSamples: number, fec: number): number;
  opus_shim_decode_int16(decoder: number, data: number, length: number, pcm: number, maxSamples: number, fec: number): number;
  opus_shim_packet_samples(data: number, length: number, sampleRate: number): number;
  opus_shim_version(): number;
  opus_shim_malloc(size: number): number;
  opus_shim_free(pointer: number): void;
}

const EXPORT_NAMES = [
  '_initialize',
  'opus_shim_decoder_size',
  'opus_shim_decoder_create',
  'opus_shim_decoder_destroy',
  'opus_shim_decoder_reset',
  'opus_shim_decode_float',
  'opus_shim_decode_int16',
  'opus_shim_packet_samples',
  'opus_shim_version',
  'opus_shim_malloc',
  'opus_shim_free',
] as const;

/** Bytes before libopus's in a saved state: the decoder's rate (uint32, little-endian). */
const STATE_HEADER_BYTES = 4;

/** 120 ms at 48 kHz: the longest output of one libopus call. */
const MAX_OUTPUT_SAMPLES = 5760;
const INITIAL_INPUT_BYTES = 4096;

/** One WebAssembly instance: memory views, the shared input and output buffers. */
class Core {
  readonly exports: ShimExports;
  live = 0;
  #buffer: ArrayBufferLike;
  #u8: Uint8Array;
  #input = 0;
  #inputBytes = 0;
  readonly #output: number;
  /** Set when WebAssembly trapped: the instance's state can no longer be trusted. */
  #trap: unknown = undefined;

  constructor(exports: ShimExports) {
    this.exports = exports;
    this.#buffer = exports.memory.buffer;
    this.#u8 = new Uint8Array(this.#buffer);
    exports._initialize();
    this.#output = this.#malloc(MAX_OUTPUT_SAMPLES * 4, 'allocating the output buffer');
    this.#growInput(INITIAL_INPUT_BYTES);
  }

  /** The memory as bytes; re-created only when memory has grown (its buffer changes). */
  heap(): Uint8Array {
    const buffer = this.exports.memory.buffer;
    if (buffer !== this.#buffer) {
      this.#buffer = buffer;
      this.#u8 = new Uint8Array(buffer);
    }
    return this.#u8;
  }

  /** Runs a WebAssembly call; a trap makes this instance unusable from then on. */
  call<T>(run: () => T): T {
    if (this.#trap !== undefined) {
      throw new Error('OpusCodec is unusable after a WebAssembly trap', { cause: this.#trap });
    }
    try {
      return run();
    } catch (error) {
      this.#trap = error;
      throw error;
    }
  }

  #malloc(bytes: number, what: string): number {
    const pointer = this.call(() => this.exports.opus_shim_malloc(bytes));
    if (pointer === 0) throw new OpusError(OpusErrorCode.ALLOC_FAIL, what);
    return pointer;
  }

  /** Replaces the input buffer with one of at least `bytes` (it never shrinks). */
  #growInput(bytes: number): void {
    const size = Math.max(bytes, this.#inputBytes * 2);
    const pointer = this.#malloc(size, `allocating ${size} bytes for a packet`);
    if (this.#input !== 0) this.call(() => this.exports.opus_shim_free(this.#input));
    this.#input = pointer;
    this.#inputBytes = size;
  }

  /**
   * Copies `packet` (or nothing, for concealment) into memory and decodes it with the
   * decoder at `decoder`. Returns the sample count; the samples are in the output buffer.
   */
  decode(decoder: number, packet: Uint8Array | null, maxSamples: number, fec: 0 | 1, int16: boolean, what: string): number {
    let data = 0;
    let length = 0;
    if (packet !== null) {
      length = packet.length;
      if (length === 0) {
        throw new OpusError(OpusErrorCode.INVALID_PACKET, `${what}: empty packet (use conceal() for a lost packet)`);
      }
      if (length > this.#inputBytes) this.#growInput(length);
      this.heap().set(packet, this.#input);
      data = this.#input;
    }
    // Inlined `call()`: no closure on the per-frame path.
    if (this.#trap !== undefined) this.call(() => 0);
    let result: number;
    try {
      result = int16
        ? this.exports.opus_shim_decode_int16(decoder, data, length, this.#output, maxSamples, fec)
        : this.exports.opus_shim_decode_float(decoder, data, length, this.#output, maxSamples, fec);
    } catch (error) {
      this.#trap = error;
      throw error;
    }
    if (result < 0) throw new OpusError(result, what);
    return result;
  }

  floatView(samples: number): Float32Array {
    return new Float32Array(this.heap().buffer, this.#output, samples);
  }

  int16View(samples: number): Int16Array {
    return new Int16Array(this.heap().buffer, this.#output, samples);
  }

  packetSamples(packet: Uint8Array, sampleRate: number): number {
    if (packet.length === 0) throw new OpusError(OpusErrorCode.BAD_ARG, 'packetSamples: empty packet');
    if (packet.length > this.#inputBytes) this.#growInput(packet.length);
    this.heap().set(packet, this.#input);
    const result = this.call(() => this.exports.opus_shim_packet_samples(this.#input, packet.length, sampleRate));
    if (result < 0) throw new OpusError(result, 'packetSamples');
    return result;
  }
}

export class OpusCodec {
  readonly #core: Core;

  private constructor(core: Core) {
    this.#core = core;
  }

  /** Instantiates wasm/opus.wasm. Cheap (~1 MiB of memory); the module compiles once. */
  static async instantiate(module: WebAssembly.Module): Promise<OpusCodec> {
    const instance = await WebAssembly.instantiate(module, {
      // Memory views are re-created lazily when memory.buffer changes (Core.heap).
      env: { emscripten_notify_memory_growth: () => {} },
    });
    const exports = instance.exports as Record<string, unknown>;
    const missing = EXPORT_NAMES.filter((name) => typeof exports[name] !== 'function');
    if (!(exports.memory instanceof WebAssembly.Memory) || missing.length > 0) {
      throw new TypeError(`not the opus.wasm module (missing exports: ${['memory', ...missing].join(', ')})`);
    }
    return new OpusCodec(new Core(exports as unknown as ShimExports));
  }

  /** A new mono decoder at `sampleRate`. Call `close()` when done with it. */
  createDecoder(sampleRate: PcmRate): OpusDecoder {
    const core = this.#core;
    const pointer = core.call(() => core.exports.opus_shim_decoder_create(sampleRate));
    if (pointer < 0) throw new OpusError(pointer, `creating a decoder at ${sampleRate} Hz`);
    core.live++;
    return new Decoder(core, pointer, sampleRate);
  }

  /** Decoders created and not yet closed. */
  get liveDecoders(): number {
    return this.#core.live;
  }

  /** Current size of the instance's memory (it grows, never shrinks). */
  get memoryBytes(): number {
    return this.#core.exports.memory.buffer.byteLength;
  }

  /** libopus state of one decoder, in bytes (excluding allocator overhead). */
  get decoderStateBytes(): number {
    return this.#core.exports.opus_shim_decoder_size();
  }

  /** libopus's version string, e.g. "libopus 1.5.2". */
  get version(): string {
    const heap = this.#core.heap();
    const start = this.#core.exports.opus_shim_version();
    const end = heap.indexOf(0, start);
    return new TextDecoder().decode(heap.subarray(start, end));
  }
}

class Decoder implements OpusDecoder {
  readonly sampleRate: PcmRate;
  readonly maxSamples: number;
  readonly #core: Core;
  #pointer: number;

  constructor(core: Core, pointer: number, sampleRate: PcmRate) {
    this.#core = core;
    this.#pointer = pointer;
    this.sampleRate = sampleRate;
    this.maxSamples = (sampleRate / 1000) * 120;
  }

  get closed(): boolean {
    return this.#pointer === 0;
  }

  decodeFloat(packet: Uint8Array): Float32Array {
    const n = this.#core.decode(this.#live('decodeFloat'), packet, this.maxSamples, 0, false, 'decodeFloat');
    return this.#core.floatView(n);
  }

  decodeInt16(packet: Uint8Array): Int16Array {
    const n = this.#core.decode(this.#live('decodeInt16'), packet, this.maxSamples, 0, true, 'decodeInt16');
    return this.#core.int16View(n);
  }

  conceal(samples: number): Int16Array {
    const n = this.#core.decode(this.#live('conceal'), null, this.#frame(samples), 0, true, 'conceal');
    return this.#core.int16View(n);
  }

  concealFloat(samples: number): Float32Array {
    const n = this.#core.decode(this.#live('concealFloat'), null, this.#frame(samples), 0, false, 'concealFloat');
    return this.#core.floatView(n);
  }

  recover(nextPacket: Uint8Array, samples: number): Int16Array {
    const n = this.#core.decode(this.#live('recover'), nextPacket, this.#frame(samples), 1, true, 'recover');
    return this.#core.int16View(n);
  }

  recoverFloat(nextPacket: Uint8Array, samples: number): Float32Array {
    const n = this.#core.decode(this.#live('recoverFloat'), nextPacket, this.#frame(samples), 1, false, 'recoverFloat');
    return this.#core.floatView(n);
  }

  packetSamples(packet: Uint8Array): number {
    this.#live('packetSamples');
    return this.#core.packetSamples(packet, this.sampleRate);
  }

  reset(): void {
    const pointer = this.#live('reset');
    const result = this.#core.call(() => this.#core.exports.opus_shim_decoder_reset(pointer));
    if (result < 0) throw new OpusError(result, 'reset');
  }

  saveState(): Uint8Array {
    const pointer = this.#live('saveState');
    const size = this.#core.exports.opus_shim_decoder_size();
    const state = new Uint8Array(STATE_HEADER_BYTES + size);
    new DataView(state.buffer).setUint32(0, this.sampleRate, true);
    state.set(this.#core.heap().subarray(pointer, pointer + size), STATE_HEADER_BYTES);
    return state;
  }

  restoreState(state: Uint8Array): void {
    const pointer = this.#live('restoreState');
    const size = this.#core.exports.opus_shim_decoder_size();
    if (state.byteLength !== STATE_HEADER_BYTES + size) {
      throw new RangeError(`not a saved decoder state: ${state.byteLength} bytes, expected ${STATE_HEADER_BYTES + size}`);
    }
    const rate = new DataView(state.buffer, state.byteOffset, state.byteLength).getUint32(0, true);
    if (rate !== this.sampleRate) throw new RangeError(`a decoder state saved at ${rate} Hz cannot be restored at ${this.sampleRate} Hz`);
    this.#core.heap().set(state.subarray(STATE_HEADER_BYTES), pointer);
  }

  close(): void {
    const pointer = this.#pointer;
    if (pointer === 0) return;
    this.#pointer = 0;
    this.#core.live--;
    this.#core.call(() => this.#core.exports.opus_shim_decoder_destroy(pointer));
  }

  #live(what: string): number {
    if (this.#pointer === 0) throw new OpusError(OpusErrorCode.INVALID_STATE, `${what}: decoder is closed`);
    return this.#pointer;
  }

  /** Validates a concealment length: a positive multiple of 2.5 ms, at most 120 ms. */
  #frame(samples: number): number {
    const step = this.sampleRate / 400;
    if (!Number.isInteger(samples) || samples <= 0 || samples > this.maxSamples || samples % step !== 0) {
      throw new RangeError(
        `samples must be a multiple of ${step} (2.5 ms at ${this.sampleRate} Hz) between ${step} and ${this.maxSamples}, got ${samples}`,
      );
    }
    return samples;
  }
}
