/**
 * The per-tag ordering of `chunk` numbers: losses counted, late packets dropped, a restarted
 * stream recognised, and the 16-bit wrap taken for what it is.
 */
import { describe, expect, it } from 'vitest';
import { Sequencer } from '../../src/session/sequencer.ts';

const run = (chunks: (number | undefined)[]) => {
  const s = new Sequencer();
  return chunks.map((c) => s.accept(c));
};

describe('Sequencer', () => {
  it('counts the packets lost before each one', () => {
    expect(run([10, 11, 13, 17, 18])).toEqual([0, 0, 1, 3, 0]);
  });

  it('drops late and duplicate packets', () => {
    expect(run([10, 12, 11, 12, 13])).toEqual([0, 1, -1, -1, 0]);
  });

  it('takes a jump of 3000 or more, either way, for a restarted stream, not a loss', () => {
    expect(run([10, 3010, 3011])).toEqual([0, 0, 0]);
    expect(run([5000, 10, 11])).toEqual([0, 0, 0]);
    expect(run([10, 3009])).toEqual([0, 2998]);
  });

  it('wraps at 16 bits: 65534, 65535, [0 lost], 1 is one lost packet, not a restart', () => {
    expect(run([65534, 65535, 1, 2])).toEqual([0, 0, 1, 0]);
    expect(run([65535, 0, 1])).toEqual([0, 0, 0]);
    expect(run([65530, 3])).toEqual([0, 8]);
  });

  it('drops a packet from before the wrap that arrives after it, and counts no loss for it', () => {
    expect(run([65534, 0, 65535, 1])).toEqual([0, 1, -1, 0]);
  });

  it('passes frames without a chunk number, and a reset forgets the order', () => {
    expect(run([undefined, 5, undefined, 6])).toEqual([0, 0, 0, 0]);
    const s = new Sequencer();
    s.accept(100);
    s.reset();
    expect(s.accept(7)).toBe(0);
  });

  it('a frame without a chunk number leaves the order as it was', () => {
    expect(run([5, undefined, 7])).toEqual([0, 0, 1]);
  });

  it('counts a loss, not a wrap, inside the upper and the lower half of the range', () => {
    expect(run([40000, 40003])).toEqual([0, 2]);
    expect(run([32000, 32770])).toEqual([0, 769]);
    expect(run([33000, 32000])).toEqual([0, -1]);
  });

  it('a jump back of exactly 3000 is a restart, one less is a late packet', () => {
    expect(run([5000, 2000])).toEqual([0, 0]);
    expect(run([5000, 2001])).toEqual([0, -1]);
  });

  it('wraps only 16-bit numbers: larger chunk numbers restart rather than wrap', () => {
    expect(run([65536, 10])).toEqual([0, 0]);
    expect(run([66000, 1000])).toEqual([0, 0]);
    expect(run([1000, 66000])).toEqual([0, 0]);
    expect(run([1000, 65536])).toEqual([0, 0]);
  });
});
