/**
 * Captures and session dumps: JSON lines `{"timestamp":<epoch ms>,"direction"?:"incoming"|
 * "outgoing","data":"<frame>"}` (test/fixtures/two-speakers.jsonl, and what DUMP_DIR writes).
 * Validated here, at the tools' edge, with a line number for each problem.
 */
import * as v from 'valibot';
import { UsageError } from './cli.ts';

const Line = v.object({
  timestamp: v.number(),
  direction: v.optional(v.picklist(['incoming', 'outgoing']), 'incoming'),
  data: v.string(),
});

export type CaptureRecord = v.InferOutput<typeof Line>;

/** The records of a capture's text, in file order; a bad line is a UsageError naming it. */
export function parseCapture(text: string, path: string): CaptureRecord[] {
  return text
    .split('\n')
    .map((line, index) => ({ line, index }))
    .filter(({ line }) => line.trim() !== '')
    .map(({ line, index }) => {
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        throw new UsageError(`${path}:${index + 1}: not JSON; a capture has one {"timestamp":…,"data":"…"} per line`);
      }
      const parsed = v.safeParse(Line, json);
      if (!parsed.success) {
        throw new UsageError(`${path}:${index + 1}: a capture line needs a numeric "timestamp" and a string "data" (the frame), "direction" incoming or outgoing`);
      }
      return parsed.output;
    });
}

/** The frames the client sent, each with its delay (ms) after the previous one. */
export function pacedFrames(records: CaptureRecord[]): [delayMs: number, frame: string][] {
  let previous: number | undefined;
  return records
    .filter((r) => r.direction === 'incoming')
    .map((r) => {
      const delay = previous === undefined ? 0 : Math.max(0, r.timestamp - previous);
      previous = r.timestamp;
      return [delay, r.data];
    });
}

/** The tags a capture's frames name, in order of first appearance (of a `start` or `media`). */
export function tagsOf(frames: string[]): string[] {
  const tags = new Set<string>();
  for (const frame of frames) {
    const tag = frameTag(frame);
    if (tag !== undefined) tags.add(tag);
  }
  return [...tags];
}

/** The tag a `start` or `media` frame names; undefined for anything else. */
export function frameTag(frame: string): string | undefined {
  try {
    const msg = JSON.parse(frame) as { event?: unknown; start?: { tag?: unknown }; media?: { tag?: unknown } };
    const tag = msg.event === 'start' ? msg.start?.tag : msg.event === 'media' ? msg.media?.tag : undefined;
    return typeof tag === 'string' ? tag : undefined;
  } catch {
    return undefined;
  }
}
