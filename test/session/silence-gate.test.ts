/**
 * SilenceGate's positions (issue 21): each piece of audio it lets through says where its first
 * sample was decoded, the pre-roll too although it goes later than it came, so that the replay
 * buffer can keep spans of the decode history instead of PCM.
 */
import { describe, expect, it } from 'vitest';
import { SilenceGate } from '../../src/session/silence-gate.ts';

const RATE = 24000;
const FRAME = 480;

/** A 20 ms frame: near silence, or a loud tone; every sample tells its position. */
function frame(loud: boolean): Int16Array {
  const pcm = new Int16Array(FRAME);
  for (let i = 0; i < FRAME; i++) pcm[i] = loud ? (i % 2 ? 12000 : -12000) : i % 2;
  return pcm;
}

function gate() {
  const out: { samples: number; position: number | undefined }[] = [];
  let ended = 0;
  const g = new SilenceGate({ thresholdDb: -40, preRollMs: 50, hangOverMs: 100 }, RATE, {
    voice: (pcm, _arrival, position) => void out.push({ samples: pcm.length, position }),
    ended: () => void ended++,
  });
  return { g, out, ended: () => ended };
}

describe('SilenceGate positions', () => {
  it('the pre-roll carries the position of its oldest sample (across the ring\'s wrap), voice its own', () => {
    const { g, out } = gate();
    // Nine quiet frames: the ring (50 ms, 1,200 samples) keeps the last 2.5 of them, wrapped.
    for (let i = 0; i < 9; i++) g.push(frame(false), 0, i * FRAME);
    expect(out).toEqual([]);
    g.push(frame(true), 0, 9 * FRAME);
    const preRoll = 1200;
    expect(out).toHaveLength(3);
    expect(out[0]!.samples + out[1]!.samples).toBe(preRoll);
    expect(out[0]!.position).toBe(9 * FRAME - preRoll);
    // Contiguous: each piece starts where the previous ended, up to the voiced frame.
    for (let i = 1; i < out.length; i++) expect(out[i]!.position).toBe(out[i - 1]!.position! + out[i - 1]!.samples);
    expect(out.at(-1)).toEqual({ samples: FRAME, position: 9 * FRAME });
  });

  it('a pre-roll whose positions are not one run (or unknown) goes without a position', () => {
    const { g, out } = gate();
    g.push(frame(false), 0, 0);
    // A jump: the ring no longer holds one contiguous run of the history.
    g.push(frame(false), 0, 5 * FRAME);
    g.push(frame(true), 0, 6 * FRAME);
    expect(out.map((o) => o.position)).toEqual([undefined, 6 * FRAME]);
    const unknown = gate();
    unknown.g.push(frame(false), 0);
    unknown.g.push(frame(true), 0, FRAME);
    expect(unknown.out.map((o) => o.position)).toEqual([undefined, FRAME]);
  });

  it('the hang-over passes frames with their positions, then the gate closes', () => {
    const { g, out, ended } = gate();
    g.push(frame(true), 0, 0);
    for (let i = 1; i <= 5; i++) g.push(frame(false), 0, i * FRAME);
    expect(out.map((o) => o.position)).toEqual([0, FRAME, 2 * FRAME, 3 * FRAME, 4 * FRAME, 5 * FRAME]);
    expect(ended()).toBe(1);
    expect(g.preRollSamples).toBe(1200);
  });
});
