/**
 * The frames a scripted media server sends for an audio file: shared by `npm run stream`,
 * `npm run monitor` and the in-process monitor, which differ only in what they do with the
 * answers.
 */
import * as v from 'valibot';
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
  const records = parseCapture(new TextDecoder().decode(bytes), name);
  if (!records.ok) return records;
  const frames = pacedFrames(records.records);
  if (frames.length === 0) return { ok: false, reason: `${name}: no frames sent by a client in it` };
  return { ok: true, frames };
}

const CaptureLine = v.object({
  timestamp: v.number(),
  direction: v.optional(v.picklist(['incoming', 'outgoing']), 'incoming'),
  data: v.string(),
});

/**
 * One line of a capture or session dump: `{"timestamp":<epoch ms>,"direction"?:"incoming"|
 * "outgoing","data":"<frame>"}` (test/fixtures/two-speakers.jsonl, and what DUMP_DIR writes).
 */
export type CaptureRecord = v.InferOutput<typeof CaptureLine>;

/** The records of a capture's text, in file order; a bad line is a reason naming it. */
export function parseCapture(text: string, name: string): { ok: true; records: CaptureRecord[] } | { ok: false; reason: string } {
  const records: CaptureRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      return { ok: false, reason: `${name}:${i + 1}: not JSON; a capture has one {"timestamp":…,"data":"…"} per line` };
    }
    const parsed = v.safeParse(CaptureLine, json);
    if (!parsed.success) {
      return { ok: false, reason: `${name}:${i + 1}: a capture line needs a numeric "timestamp" and a string "data" (the frame), "direction" incoming or outgoing` };
    }
    records.push(parsed.output);
  }
  if (records.length === 0) return { ok: false, reason: `${name}: empty` };
  return { ok: true, records };
}

/** The frames the client sent, each `delayMs` after the previous one (a dump's answers are left out). */
export function pacedFrames(records: CaptureRecord[]): TimedFrame[] {
  let previous: number | undefined;
  return records
    .filter((r) => r.direction === 'incoming')
    .map((r) => {
      const delayMs = previous === undefined ? 0 : Math.max(0, r.timestamp - previous);
      previous = r.timestamp;
      return { delayMs, frame: r.data };
    });
}
