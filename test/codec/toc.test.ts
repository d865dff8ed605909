/**
 * opusPacketDurationMs: the audio length a packet stands for, read from its TOC byte
 * (RFC 6716 §3.1), as the session uses it to size concealment and usage. Expected values
 * are the RFC's tables, written out rather than computed.
 */
import { describe, expect, it } from 'vitest';
import { opusPacketDurationMs } from '../../src/codec/toc.ts';

/** A packet of `config` (0-31) and frame-count `code` (0-3), with `rest` after the TOC byte. */
const packet = (config: number, code: number, ...rest: number[]) => new Uint8Array([(config << 3) | code, ...rest]);

describe('opusPacketDurationMs', () => {
  it('one frame (code 0): the frame size of each of the 32 configurations', () => {
    const ms = [
      10, 20, 40, 60, 10, 20, 40, 60, 10, 20, 40, 60, // SILK NB, MB, WB
      10, 20, 10, 20, // hybrid SWB, FB
      2.5, 5, 10, 20, 2.5, 5, 10, 20, 2.5, 5, 10, 20, 2.5, 5, 10, 20, // CELT NB, WB, SWB, FB
    ];
    expect(Array.from({ length: 32 }, (_, config) => opusPacketDurationMs(packet(config, 0)))).toEqual(ms);
  });

  it('two frames (codes 1 and 2): twice the frame size', () => {
    expect(opusPacketDurationMs(packet(1, 1))).toBe(40);
    expect(opusPacketDurationMs(packet(1, 2))).toBe(40);
    expect(opusPacketDurationMs(packet(16, 1))).toBe(5);
    expect(opusPacketDurationMs(packet(19, 2))).toBe(40);
  });

  it('code 3: the frame count is the low 6 bits of the second byte (VBR and padding flags ignored)', () => {
    expect(opusPacketDurationMs(packet(1, 3, 3))).toBe(60);
    expect(opusPacketDurationMs(packet(1, 3, 0x80 | 0x40 | 3))).toBe(60);
    expect(opusPacketDurationMs(packet(16, 3, 48))).toBe(120);
    expect(opusPacketDurationMs(packet(0, 3, 1))).toBe(10);
  });

  it('up to 120 ms is a duration; beyond it, or a code-3 packet without its count byte, is 0', () => {
    expect(opusPacketDurationMs(packet(3, 3, 2))).toBe(120); // exactly the limit
    expect(opusPacketDurationMs(packet(3, 3, 3))).toBe(0); // 180 ms
    expect(opusPacketDurationMs(packet(16, 3, 49))).toBe(0); // 122.5 ms
    expect(opusPacketDurationMs(packet(16, 3, 0x3f))).toBe(0);
    expect(opusPacketDurationMs(packet(1, 3))).toBe(0);
    expect(opusPacketDurationMs(new Uint8Array(0))).toBe(0);
  });
});
