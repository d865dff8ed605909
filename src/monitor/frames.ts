/**
 * The frames a scripted media server sends for an audio file: shared by `npm run stream`,
 * `npm run monitor` and the in-process monitor, which differ only in what they do with the
 * answers.
 */
import { portableBase64 } from '../util/base64.ts';

/** One frame to send, `delayMs` after the previous one. */
export interface TimedFrame {
  delayMs: number;
  frame: string;
}

export type FramesResult = { ok: true; frames: TimedFrame[] } | { ok: false; reason: string };

/** Slices of an Ogg file, as a health check sends them: 200 bytes every 20 ms. */
const OGG_SLICE_BYTES = 200;
const OGG_SLICE_MS = 20;

const isOgg = (bytes: Uint8Array) => bytes[0] === 0x4f && bytes[1] === 0x67 && bytes[2] === 0x67 && bytes[3] === 0x53;

/**
 * An Ogg Opus file (sent as one stream, tag `tag`, in 200-byte slices every 20 ms) or a
 * Videobridge capture in JSON lines (`{"timestamp":ms,"data":"<frame>"}`, replayed at its
 * pace). `name` is for the reasons only.
 */
export function audioFrames(bytes: Uint8Array, name: string, tag = 'cli-0'): FramesResult {
  if (isOgg(bytes)) {
    const frames: TimedFrame[] = [{ delayMs: 0, frame: JSON.stringify({ event: 'start', start: { tag, mediaFormat: { encoding: 'ogg-opus' } } }) }];
    for (let at = 0, chunk = 1; at < bytes.length; at += OGG_SLICE_BYTES, chunk++) {
      const payload = portableBase64.encode(bytes.subarray(at, at + OGG_SLICE_BYTES));
      frames.push({ delayMs: OGG_SLICE_MS, frame: JSON.stringify({ event: 'media', media: { tag, chunk, timestamp: chunk * 960, payload } }) });
    }
    return { ok: true, frames };
  }
  const lines = new TextDecoder().decode(bytes).split('\n');
  const frames: TimedFrame[] = [];
  let previous: number | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line) continue;
    let record: { timestamp?: unknown; data?: unknown };
    try {
      record = JSON.parse(line) as typeof record;
    } catch {
      return { ok: false, reason: `${name}:${i + 1}: neither an Ogg Opus file nor a capture of JSON lines ({"timestamp":…,"data":"…"})` };
    }
    const { timestamp, data } = record ?? {};
    if (typeof timestamp !== 'number' || typeof data !== 'string') {
      return { ok: false, reason: `${name}:${i + 1}: a capture line needs a numeric "timestamp" and a string "data" (the frame sent)` };
    }
    frames.push({ delayMs: previous === undefined ? 0 : timestamp - previous, frame: data });
    previous = timestamp;
  }
  if (frames.length === 0) return { ok: false, reason: `${name}: empty` };
  return { ok: true, frames };
}
