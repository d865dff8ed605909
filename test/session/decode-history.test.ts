/**
 * DecodeHistory (src/session/decode-history.ts): the PCM it rebuilds is, byte for byte, what
 * the live decoder produced, over the repository capture's real packets with losses (PLC and
 * FEC calls), a decoder replaced or reset mid-way, ranges across snapshots, and after
 * releases; and it holds a fraction of the PCM's size. Real libopus (wasm/opus.wasm).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpusCodec, type OpusDecoder } from '../../src/codec/opus.ts';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { DecodeHistory } from '../../src/session/decode-history.ts';
import { packetsByTag, readCapture } from '../helpers/fixtures.ts';

const RATE = 24000;
const FRAME = RATE / 50;

let codec: OpusCodec;
/** Both speakers' packets one after the other: ~11 s of one stream. */
let packets: Uint8Array[];

beforeAll(async () => {
  codec = await OpusCodec.instantiate(await loadOpusModule());
  packets = [...packetsByTag(readCapture()).values()].flat();
  expect(packets.length).toBeGreaterThan(500);
});

afterAll(() => {
  // Rebuilding borrows a scratch decoder and always gives it back.
  expect(codec.liveDecoders).toBe(0);
});

/** Live decoding through a history, as Participant does it; `live` is every sample, in order. */
class Live {
  decoder: OpusDecoder;
  readonly history: DecodeHistory;
  private readonly out: Int16Array[] = [];
  private length = 0;

  constructor(snapshotSeconds: number, oldestNeeded?: () => number) {
    this.decoder = codec.createDecoder(RATE);
    this.history = new DecodeHistory(codec, this.decoder, { snapshotEverySamples: snapshotSeconds * RATE, oldestNeeded });
  }

  /** Packet `i`; lost ones become PLC calls, the last of each gap an FEC call with the next packet. */
  feed(from: number, to: number, lost: (i: number) => boolean = () => false): void {
    for (let i = from; i < to; i++) {
      if (lost(i)) {
        const next = i + 1 < to && !lost(i + 1);
        this.keep(next ? this.history.recover(this.decoder, packets[i + 1]!, FRAME) : this.history.conceal(this.decoder, FRAME));
      } else {
        this.keep(this.history.decode(this.decoder, packets[i]!));
      }
    }
  }

  keep(pcm: Int16Array): void {
    expect(this.history.position - pcm.length).toBe(this.length);
    this.out.push(pcm.slice());
    this.length += pcm.length;
  }

  get live(): Int16Array {
    const all = new Int16Array(this.length);
    let at = 0;
    for (const pcm of this.out) {
      all.set(pcm, at);
      at += pcm.length;
    }
    return all;
  }

  close(): void {
    this.decoder.close();
  }
}

function expectSame(actual: Int16Array, expected: Int16Array): void {
  expect(actual.length).toBe(expected.length);
  const bytes = (a: Int16Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  let firstDiff = -1;
  if (!bytes(actual).equals(bytes(expected))) firstDiff = actual.findIndex((v, i) => v !== expected[i]);
  expect(firstDiff, `first differing sample at ${firstDiff}`).toBe(-1);
}

describe('rebuild is what was decoded live', () => {
  it('over the whole capture, with losses concealed and recovered, across many snapshots', () => {
    const l = new Live(1);
    // Single losses (FEC), runs of three (PLC then FEC), and a loss at the very end (PLC).
    const lost = (i: number) => i % 23 === 5 || (i % 61 >= 30 && i % 61 < 33) || i === packets.length - 1;
    l.feed(0, packets.length, lost);
    expect(l.history.snapshots).toBeGreaterThanOrEqual(11);
    const live = l.live;
    expect(live.length).toBe(packets.length * FRAME);
    expectSame(l.history.rebuild(0, live.length), live);
    l.close();
  });

  it('any range, including ones spanning a snapshot, and ranges read one after another', () => {
    const l = new Live(1);
    l.feed(0, 400, (i) => i % 17 === 9);
    const live = l.live;
    const second = RATE;
    // Across the snapshot at 1 s, from mid-frame to mid-frame; one inside a chunk; one sample; none.
    for (const [start, end] of [
      [second - 1000, second + 777],
      [3 * second + 5, 3 * second + 4000],
      [2 * second - 1, 2 * second],
      [5000, 5000],
      [0, 3 * second + 1],
    ] as const) {
      expectSame(l.history.rebuild(start, end), live.subarray(start, end));
    }
    // One reader over consecutive 100 ms spans (a replay), then backwards, then a jump ahead.
    const reader = l.history.reader();
    for (let at = 0; at + 2400 <= live.length; at += 2400) expectSame(reader.read(at, at + 2400), live.subarray(at, at + 2400));
    expectSame(reader.read(100, 5000), live.subarray(100, 5000));
    expectSame(reader.read(6 * second + 3, 7 * second), live.subarray(6 * second + 3, 7 * second));
    reader.close();
    l.close();
  });

  it('the live decoder replaced mid-way, and reset: positions go on, the rebuild follows each decoder', () => {
    const l = new Live(2);
    l.feed(0, 150);
    // A new decoder (a format switch): it starts fresh, not where the old one was.
    l.decoder.close();
    l.decoder = codec.createDecoder(RATE);
    l.history.restart(l.decoder);
    const replacedAt = l.history.position;
    l.feed(150, 300, (i) => i === 151);
    l.decoder.reset();
    l.history.restart(l.decoder);
    l.feed(300, 420);
    const live = l.live;
    expect(replacedAt).toBe(150 * FRAME);
    expectSame(l.history.rebuild(0, live.length), live);
    expectSame(l.history.rebuild(replacedAt - 100, replacedAt + 100), live.subarray(replacedAt - 100, replacedAt + 100));
    // Without the restart the rebuild would have carried the old decoder's state over.
    const carried = codec.createDecoder(RATE);
    for (const packet of packets.slice(0, 151)) carried.decodeInt16(packet);
    const wrong = carried.decodeInt16(packets[151]!);
    const right = live.subarray(replacedAt + FRAME, replacedAt + 2 * FRAME);
    carried.close();
    expect(Buffer.from(wrong.buffer, wrong.byteOffset, wrong.byteLength).equals(Buffer.from(right.buffer, right.byteOffset, right.byteLength))).toBe(false);
    const other = codec.createDecoder(16000);
    expect(() => l.history.restart(other)).toThrow(RangeError);
    other.close();
    // The rebuilds' scratch decoders are gone: only the live one is left.
    expect(codec.liveDecoders).toBe(1);
    l.close();
  });
});

describe('release', () => {
  it('drops what only older positions need; what is kept still rebuilds exactly', () => {
    const l = new Live(1);
    l.feed(0, 500);
    const live = l.live;
    const before = l.history.retainedBytes;
    const keepFrom = 5 * RATE + 123;
    l.history.release(keepFrom);
    expect(l.history.oldest).toBeLessThanOrEqual(keepFrom);
    expect(l.history.oldest).toBeGreaterThan(keepFrom - RATE);
    expect(l.history.retainedBytes).toBeLessThan(before * 0.6);
    expectSame(l.history.rebuild(keepFrom, live.length), live.subarray(keepFrom));
    expect(() => l.history.rebuild(l.history.oldest - 1, keepFrom)).toThrow(RangeError);
    expect(() => l.history.rebuild(keepFrom, live.length + 1)).toThrow(RangeError);
    l.close();
  });

  it('asks at each snapshot what is still needed, and keeps no more than that', () => {
    let needed = 0;
    let following = false;
    const l: Live = new Live(1, () => (following ? l.history.position : needed));
    l.feed(0, 200);
    expect(l.history.oldest).toBe(0);
    // A final: nothing before 3 s is needed any more; the next snapshot lets it go.
    needed = 3 * RATE;
    l.feed(200, 260);
    expect(l.history.oldest).toBe(3 * RATE);
    // Nothing referenced at all (every final in): only the chunk being filled is kept.
    following = true;
    l.feed(260, 560);
    expect(l.history.snapshots).toBe(1);
    const from = l.history.oldest;
    expect(from).toBe(11 * RATE);
    expectSame(l.history.rebuild(from, l.history.position), l.live.subarray(from));
    l.close();
  });
});

describe('size', () => {
  it('holds a fraction of the PCM it rebuilds (packets, snapshots, call records)', () => {
    const l = new Live(5);
    l.feed(0, packets.length);
    const pcmBytes = l.history.position * 2;
    // ~11 s at 24 kHz: 550 KB of PCM. Packets (~4 KB/s), three snapshots (~18 KB each).
    expect(l.history.retainedBytes).toBeLessThan(pcmBytes / 4);
    l.close();
  });
});
