/**
 * Captures and session dumps at the tools' edge: the parsing is the core's
 * (src/monitor/frames.ts, shared with `npm run monitor`); a bad line is a UsageError here.
 */
import { parseCapture as parse, type CaptureRecord } from '../../src/monitor/frames.ts';
import { UsageError } from './cli.ts';

export { pacedFrames, type CaptureRecord } from '../../src/monitor/frames.ts';

/** The records of a capture's text, in file order; a bad line is a UsageError naming it. */
export function parseCapture(text: string, path: string): CaptureRecord[] {
  const parsed = parse(text, path);
  if (!parsed.ok) throw new UsageError(parsed.reason);
  return parsed.records;
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
