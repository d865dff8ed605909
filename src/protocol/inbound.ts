import * as v from 'valibot';
import { PCM_RATES } from '../codec/pcm.ts';

/** Videobridge sends sequence numbers as JSON strings, test clients as numbers. */
const Numeric = v.union([
  v.pipe(v.number(), v.integer(), v.minValue(0)),
  v.pipe(v.string(), v.regex(/^\d{1,15}$/, 'must be a non-negative integer'), v.transform(Number)),
]);

export const InputEncoding = v.pipe(
  v.picklist(['opus', 'ogg-opus', 'ogg', 'l16']),
  v.transform((e) => (e === 'ogg' ? 'ogg-opus' : e)),
);
export type InputEncoding = 'opus' | 'ogg-opus' | 'l16';

const Tag = v.pipe(v.string(), v.minLength(1), v.maxLength(256));

const MediaFormat = v.object({
  encoding: InputEncoding,
  sampleRate: v.optional(v.pipe(Numeric, v.picklist(PCM_RATES, 'sampleRate must be one of 8000, 12000, 16000, 24000, 48000'))),
  channels: v.optional(Numeric),
});
export type MediaFormat = v.InferOutput<typeof MediaFormat>;

export const StartEvent = v.object({
  event: v.literal('start'),
  start: v.object({
    tag: Tag,
    mediaFormat: v.optional(MediaFormat),
    customParameters: v.optional(v.record(v.string(), v.unknown())),
  }),
});

export const MediaEvent = v.object({
  event: v.literal('media'),
  media: v.object({
    tag: Tag,
    payload: v.string(),
    chunk: v.optional(Numeric),
    timestamp: v.optional(Numeric),
  }),
});
export type MediaEvent = v.InferOutput<typeof MediaEvent>;

export const StopEvent = v.object({
  event: v.literal('stop'),
  stop: v.object({ tag: Tag }),
});

export const PingEvent = v.object({ event: v.literal('ping'), id: v.optional(v.unknown()) });

export const InfoEvent = v.object({ event: v.literal('info') });

/** Asks for the session's usage so far (docs/PROTOCOL.md §4.11); answered with a `usage` message. */
export const UsageEvent = v.object({ event: v.literal('usage') });

export const InboundEvent = v.variant('event', [StartEvent, MediaEvent, StopEvent, PingEvent, InfoEvent, UsageEvent]);
export type InboundEvent = v.InferOutput<typeof InboundEvent>;

/** Events we know; anything else is ignored, per the protocol (answered with `unknown_event`). */
export const KNOWN_EVENTS: ReadonlySet<string> = new Set<InboundEvent['event']>(['start', 'media', 'stop', 'ping', 'info', 'usage']);

export function isKnownEvent(event: unknown): event is InboundEvent['event'] {
  return typeof event === 'string' && KNOWN_EVENTS.has(event);
}

/** A one-line summary of why a message failed validation, naming the field. */
export function describeIssues(issues: readonly v.BaseIssue<unknown>[]): string {
  return issues
    .slice(0, 3)
    .map((i) => {
      const path = i.path?.map((p) => String(p.key)).join('.');
      return path ? `${path}: ${i.message}` : i.message;
    })
    .join('; ');
}
