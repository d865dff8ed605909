/**
 * What a caller of the WASM Opus decoder is told when something is wrong: the exact
 * messages and codes of OpusError and RangeError (each names the call that failed), a
 * module that is not opus.wasm, and the figures the decoder reports about itself. The
 * decoding itself is checked against native libopus in opus.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpusCodec, OpusError, OpusErrorCode, type OpusDecoder } from '../../src/codec/opus.ts';
import type { PcmRate } from '../../src/codec/pcm.ts';
import { PCM_RATES } from '../../src/codec/pcm.ts';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { readOggOpus } from '../helpers/fixtures.ts';

let codec: OpusCodec;
let packets: Uint8Array[];

beforeAll(async () => {
  codec = await OpusCodec.instantiate(await loadOpusModule());
  packets = readOggOpus().packets;
});

afterAll(() => {
  expect(codec.liveDecoders).toBe(0);
});

/** The error `call` throws. */
function thrown(call: () => unknown): Error {
  try {
    call();
  } catch (error) {
    return error as Error;
  }
  throw new Error('did not throw');
}

/** A CELT 20 ms frame of 1,276 bytes: one byte over the largest frame libopus takes. */
const corrupt = new Uint8Array([0xfc, ...new Array<number>(1276).fill(7)]);

/** A WebAssembly module exporting one memory and nothing else. */
const memoryOnly = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
  0x05, 0x03, 0x01, 0x00, 0x01, // memory section: one memory, at least one page
  0x07, 0x0a, 0x01, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, // export "memory"
]);
const ALL_EXPORTS =
  'memory, _initialize, opus_shim_decoder_size, opus_shim_decoder_create, opus_shim_decoder_destroy, opus_shim_decoder_reset, opus_shim_decode_float, opus_shim_decode_int16, opus_shim_packet_samples, opus_shim_version, opus_shim_malloc, opus_shim_free';

describe('OpusError', () => {
  it('says what failed, libopus\'s text for the code, and the code', () => {
    const error = new OpusError(OpusErrorCode.BUFFER_TOO_SMALL, 'decoding');
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('OpusError');
    expect(error.code).toBe(-2);
    expect(error.message).toBe('decoding: buffer too small (libopus error -2)');
    expect(new OpusError(-99, 'decoding').message).toBe('decoding: unknown error (libopus error -99)');
  });
});

describe('OpusCodec.instantiate', () => {
  it('refuses a module that is not opus.wasm, naming the exports it lacks', async () => {
    const empty = new WebAssembly.Module(new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
    await expect(OpusCodec.instantiate(empty)).rejects.toThrow(new TypeError(`not the opus.wasm module (missing exports: ${ALL_EXPORTS})`));
    const error = await OpusCodec.instantiate(new WebAssembly.Module(memoryOnly)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe(`not the opus.wasm module (missing exports: ${ALL_EXPORTS})`);
  });
});

describe('opus.wasm', () => {
  it('instantiates: a codec with no decoder yet, libopus 1.5.2', async () => {
    const fresh = await OpusCodec.instantiate(await loadOpusModule());
    expect(fresh.liveDecoders).toBe(0);
    expect(fresh.version).toBe('libopus 1.5.2');
    const decoder = fresh.createDecoder(16000);
    expect(decoder.decodeInt16(packets[0]!)).toHaveLength(320);
    decoder.close();
  });
});

/** WebAssembly bytecode: `unreachable`, and `i32.const n` (signed LEB128). */
const TRAP = [0x00];
function returns(n: number): number[] {
  const out: number[] = [];
  for (let v = n; ; ) {
    const byte = v & 0x7f;
    v >>= 7;
    if ((v === 0 && !(byte & 0x40)) || (v === -1 && byte & 0x40)) return [0x41, ...out, byte];
    out.push(byte | 0x80);
  }
}

/**
 * A stand-in for opus.wasm with the same exports, each a function `(i32) -> i32` whose body is
 * given as WebAssembly bytecode: what libopus never does (trap, fail an allocation or a
 * reset) happens on demand, and what the codec tells its caller then is what is checked.
 */
function shimModule(bodies: Partial<Record<string, number[]>> = {}): WebAssembly.Module {
  const uleb = (n: number): number[] => (n < 0x80 ? [n] : [(n & 0x7f) | 0x80, ...uleb(n >>> 7)]);
  const name = (text: string) => [...uleb(text.length), ...new TextEncoder().encode(text)];
  const section = (id: number, content: number[]) => [id, ...uleb(content.length), ...content];
  const defaults: Record<string, number[]> = {
    _initialize: returns(0),
    opus_shim_decoder_size: returns(100),
    opus_shim_decoder_create: returns(64),
    opus_shim_decoder_destroy: returns(0),
    opus_shim_decoder_reset: returns(0),
    opus_shim_decode_float: returns(960),
    opus_shim_decode_int16: returns(960),
    opus_shim_packet_samples: returns(960),
    opus_shim_version: returns(0),
    opus_shim_malloc: returns(1024),
    opus_shim_free: returns(0),
  };
  const functions = Object.keys(defaults);
  const code = functions.map((f) => {
    const body = [0x00, ...(bodies[f] ?? defaults[f]!), 0x0b]; // no locals, the body, end
    return [...uleb(body.length), ...body];
  });
  return new WebAssembly.Module(
    new Uint8Array([
      ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
      ...section(1, [1, 0x60, 1, 0x7f, 1, 0x7f]), // one type: (i32) -> i32
      ...section(3, [functions.length, ...functions.map(() => 0)]),
      ...section(5, [1, 0, 1]), // one memory of one page
      ...section(7, [functions.length + 1, ...name('memory'), 2, 0, ...functions.flatMap((f, i) => [...name(f), 0, i])]),
      ...section(10, [functions.length, ...code.flat()]),
    ]),
  );
}

describe('OpusCodec when WebAssembly fails', () => {
  it('a trap: the caller gets it, and from then on every call says the codec is unusable, with the trap as cause', async () => {
    const c = await OpusCodec.instantiate(shimModule({ opus_shim_decode_float: TRAP }));
    const decoder = c.createDecoder(48000);
    const other = c.createDecoder(48000);
    expect(decoder.decodeInt16(packets[0]!)).toHaveLength(960);
    const trap = thrown(() => decoder.decodeFloat(packets[0]!));
    expect(trap).toBeInstanceOf(WebAssembly.RuntimeError);
    for (const call of [() => decoder.decodeInt16(packets[0]!), () => other.conceal(960), () => other.reset(), () => c.createDecoder(16000), () => other.packetSamples(packets[0]!)]) {
      const error = thrown(call);
      expect(error.message).toBe('OpusCodec is unusable after a WebAssembly trap');
      expect(error.cause).toBe(trap);
    }
  });

  it('a trap outside decoding (a reset) makes the codec unusable too', async () => {
    const c = await OpusCodec.instantiate(shimModule({ opus_shim_decoder_reset: TRAP }));
    const decoder = c.createDecoder(24000);
    expect(() => decoder.reset()).toThrow(WebAssembly.RuntimeError);
    expect(() => decoder.decodeFloat(packets[0]!)).toThrow('OpusCodec is unusable after a WebAssembly trap');
  });

  it('a failed allocation: OpusError(ALLOC_FAIL) saying what was being allocated', async () => {
    const none = await OpusCodec.instantiate(shimModule({ opus_shim_malloc: returns(0) })).catch((e: unknown) => e);
    expect(none).toBeInstanceOf(OpusError);
    expect([(none as OpusError).code, (none as Error).message]).toEqual([OpusErrorCode.ALLOC_FAIL, 'allocating the output buffer: memory allocation failed (libopus error -7)']);
    // Sizes over the first input buffer (4,096 bytes) and under the output buffer's fail.
    const growth = [0x20, 0, ...returns(4096), 0x4b, 0x20, 0, ...returns(23040), 0x49, 0x71, 0x04, 0x7f, ...returns(0), 0x05, ...returns(1024), 0x0b];
    const c = await OpusCodec.instantiate(shimModule({ opus_shim_malloc: growth }));
    const decoder = c.createDecoder(48000);
    const error = thrown(() => decoder.decodeFloat(new Uint8Array(5000).fill(0xfc))) as OpusError;
    expect([error.code, error.message]).toEqual([OpusErrorCode.ALLOC_FAIL, 'allocating 8192 bytes for a packet: memory allocation failed (libopus error -7)']);
    // The buffer it had is kept: a packet that fits still decodes.
    expect(decoder.decodeFloat(packets[0]!)).toHaveLength(960);
  });

  it('a decoder that cannot be made or reset: OpusError with libopus\'s code, nothing counted live', async () => {
    const c = await OpusCodec.instantiate(shimModule({ opus_shim_decoder_create: returns(-7), opus_shim_decoder_reset: returns(-3) }));
    const error = thrown(() => c.createDecoder(16000)) as OpusError;
    expect([error.code, error.message]).toEqual([OpusErrorCode.ALLOC_FAIL, 'creating a decoder at 16000 Hz: memory allocation failed (libopus error -7)']);
    expect(c.liveDecoders).toBe(0);
    const resets = await OpusCodec.instantiate(shimModule({ opus_shim_decoder_reset: returns(-3) }));
    const decoder = resets.createDecoder(16000 as PcmRate);
    const reset = thrown(() => decoder.reset()) as OpusError;
    expect([reset.code, reset.message]).toEqual([OpusErrorCode.INTERNAL_ERROR, 'reset: internal error (libopus error -3)']);
  });
});

describe('OpusDecoder 16-bit and float output', () => {
  /** Float samples as libopus rounds them to 16 bits (its soft clip aside: none here). */
  const toInt16 = (f: Float32Array) => Int16Array.from(f, (v) => Math.max(-32768, Math.min(32767, Math.round(v * 32768))));
  const maxDiff = (a: Int16Array, b: Int16Array) => {
    expect(a.length).toBe(b.length);
    let m = 0;
    for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
    return m;
  };

  it('each 16-bit call gives the float call\'s samples, rounded: decode, conceal and recover', () => {
    const ints = codec.createDecoder(48000);
    const floats = codec.createDecoder(48000);
    try {
      let loud = 0;
      for (const packet of packets.slice(0, 40)) {
        const i16 = ints.decodeInt16(packet).slice();
        const f = toInt16(floats.decodeFloat(packet));
        expect(maxDiff(i16, f)).toBeLessThanOrEqual(1);
        loud = Math.max(loud, ...i16.map(Math.abs));
      }
      expect(loud, 'the packets are not silence').toBeGreaterThan(1000);
      expect(maxDiff(ints.conceal(960).slice(), toInt16(floats.concealFloat(960)))).toBeLessThanOrEqual(1);
      expect(maxDiff(ints.recover(packets[41]!, 960).slice(), toInt16(floats.recoverFloat(packets[41]!, 960)))).toBeLessThanOrEqual(1);
      expect(maxDiff(ints.decodeInt16(packets[41]!).slice(), toInt16(floats.decodeFloat(packets[41]!)))).toBeLessThanOrEqual(1);
    } finally {
      ints.close();
      floats.close();
    }
  });
});

describe('OpusDecoder errors', () => {
  let decoder: OpusDecoder;
  beforeAll(() => {
    decoder = codec.createDecoder(48000);
  });
  afterAll(() => decoder.close());

  it('a corrupt packet: OpusError(INVALID_PACKET) naming the call', () => {
    for (const [what, call] of [
      ['decodeFloat', () => decoder.decodeFloat(corrupt)],
      ['decodeInt16', () => decoder.decodeInt16(corrupt)],
      ['recover', () => decoder.recover(corrupt, 960)],
      ['recoverFloat', () => decoder.recoverFloat(corrupt, 960)],
    ] as const) {
      const error = thrown(call);
      expect(error).toBeInstanceOf(OpusError);
      expect((error as OpusError).code).toBe(OpusErrorCode.INVALID_PACKET);
      expect(error.message).toBe(`${what}: corrupted stream (libopus error -4)`);
    }
  });

  it('an empty packet: OpusError naming the call, pointing to conceal()', () => {
    for (const [what, call] of [
      ['decodeFloat', () => decoder.decodeFloat(new Uint8Array())],
      ['decodeInt16', () => decoder.decodeInt16(new Uint8Array())],
      ['recover', () => decoder.recover(new Uint8Array(), 960)],
      ['recoverFloat', () => decoder.recoverFloat(new Uint8Array(), 960)],
    ] as const) {
      const error = thrown(call) as OpusError;
      expect(error.code).toBe(OpusErrorCode.INVALID_PACKET);
      expect(error.message).toBe(`${what}: empty packet (use conceal() for a lost packet): corrupted stream (libopus error -4)`);
    }
  });

  it('packetSamples: the samples of a packet at the decoder\'s rate; BAD_ARG for an empty one, INVALID_PACKET for a corrupt one', () => {
    expect(decoder.packetSamples(packets[0]!)).toBe(960);
    const empty = thrown(() => decoder.packetSamples(new Uint8Array())) as OpusError;
    expect([empty.code, empty.message]).toEqual([OpusErrorCode.BAD_ARG, 'packetSamples: empty packet: invalid argument (libopus error -1)']);
    // Code 3 (RFC 6716 §3.2.5) with no frame count byte.
    const bad = thrown(() => decoder.packetSamples(new Uint8Array([0xfb]))) as OpusError;
    expect([bad.code, bad.message]).toEqual([OpusErrorCode.INVALID_PACKET, 'packetSamples: corrupted stream (libopus error -4)']);
  });

  it('packetSamples reads a packet larger than the input buffer (10 KB of padding) whole', () => {
    const packet = packets[5]!;
    const padding = 10_000;
    const lengthBytes = [...new Array<number>(39).fill(255), padding - 39 * 254];
    const padded = new Uint8Array(2 + lengthBytes.length + packet.length - 1 + padding);
    padded[0] = packet[0]! | 3;
    padded[1] = 0x40 | 1;
    padded.set(lengthBytes, 2);
    padded.set(packet.subarray(1), 2 + lengthBytes.length);
    const other = codec.createDecoder(16000);
    try {
      expect(other.packetSamples(padded)).toBe(320);
      expect(other.decodeInt16(padded)).toHaveLength(320);
    } finally {
      other.close();
    }
  });

  it('a concealment length off the 2.5 ms grid or beyond 120 ms: RangeError saying what is allowed', () => {
    const message = (samples: number) => `samples must be a multiple of 120 (2.5 ms at 48000 Hz) between 120 and 5760, got ${samples}`;
    for (const samples of [0, 100, 5880, 120.5]) {
      for (const call of [() => decoder.conceal(samples), () => decoder.concealFloat(samples), () => decoder.recover(packets[0]!, samples), () => decoder.recoverFloat(packets[0]!, samples)]) {
        const error = thrown(call);
        expect(error).toBeInstanceOf(RangeError);
        expect(error.message).toBe(message(samples));
      }
    }
    expect(decoder.conceal(120)).toHaveLength(120);
    expect(decoder.concealFloat(5760)).toHaveLength(5760);
  });

  it('a closed decoder: OpusError(INVALID_STATE) naming the call, for every call', () => {
    const closed = codec.createDecoder(8000);
    closed.close();
    const calls = {
      decodeFloat: () => closed.decodeFloat(packets[0]!),
      decodeInt16: () => closed.decodeInt16(packets[0]!),
      conceal: () => closed.conceal(80),
      concealFloat: () => closed.concealFloat(80),
      recover: () => closed.recover(packets[0]!, 80),
      recoverFloat: () => closed.recoverFloat(packets[0]!, 80),
      packetSamples: () => closed.packetSamples(packets[0]!),
      reset: () => closed.reset(),
    };
    for (const [what, call] of Object.entries(calls)) {
      const error = thrown(call) as OpusError;
      expect(error).toBeInstanceOf(OpusError);
      expect([error.code, error.message]).toEqual([OpusErrorCode.INVALID_STATE, `${what}: decoder is closed: invalid state (libopus error -6)`]);
    }
  });
});

describe('OpusDecoder figures', () => {
  it('maxSamples is 120 ms at each rate; conceal() takes exactly that, not one step more', () => {
    for (const rate of PCM_RATES) {
      const decoder = codec.createDecoder(rate);
      try {
        expect(decoder.sampleRate).toBe(rate);
        expect(decoder.maxSamples).toBe((rate * 120) / 1000);
        expect(decoder.conceal(decoder.maxSamples)).toHaveLength(decoder.maxSamples);
        expect(decoder.conceal(rate / 400)).toHaveLength(rate / 400);
        expect(() => decoder.conceal(decoder.maxSamples + rate / 400)).toThrow(RangeError);
      } finally {
        decoder.close();
      }
    }
  });

  it('reset() brings a decoder back to a fresh one\'s output', () => {
    const a = codec.createDecoder(24000);
    const b = codec.createDecoder(24000);
    try {
      for (const packet of packets.slice(0, 30)) a.decodeFloat(packet);
      a.reset();
      for (const packet of packets.slice(30, 40)) {
        const left = a.decodeInt16(packet).slice();
        expect(Buffer.from(left.buffer).equals(Buffer.from(b.decodeInt16(packet).slice().buffer))).toBe(true);
      }
    } finally {
      a.close();
      b.close();
    }
  });
});
