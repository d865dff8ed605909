/**
 * The repository's own fixtures (scripts/make-fixtures.ts) are what the tests take them for:
 * a capture in exactly the Videobridge format of the shared real one (compared with it, key
 * by key, when it is beside the checkout), with turns, overlap, DTX and jitter; a small Ogg
 * Opus sample; a manifest that tells the truth about both; and bytes the script regenerates.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { opusPacketDurationMs } from '../src/codec/toc.ts';
import {
  CAPTURE_PATH,
  SPEECH_OGG_PATH,
  captureParticipants,
  manifest,
  readCapture,
  readOggOpus,
  sharedFixture,
  sharedFixtures,
  skipNote,
  type JvbMedia,
} from './helpers/fixtures.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const capture = readCapture();
const lines = readFileSync(CAPTURE_PATH, 'utf8').split('\n').filter(Boolean);
const media = capture.filter((r): r is JvbMedia => r.event === 'media');
const shared = sharedFixtures.availableFor(import.meta.url, 'the comparison with the real Videobridge capture');
const hasTools = ['flite', 'opusenc'].every((tool) => spawnSync(tool, ['--version']).error === undefined);
if (!hasTools) skipNote(import.meta.url, 'the regeneration check', 'flite or opusenc is not installed (apt-get install flite opus-tools)');

/** A frame's shape: its keys in order (repeated ones too), and the JSON type of each value, recursively. */
function shape(json: string): string {
  // Keys in their written order, repeats included: JSON.parse would keep only the last `event`.
  const keys = [...json.matchAll(/"([A-Za-z]+)":/g)].map((m) => m[1]).join(',');
  const types = (value: unknown): unknown =>
    value !== null && typeof value === 'object' ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, types(v)])) : typeof value;
  return `${keys} ${JSON.stringify(types(JSON.parse(json)))}`;
}

describe('test/fixtures/two-speakers.jsonl', () => {
  it('has the shared capture\'s record format: timestamp, direction, the frame verbatim', () => {
    for (const line of lines) {
      const record = JSON.parse(line) as Record<string, unknown>;
      expect(Object.keys(record)).toEqual(['timestamp', 'direction', 'data']);
      expect(record.direction).toBe('incoming');
      expect(Number.isInteger(record.timestamp)).toBe(true);
    }
    expect(capture.map((r) => r.sequenceNumber)).toEqual(capture.map((_, i) => i + 1));
    expect(capture.map((r) => r.receivedAt)).toEqual(capture.map((r) => r.receivedAt).sort((a, b) => a - b));
  });

  it('has the Videobridge frames: `event` repeated, numbers as strings, a stereo Opus start per participant', () => {
    const starts = capture.filter((r) => r.event === 'start');
    expect(starts).toHaveLength(2);
    for (const start of starts) {
      expect(shape(start.data)).toBe(
        'event,sequenceNumber,start,tag,mediaFormat,encoding,sampleRate,channels,customParameters,endpointId,event ' +
          '{"event":"string","sequenceNumber":"string","start":{"tag":"string","mediaFormat":{"encoding":"string","sampleRate":"number","channels":"number"},"customParameters":{"endpointId":"string"}}}',
      );
      expect(start).toMatchObject({ encoding: 'opus', sampleRate: 48000, channels: 2 });
      expect(start.tag).toMatch(/^[0-9a-f]{8}-\d+$/);
    }
    expect(captureParticipants(capture).map(({ tag, id }) => tag.startsWith(`${id}-`))).toEqual([true, true]);
    for (const record of media) {
      expect(shape(record.data)).toBe(
        'event,sequenceNumber,media,tag,chunk,timestamp,payload,event ' +
          '{"event":"string","sequenceNumber":"string","media":{"tag":"string","chunk":"string","timestamp":"string","payload":"string"}}',
      );
    }
    // Each tag's start comes before its first packet.
    for (const { tag } of captureParticipants(capture)) {
      expect(capture.findIndex((r) => r.tag === tag && r.event === 'start')).toBeLessThan(capture.findIndex((r) => r.tag === tag && r.event === 'media'));
    }
  });

  it('carries one 20 ms Opus packet per frame, chunks contiguous per tag', () => {
    expect(media.every((r) => opusPacketDurationMs(r.payload) === 20)).toBe(true);
    for (const { tag } of captureParticipants(capture)) {
      const mine = media.filter((r) => r.tag === tag);
      expect(mine.every((r, i) => i === 0 || r.chunk === mine[i - 1]!.chunk + 1), tag).toBe(true);
      expect(mine.every((r, i) => i === 0 || (r.timestamp - mine[i - 1]!.timestamp) % 960 === 0), tag).toBe(true);
    }
  });

  it('agrees with its manifest: participants, packets, DTX gaps (RTP timestamp jumps, chunk contiguous)', () => {
    expect(capture).toHaveLength(manifest.capture.records);
    expect(captureParticipants(capture)).toEqual(manifest.capture.speakers.map((s) => ({ tag: s.tag, id: s.endpointId })));
    const gaps = manifest.capture.speakers.flatMap((s) => s.dtxGaps.map((g) => ({ ...g, tag: s.tag })));
    // At least one stretch of a second or more without packets.
    expect(gaps.some((g) => g.ms >= 1000)).toBe(true);
    for (const speaker of manifest.capture.speakers) {
      const mine = media.filter((r) => r.tag === speaker.tag);
      expect(mine).toHaveLength(speaker.packets);
      const jumps = mine.flatMap((r, i) => (i > 0 && r.timestamp - mine[i - 1]!.timestamp > 960 ? [{ afterChunk: mine[i - 1]!.chunk, frames: (r.timestamp - mine[i - 1]!.timestamp) / 960 - 1 }] : []));
      expect(jumps).toEqual(speaker.dtxGaps.map(({ afterChunk, frames }) => ({ afterChunk, frames })));
      // Nothing arrives from the tag during its gaps.
      for (const gap of speaker.dtxGaps) {
        const after = mine.findIndex((r) => r.chunk === gap.afterChunk);
        expect(mine[after + 1]!.receivedAt - mine[after]!.receivedAt).toBeGreaterThanOrEqual(gap.ms - 200);
      }
    }
  });

  it('has the speakers take turns, overlapping a little, with jittered arrivals', () => {
    const [a, b] = captureParticipants(capture);
    const at = (tag: string) => media.filter((r) => r.tag === tag).map((r) => r.receivedAt);
    const [aTimes, bTimes] = [at(a!.tag), at(b!.tag)];
    // A opens, B starts before A's first turn ends, A comes back before B ends, A closes.
    const gap = manifest.capture.speakers[0]!.dtxGaps[0]!;
    const aTurnOneEnd = media.find((r) => r.tag === a!.tag && r.chunk === gap.afterChunk)!.receivedAt;
    const aTurnTwoStart = media.find((r) => r.tag === a!.tag && r.chunk === gap.afterChunk + 1)!.receivedAt;
    expect(aTimes[0]!).toBeLessThan(bTimes[0]!);
    expect(bTimes[0]!).toBeLessThan(aTurnOneEnd);
    expect(aTurnTwoStart).toBeLessThan(bTimes.at(-1)!);
    expect(bTimes.at(-1)!).toBeLessThan(aTimes.at(-1)!);
    // Arrivals are not a metronome: gaps between a tag's packets spread around 20 ms.
    const steps = new Set(aTimes.slice(1).map((t, i) => t - aTimes[i]!));
    expect(steps.size).toBeGreaterThan(20);
    const span = (capture.at(-1)!.receivedAt - capture[0]!.receivedAt) / 1000;
    expect(span).toBeCloseTo(manifest.capture.durationMs / 1000, 0);
  });

  it.skipIf(!shared)('has the same frame shapes as the shared real capture', () => {
    const real = readCapture(sharedFixture('jvb-two-speakers.jsonl'));
    const shapes = (records: typeof capture) => new Set(records.map((r) => shape(r.data)));
    expect(shapes(capture)).toEqual(shapes(real));
    const realLine = JSON.parse(readFileSync(sharedFixture('jvb-two-speakers.jsonl'), 'utf8').split('\n')[0]!) as object;
    expect(Object.keys(JSON.parse(lines[0]!) as object)).toEqual(Object.keys(realLine));
  });
});

describe('samples/speech.ogg', () => {
  it('is one speaker\'s sentences, about 10 s of mono 20 ms Opus packets, as the manifest says', () => {
    const ogg = readOggOpus();
    expect(ogg.channels).toBe(1);
    expect(ogg.packets).toHaveLength(manifest.speech.packets);
    expect(ogg.packets.every((p) => opusPacketDurationMs(p) === 20)).toBe(true);
    expect(ogg.packets.length * 20).toBeCloseTo(manifest.speech.durationMs, -2);
    expect(manifest.speech.durationMs).toBeGreaterThan(8_000);
    expect(manifest.speech.durationMs).toBeLessThan(14_000);
    expect(manifest.speech.sentences.length).toBeGreaterThanOrEqual(3);
  });
});

describe('the committed fixtures', () => {
  it('stay small: the sample under 40 KB, all under 200 KB', () => {
    const sizes = [SPEECH_OGG_PATH, CAPTURE_PATH, `${ROOT}test/fixtures/manifest.json`].map((path) => statSync(path).size);
    expect(sizes[0]!).toBeLessThan(40_000);
    expect(sizes.reduce((a, b) => a + b, 0)).toBeLessThan(200_000);
  });

  it.skipIf(!hasTools)('regenerate from their script, up to the Opus encoder rounding per CPU (scripts/make-fixtures.ts --check)', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/make-fixtures.ts', '--check'], { cwd: ROOT, encoding: 'utf8' });
    expect(run.status, `${run.stdout}${run.stderr}`).toBe(0);
  });
});
