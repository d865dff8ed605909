/**
 * OpusCodec and its WebAssembly module: opus.wasm instantiated inside each test (no shared
 * hook, so that a codec which cannot be made fails these tests rather than skipping them), a
 * module that is not opus.wasm, a stand-in module with opus.wasm's exports for what libopus
 * never does (trap, fail an allocation or a reset), and the instance's buffers: the largest
 * output and an input over the first buffer's size leave every other decoder's state alone.
 */
import { describe, expect, it } from 'vitest';
import { OpusCodec, OpusError, OpusErrorCode } from '../../src/codec/opus.ts';
import type { PcmRate } from '../../src/codec/pcm.ts';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { readOggOpus } from '../helpers/fixtures.ts';

const packets = readOggOpus().packets;

/** The error `call` throws. */
function thrown(call: () => unknown): Error {
  try {
    call();
  } catch (error) {
    return error as Error;
  }
  throw new Error('did not throw');
}

/** `packet` with `padding` bytes of Opus padding (RFC 6716 §3.2.5, code 3, one frame): the same audio. */
function padded(packet: Uint8Array, padding: number): Uint8Array {
  const lengthBytes = [...new Array<number>(Math.floor(padding / 255)).fill(255), padding % 255];
  const lengthCost = lengthBytes.length;
  const fixed = [...new Array<number>(Math.floor((padding - lengthCost) / 254)).fill(255)];
  const last = padding - lengthCost - fixed.length * 254;
  const out = new Uint8Array(2 + fixed.length + 1 + packet.length - 1 + padding - lengthCost);
  out[0] = packet[0]! | 3;
  out[1] = 0x40 | 1;
  out.set([...fixed, last], 2);
  out.set(packet.subarray(1), 2 + fixed.length + 1);
  return out;
}

const same = (a: Int16Array | Float32Array, b: Int16Array | Float32Array) =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** A WebAssembly module exporting one memory and nothing else. */
const memoryOnly = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
  0x05, 0x03, 0x01, 0x00, 0x01, // memory section: one memory, at least one page
  0x07, 0x0a, 0x01, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, // export "memory"
]);
const ALL_EXPORTS =
  'memory, _initialize, opus_shim_decoder_size, opus_shim_decoder_create, opus_shim_decoder_destroy, opus_shim_decoder_reset, opus_shim_decode_float, opus_shim_decode_int16, opus_shim_packet_samples, opus_shim_version, opus_shim_malloc, opus_shim_free';


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


describe('OpusCodec buffers', () => {
  it('a decoder is open until closed', async () => {
    const c = await OpusCodec.instantiate(await loadOpusModule());
    const decoder = c.createDecoder(8000);
    expect(decoder.closed).toBe(false);
    decoder.close();
    expect(decoder.closed).toBe(true);
  });

  it('the largest output (120 ms at 48 kHz, float) does not reach another decoder of the instance', async () => {
    const c = await OpusCodec.instantiate(await loadOpusModule());
    const reference = (await OpusCodec.instantiate(await loadOpusModule())).createDecoder(48000);
    const loud = c.createDecoder(48000);
    const decoder = c.createDecoder(48000);
    for (const packet of packets.slice(0, 30)) {
      loud.decodeFloat(packet);
      expect(loud.concealFloat(5760)).toHaveLength(5760);
      expect(same(decoder.decodeFloat(packet).slice(), reference.decodeFloat(packet))).toBe(true);
    }
  });

  it('packetSamples of a packet larger than the input buffer (10 KB of padding) leaves the decoders alone', async () => {
    const c = await OpusCodec.instantiate(await loadOpusModule());
    const reference = (await OpusCodec.instantiate(await loadOpusModule())).createDecoder(16000);
    const decoder = c.createDecoder(16000);
    for (const packet of packets.slice(0, 10)) expect(same(decoder.decodeInt16(packet).slice(), reference.decodeInt16(packet))).toBe(true);
    const big = padded(packets[10]!, 10_000);
    expect(big.length).toBeGreaterThan(10_000);
    expect(decoder.packetSamples(big)).toBe(320);
    for (const packet of packets.slice(10, 40)) expect(same(decoder.decodeInt16(packet).slice(), reference.decodeInt16(packet))).toBe(true);
    // And decoding it: the same audio as without its padding.
    expect(same(decoder.decodeInt16(padded(packets[40]!, 10_000)).slice(), reference.decodeInt16(packets[40]!))).toBe(true);
  });
});
