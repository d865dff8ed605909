/**
 * What a caller of the WASM Opus decoder is told when something is wrong: the exact
 * messages and codes of OpusError and RangeError (each names the call that failed), a
 * module that is not opus.wasm, and the figures the decoder reports about itself. The
 * decoding itself is checked against native libopus in opus.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpusCodec, OpusError, OpusErrorCode, type OpusDecoder } from '../../src/codec/opus.ts';
import { PCM_RATES, type PcmRate } from '../../src/codec/pcm.ts';
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
