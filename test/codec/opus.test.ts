/**
 * The WASM libopus decoder (src/codec/opus.ts, wasm/opus.wasm) against a native build of
 * the same pinned libopus release (test/native/opus_ref.c, built by wasm/build.sh
 * --native), on the repository's fixtures and, when they are beside the checkout, on the
 * shared real-traffic ones; and against opus-tools' opusdec where it is installed (CI
 * installs it), an independent check of pre-skip and end trimming. Without a C compiler or
 * apt-get (the native reference's needs) the comparisons with it skip, saying why.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpusCodec, OpusError, OpusErrorCode, type OpusDecoder } from '../../src/codec/opus.ts';
import type { PcmRate } from '../../src/codec/pcm.ts';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { SPEECH_OGG_PATH, manifest, packetsByTag, readCapture, readOggOpus, sharedFixture, sharedFixtures, skipNote } from '../helpers/fixtures.ts';
import { maxAbsDiff, nativeDecode, nativeEncodeWithFec, nativeReference, snrDb, wasmDecode, type DecodeOp } from '../helpers/opus-ref.ts';

const nativeRef = nativeReference();
if (!nativeRef.available) skipNote(import.meta.url, 'the comparisons with native libopus', nativeRef.reason);
/** A test that compares with the native reference. */
const itNative = it.skipIf(!nativeRef.available);
const shared = sharedFixtures.availableFor(import.meta.url, 'the codec checks on the real captures');

let module: WebAssembly.Module;
let codec: OpusCodec;
/** The repository capture's packets per tag (A first, then B), and its speech sample. */
let jvb: Map<string, Uint8Array[]>;
let ogg: ReturnType<typeof readOggOpus>;
let packetsA: Uint8Array[];
let packetsB: Uint8Array[];

beforeAll(async () => {
  module = await loadOpusModule();
  codec = await OpusCodec.instantiate(module);
  jvb = packetsByTag(readCapture());
  ogg = readOggOpus();
  [packetsA, packetsB] = [...jvb.values()];
});

afterAll(() => {
  // Every test closes what it creates.
  expect(codec.liveDecoders).toBe(0);
});

const decodeOps = (packets: readonly Uint8Array[]): DecodeOp[] => packets.map((packet) => ({ op: 'decode', packet }));

/** Float output of a fresh decoder of `codec` over `packets`, concatenated. */
function decodeAll(c: OpusCodec, packets: readonly Uint8Array[], rate: PcmRate = 48000): Float32Array {
  return wasmDecode(c, decodeOps(packets), rate, 'float').pcm;
}

/** Bit-identical samples (vitest's toEqual walks typed arrays element by element: slow). */
function expectIdentical(actual: Float32Array | Int16Array, expected: Float32Array | Int16Array): void {
  expect(actual.length).toBe(expected.length);
  const bytes = (a: Float32Array | Int16Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  expect(bytes(actual).equals(bytes(expected)), `${maxAbsDiff(actual, expected)} max difference`).toBe(true);
}

/** Deterministic pseudo-random bytes (mulberry32). */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomPacket(next: () => number, length: number): Uint8Array {
  const packet = new Uint8Array(length);
  for (let i = 0; i < length; i++) packet[i] = Math.floor(next() * 256);
  return packet;
}

const hasOpusdec = spawnSync('opusdec', ['--version']).error === undefined;

describe('fixtures', () => {
  it('the repository\'s have the packets their manifest describes', () => {
    expect([...jvb.keys()]).toEqual(manifest.capture.speakers.map((s) => s.tag));
    expect([...jvb.values()].map((packets) => packets.length)).toEqual(manifest.capture.speakers.map((s) => s.packets));
    expect(ogg).toMatchObject({ channels: 1, preSkip: 312 });
    expect(ogg.packets).toHaveLength(manifest.speech.packets);
  });

  it.skipIf(!shared)('the shared ones have the packets their README describes', () => {
    const real = packetsByTag(readCapture(sharedFixture('jvb-two-speakers.jsonl')));
    expect([...real.keys()]).toEqual(['aaaaaaaa-305123557', 'bbbbbbbb-2272476824']);
    expect([...real.values()].map((packets) => packets.length)).toEqual([713, 1412]);
    const speech = readOggOpus(sharedFixture('speech-10s.ogg'));
    expect(speech).toMatchObject({ channels: 1, preSkip: 312, inputSampleRate: 48000 });
    expect(speech.packets).toHaveLength(541);
  });
});

describe('decoding matches native libopus', () => {
  const rates = [48000, 24000] as const;
  const captures = [
    { name: 'the repository capture', skip: false, packets: () => jvb },
    { name: 'the shared real Videobridge capture', skip: !shared, packets: () => packetsByTag(readCapture(sharedFixture('jvb-two-speakers.jsonl'))) },
  ];
  const oggs = [
    { name: 'samples/speech.ogg', skip: false, file: () => ogg },
    { name: 'the shared speech-10s.ogg', skip: !shared, file: () => readOggOpus(sharedFixture('speech-10s.ogg')) },
  ];

  for (const rate of rates) {
    for (const capture of captures) {
      it.skipIf(!nativeRef.available || capture.skip)(`${capture.name}, one decoder per tag, at ${rate} Hz (float ≥ 100 dB SNR, int16 ±1)`, () => {
        for (const [tag, packets] of capture.packets()) {
          const ops = decodeOps(packets);
          const native = nativeDecode(ops, rate, 'float');
          const ours = wasmDecode(codec, ops, rate, 'float');
          expect(ours.results, tag).toEqual(native.results);
          expect(ours.results.every((n) => n === rate / 50), tag).toBe(true);
          expect(snrDb(native.pcm, ours.pcm), tag).toBeGreaterThanOrEqual(100);

          const nativeInt = nativeDecode(ops, rate, 'int16');
          const oursInt = wasmDecode(codec, ops, rate, 'int16');
          expect(oursInt.results, tag).toEqual(nativeInt.results);
          expect(maxAbsDiff(nativeInt.pcm, oursInt.pcm), tag).toBeLessThanOrEqual(1);
        }
      });
    }

    for (const file of oggs) {
      it.skipIf(!nativeRef.available || file.skip)(`${file.name} at ${rate} Hz (float ≥ 100 dB SNR, int16 ±1)`, () => {
        const ogg = file.file();
        const ops = decodeOps(ogg.packets);
        const native = nativeDecode(ops, rate, 'float');
        const ours = wasmDecode(codec, ops, rate, 'float');
        expect(ours.results).toEqual(native.results);
        expect(ours.pcm).toHaveLength((ogg.packets.length * rate) / 50);
        expect(snrDb(native.pcm, ours.pcm)).toBeGreaterThanOrEqual(100);
        expect(maxAbsDiff(nativeDecode(ops, rate, 'int16').pcm, wasmDecode(codec, ops, rate, 'int16').pcm)).toBeLessThanOrEqual(1);
      });
    }
  }

  for (const [name, path, skip] of [
    ['samples/speech.ogg', () => SPEECH_OGG_PATH, false],
    ['the shared speech-10s.ogg', () => sharedFixture('speech-10s.ogg'), !shared],
  ] as const) {
    it.skipIf(!hasOpusdec || skip)(`${name} matches opusdec --float --rate 48000 (pre-skip and end trimming applied)`, () => {
      const run = spawnSync('opusdec', ['--quiet', '--float', '--rate', '48000', path(), '-'], {
        maxBuffer: 1 << 26,
      });
      expect(run.status, run.stderr?.toString()).toBe(0);
      const reference = new Float32Array(new Uint8Array(run.stdout).buffer);
      const ogg = readOggOpus(path());
      const ours = decodeAll(codec, ogg.packets).subarray(ogg.preSkip, Number(ogg.finalGranule));
      expect(ours.length).toBe(reference.length);
      expect(snrDb(reference, ours)).toBeGreaterThanOrEqual(100);
    });
  }
});

describe('hostile input', () => {
  let decoder: OpusDecoder;
  let fresh: Float32Array; // 50 good packets, decoded by a fresh decoder
  const good = () => packetsB.slice(0, 50);

  beforeAll(() => {
    decoder = codec.createDecoder(48000);
    fresh = decodeAll(codec, good());
  });

  afterAll(() => decoder.close());

  /** Decodes `packet` with float and int16 output; any failure must be an OpusError. */
  function survive(packet: Uint8Array): number {
    let result: number;
    try {
      result = decoder.decodeFloat(packet).length;
      expect(result).toBeGreaterThan(0);
      expect(result).toBeLessThanOrEqual(decoder.maxSamples);
    } catch (error) {
      expect(error).toBeInstanceOf(OpusError);
      result = (error as OpusError).code;
    }
    try {
      expect(decoder.decodeInt16(packet).length).toBe(result);
    } catch (error) {
      expect(error).toBeInstanceOf(OpusError);
      expect((error as OpusError).code).toBe(result);
    }
    return result;
  }

  /** After a reset, the decoder must produce exactly what a fresh decoder does. */
  function expectHealthy(): void {
    decoder.reset();
    const out = good().map((packet) => decoder.decodeFloat(packet).slice());
    expectIdentical(Float32Array.from(out.flatMap((pcm) => [...pcm])), fresh);
  }

  itNative('random bytes: OpusError or samples, with the same outcome as native libopus', () => {
    const next = random(1);
    const packets = Array.from({ length: 2000 }, () => randomPacket(next, 1 + Math.floor(next() * 1500)));
    const results = packets.map(survive);
    expect(results).toEqual(nativeDecode(decodeOps(packets), 48000, 'float').results);
    // Both outcomes occur, and every error is libopus's "corrupted stream".
    expect(results.filter((r) => r > 0).length).toBeGreaterThan(100);
    expect(new Set(results.filter((r) => r < 0))).toEqual(new Set([OpusErrorCode.INVALID_PACKET]));
    expectHealthy();
  });

  itNative('truncated packets: every prefix of real packets, same outcome as native', () => {
    const packets = [...jvb.values()].flatMap((p) => p.slice(100, 110)).concat(ogg.packets.slice(100, 110));
    const prefixes = packets.flatMap((packet) => Array.from({ length: packet.length - 1 }, (_, n) => packet.subarray(0, n + 1)));
    const results = prefixes.map(survive);
    expect(results).toEqual(nativeDecode(decodeOps(prefixes), 48000, 'float').results);
    expectHealthy();
  });

  it('an empty packet is rejected (a lost packet is concealed with conceal())', () => {
    for (const call of [() => decoder.decodeFloat(new Uint8Array()), () => decoder.decodeInt16(new Uint8Array()), () => decoder.recover(new Uint8Array(), 960)]) {
      expect(call).toThrow(OpusError);
      expect(call).toThrow(/empty packet/);
    }
    expectHealthy();
  });

  itNative('frame sizes: 1,275 bytes is the largest frame, a 1,276-byte frame is corrupt', () => {
    const next = random(2);
    const frame = (length: number) => {
      const packet = randomPacket(next, length);
      packet[0] = 0xfc; // CELT fullband 20 ms, code 0: one frame of length - 1 bytes
      return packet;
    };
    expect(decoder.decodeFloat(frame(1276))).toHaveLength(960);
    const tooLarge = frame(1277);
    expect(() => decoder.decodeFloat(tooLarge)).toThrow(OpusError);
    try {
      decoder.decodeFloat(tooLarge);
    } catch (error) {
      expect((error as OpusError).code).toBe(OpusErrorCode.INVALID_PACKET);
      expect((error as OpusError).message).toBe('decodeFloat: corrupted stream (libopus error -4)');
    }
    // Random 1,276-byte packets (any TOC): same outcome as native.
    const packets = Array.from({ length: 200 }, () => randomPacket(next, 1276));
    expect(packets.map(survive)).toEqual(nativeDecode(decodeOps(packets), 48000, 'float').results);
    expectHealthy();
  });

  itNative('large packets grow the input buffer: 10 KB of Opus padding decodes like the bare packet', () => {
    const packets = good();
    const padded = packets.map((packet) => {
      // Code 3 (RFC 6716 §3.2.5), one frame, with 10,000 bytes of padding.
      const lengthBytes = [...new Array<number>(39).fill(255), 10_000 - 39 * 254];
      const out = new Uint8Array(2 + lengthBytes.length + packet.length - 1 + 10_000);
      out[0] = packet[0] | 3;
      out[1] = 0x40 | 1;
      out.set(lengthBytes, 2);
      out.set(packet.subarray(1), 2 + lengthBytes.length);
      return out;
    });
    expect(padded[0].length).toBeGreaterThan(10_000);
    expectIdentical(decodeAll(codec, padded), fresh);
    // Neither is 1 MB of random bytes.
    const huge = randomPacket(random(4), 1 << 20);
    expect(survive(huge)).toBe(nativeDecode(decodeOps([huge]), 48000, 'float').results[0]);
    expectHealthy();
  });

  it('a rejected packet leaves the decoder state untouched', () => {
    const packets = good();
    const corrupt = new Uint8Array([0xfc, ...new Array<number>(1300).fill(7)]);
    decoder.reset();
    const out: number[] = [];
    for (const [i, packet] of packets.entries()) {
      if (i % 5 === 2) expect(() => decoder.decodeFloat(corrupt)).toThrow(OpusError);
      out.push(...decoder.decodeFloat(packet));
    }
    expectIdentical(Float32Array.from(out), fresh);
  });
});

describe('decoders and memory', () => {
  it('hosts 1,000 live decoders in one instance, ≤ 32 KB each, all independent', async () => {
    const c = await OpusCodec.instantiate(module);
    const packets = packetsA.slice(50, 53); // speech, 1 s in
    const reference = decodeAll(c, packets);
    const before = c.memoryBytes;
    const decoders = Array.from({ length: 1000 }, () => c.createDecoder(48000));
    expect(c.liveDecoders).toBe(1000);
    const perDecoder = (c.memoryBytes - before) / 1000;
    expect(perDecoder).toBeLessThanOrEqual(32 * 1024); // measured: ~17-19 KB (memory grows in steps)

    // Interleaved: every decoder decodes packet k before any decodes packet k + 1.
    const outputs = decoders.map(() => new Float32Array(reference.length));
    for (const [k, packet] of packets.entries()) {
      for (const [i, decoder] of decoders.entries()) outputs[i].set(decoder.decodeFloat(packet), k * 960);
    }
    for (const output of outputs) expectIdentical(output, reference);

    for (const decoder of decoders) decoder.close();
    expect(c.liveDecoders).toBe(0);
    // Freed memory is reused: another 1,000 decoders fit without growing.
    const grown = c.memoryBytes;
    const again = Array.from({ length: 1000 }, () => c.createDecoder(24000));
    expect(c.memoryBytes).toBe(grown);
    for (const decoder of again) decoder.close();
    expect(c.liveDecoders).toBe(0);
  });

  it('memory growth does not disturb decoders created before it', async () => {
    const c = await OpusCodec.instantiate(module);
    const packets = packetsB.slice(0, 100);
    const reference = decodeAll(c, packets, 24000);
    const early = c.createDecoder(24000);
    const out: number[] = [];
    for (const packet of packets.slice(0, 50)) out.push(...early.decodeFloat(packet));

    const start = c.memoryBytes;
    const later: OpusDecoder[] = [];
    while (c.memoryBytes === start) later.push(c.createDecoder(48000));
    for (const packet of packets.slice(50)) {
      out.push(...early.decodeFloat(packet));
      later.at(-1)!.decodeInt16(packet); // a decoder living in the new memory, interleaved
    }
    expectIdentical(Float32Array.from(out), reference);
    early.close();
    for (const decoder of later) decoder.close();
    expect(c.liveDecoders).toBe(0);
  });

  it('close() frees exactly once; a closed decoder throws', () => {
    const decoder = codec.createDecoder(16000);
    expect(codec.liveDecoders).toBe(1);
    decoder.close();
    decoder.close();
    expect(decoder.closed).toBe(true);
    expect(codec.liveDecoders).toBe(0);
    const packet = ogg.packets[0];
    for (const call of [() => decoder.decodeFloat(packet), () => decoder.conceal(320), () => decoder.recover(packet, 320), () => decoder.reset()]) {
      expect(call).toThrow(/decoder is closed/);
      expect(call).toThrow(OpusError);
    }
  });

  it('rejects unsupported sample rates with OpusError(BAD_ARG)', () => {
    expect(() => codec.createDecoder(44100 as PcmRate)).toThrow(OpusError);
    expect(() => codec.createDecoder(44100 as PcmRate)).toThrow(/creating a decoder at 44100 Hz: invalid argument \(libopus error -1\)/);
    expect(codec.liveDecoders).toBe(0);
  });

  it('reports its version and state size', () => {
    expect(codec.version).toBe('libopus 1.5.2');
    expect(codec.decoderStateBytes).toBeLessThanOrEqual(32 * 1024);
  });
});

describe('packet loss: concealment and in-band FEC', () => {
  let fecPackets: Uint8Array[];

  beforeAll(() => {
    if (!nativeRef.available) return;
    // The fixtures carry no FEC (LBRR) data, so encode a stream that does: the speech
    // fixture re-encoded natively with in-band FEC at 20 % expected loss.
    const speech = nativeDecode(decodeOps(ogg.packets), 48000, 'int16').pcm;
    fecPackets = nativeEncodeWithFec(speech);
    expect(fecPackets.length).toBeGreaterThan(400);
  });

  itNative('conceal() and recover() return exactly the requested samples', () => {
    for (const rate of [8000, 12000, 16000, 24000, 48000] as const) {
      const decoder = codec.createDecoder(rate);
      for (const ms of [2.5, 10, 20, 60, 120]) {
        const samples = (rate * ms) / 1000;
        expect(decoder.conceal(samples)).toHaveLength(samples);
        expect(decoder.concealFloat(samples)).toHaveLength(samples);
        expect(decoder.recover(fecPackets[10], samples)).toHaveLength(samples);
        expect(decoder.recoverFloat(ogg.packets[10], samples)).toHaveLength(samples);
      }
      expect(decoder.packetSamples(fecPackets[10])).toBe(rate / 50);
      decoder.close();
    }
  });

  it('rejects lengths that are not a multiple of 2.5 ms up to 120 ms', () => {
    const decoder = codec.createDecoder(48000);
    for (const samples of [0, -960, 100, 959.5, 5761, 5880, Number.NaN]) {
      expect(() => decoder.conceal(samples)).toThrow(RangeError);
      expect(() => decoder.recoverFloat(ogg.packets[0], samples)).toThrow(RangeError);
    }
    decoder.close();
  });

  for (const rate of [48000, 16000] as const) {
    itNative(`every 7th packet lost at ${rate} Hz: FEC beats PLC, both close to native`, () => {
      const frame = rate / 50;
      const lost = (i: number) => i % 7 === 3;
      const clean = decodeOps(fecPackets);
      const plc: DecodeOp[] = fecPackets.map((packet, i) => (lost(i) ? { op: 'conceal', samples: frame } : { op: 'decode', packet }));
      const fec: DecodeOp[] = fecPackets.map((packet, i) =>
        lost(i) && i + 1 < fecPackets.length ? { op: 'recover', packet: fecPackets[i + 1], samples: frame } : { op: 'decode', packet },
      );
      const reference = wasmDecode(codec, clean, rate, 'float').pcm;
      const concealed = wasmDecode(codec, plc, rate, 'float');
      const recovered = wasmDecode(codec, fec, rate, 'float');
      expect(concealed.results.every((n) => n === frame)).toBe(true);
      expect(recovered.results.every((n) => n === frame)).toBe(true);
      // FEC rebuilds the lost frames; PLC only extrapolates (measured: 18 dB vs 6 dB).
      expect(snrDb(reference, recovered.pcm)).toBeGreaterThan(snrDb(reference, concealed.pcm) + 6);
      expect(snrDb(nativeDecode(plc, rate, 'float').pcm, concealed.pcm)).toBeGreaterThanOrEqual(100);
      expect(snrDb(nativeDecode(fec, rate, 'float').pcm, recovered.pcm)).toBeGreaterThanOrEqual(100);
    });
  }

  it('recover() on a CELT packet (which cannot carry FEC) conceals, as libopus does', () => {
    // Speaker B's client encodes in CELT mode (TOC configurations 16-31).
    expect(packetsB.slice(0, 22).every((packet) => packet[0] >> 3 >= 16)).toBe(true);
    const a = codec.createDecoder(48000);
    const b = codec.createDecoder(48000);
    try {
      for (const packet of packetsB.slice(0, 20)) {
        a.decodeFloat(packet);
        b.decodeFloat(packet);
      }
      const recovered = a.recoverFloat(packetsB[21], 960).slice();
      expectIdentical(b.concealFloat(960), recovered);
    } finally {
      a.close();
      b.close();
    }
  });

  itNative('recover() on a SILK packet without FEC data: what native libopus gives', () => {
    // The speech sample is SILK (TOC configurations 0-11) without LBRR: libopus decodes the
    // packet's (absent) redundancy through SILK, which is close to, not exactly, its PLC.
    expect(ogg.packets[21][0] >> 3).toBeLessThan(12);
    const ops: DecodeOp[] = [...decodeOps(ogg.packets.slice(0, 20)), { op: 'recover', packet: ogg.packets[21], samples: 960 }];
    const ours = wasmDecode(codec, ops, 48000, 'float');
    expect(ours.results).toEqual(Array(21).fill(960));
    expect(snrDb(nativeDecode(ops, 48000, 'float').pcm, ours.pcm)).toBeGreaterThanOrEqual(100);
  });
});

describe('decoder state snapshots (saveState / restoreState)', () => {
  /** Int16 output of `ops` on `decoder`, concatenated: decode, conceal (null) or recover ([next]). */
  function run(decoder: OpusDecoder, ops: readonly (Uint8Array | null | [Uint8Array])[]): Int16Array {
    const out: number[] = [];
    const frame = decoder.sampleRate / 50;
    for (const op of ops) {
      const pcm = op === null ? decoder.conceal(frame) : Array.isArray(op) ? decoder.recover(op[0], frame) : decoder.decodeInt16(op);
      out.push(...pcm);
    }
    return Int16Array.from(out);
  }

  for (const rate of [24000, 16000, 48000] as const) {
    for (const speaker of ['A', 'B'] as const) {
      it(`restored into another decoder at ${rate} Hz, the next calls give the same PCM byte for byte (speaker ${speaker})`, () => {
        const packets = speaker === 'A' ? packetsA : packetsB;
        const live = codec.createDecoder(rate);
        const other = codec.createDecoder(rate);
        try {
          run(live, packets.slice(0, 120));
          const saved = live.saveState();
          // Losses after the snapshot too: concealment and FEC read the state the most.
          const ops = packets.slice(120, 220).map((packet, i) => (i % 9 === 4 ? null : i % 9 === 7 ? [packets[120 + i + 1]!] as [Uint8Array] : packet));
          const a = run(live, ops);
          // The other decoder is somewhere else entirely before the restore.
          run(other, packets.slice(300, 340));
          other.restoreState(saved);
          const b = run(other, ops);
          expect(a.length).toBe((rate / 50) * 100);
          expectIdentical(b, a);
          // And the copy is a copy: the live decoder moved on, the saved bytes did not.
          expect(Buffer.from(live.saveState()).equals(Buffer.from(saved))).toBe(false);
        } finally {
          live.close();
          other.close();
        }
      });
    }
  }

  it('a state saved at another rate, or not a state at all, is refused and changes nothing', () => {
    const at16 = codec.createDecoder(16000);
    const at24 = codec.createDecoder(24000);
    const reference = codec.createDecoder(24000);
    try {
      run(at16, packetsA.slice(0, 50));
      run(at24, packetsA.slice(0, 50));
      run(reference, packetsA.slice(0, 50));
      expect(() => at24.restoreState(at16.saveState())).toThrow(/16000 Hz cannot be restored at 24000 Hz/);
      expect(() => at24.restoreState(new Uint8Array(100))).toThrow(RangeError);
      expect(() => at24.restoreState(at24.saveState().subarray(1))).toThrow(RangeError);
      expectIdentical(run(at24, packetsA.slice(50, 80)), run(reference, packetsA.slice(50, 80)));
    } finally {
      at16.close();
      at24.close();
      reference.close();
    }
    expect(() => at16.saveState()).toThrow(OpusError);
  });

  it('a saved state is the rate and libopus\'s decoder bytes', () => {
    const decoder = codec.createDecoder(24000);
    expect(decoder.saveState().byteLength).toBe(4 + codec.decoderStateBytes);
    decoder.close();
  });
});
