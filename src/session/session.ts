import * as v from 'valibot';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Provider, ProviderError } from '../providers/provider.ts';
import type { OpusCodec } from '../codec/opus.ts';
import {
  InboundEvent,
  KNOWN_EVENTS,
  MediaEvent,
  describeIssues,
  isKnownEvent,
} from '../protocol/inbound.ts';
import type { PcmRate } from '../codec/pcm.ts';
import {
  errorMessage,
  pong,
  providerErrorCode,
  type DecodeErrorCode,
  type InfoMessage,
  type InputErrorCode,
  type TranscriptionResult,
} from '../protocol/outbound.ts';
import { participantIdOf } from '../protocol/participant.ts';
import type { TranscribeParams } from '../protocol/query.ts';
import type { ClientSocket } from '../sinks/client.ts';
import type { TranscriptSink } from '../sinks/sink.ts';
import type { Base64Codec } from '../util/base64.ts';
import type { Timers } from '../util/timers.ts';
import { Participant, type InputFormat } from './participant.ts';
import type { StreamResult } from './provider-stream.ts';

/** Unknown event names logged once each per session; a client inventing names forever gets the throttled log. */
const MAX_UNKNOWN_NAMES = 32;
const EVENT_NAMES = [...KNOWN_EVENTS].join(', ');

export interface SessionDeps {
  codec: OpusCodec;
  provider: Provider;
  base64: Base64Codec;
  log: Logger;
  metrics: Metrics;
  timers: Timers;
  forceCommitMs: number;
  maxMessageBytes: number;
  maxParticipants: number;
  queueLimitMs: number;
  finishTimeoutMs: number;
  newId(): string;
}

/**
 * One media-server socket: its participants (one per tag), their provider streams, and the
 * sinks their transcripts go to. Bad input is refused, counted and logged; it never ends
 * the session or touches another participant.
 */
export class Session {
  private readonly participants = new Map<string, Participant>();
  private readonly stopping = new Set<Promise<void>>();
  private readonly errorCounts = new Map<string, number>();
  private readonly unknownEvents = new Set<string>();
  private readonly sweep: unknown;
  private closed = false;
  private readonly log: Logger;

  constructor(
    private readonly params: TranscribeParams,
    private readonly client: ClientSocket,
    private readonly sinks: readonly TranscriptSink[],
    private readonly d: SessionDeps,
  ) {
    this.log = d.log.child({ session: params.sessionId ?? null });
    d.metrics.sessionsTotal.inc();
    d.metrics.state.sessions++;
    // One timer per session checks every participant for a silence, instead of one timer per frame.
    this.sweep = d.timers.setInterval(() => this.flushIdle(), Math.min(250, Math.max(20, d.forceCommitMs / 4)));
  }

  /** The first message on the socket. */
  info(base: Omit<InfoMessage, 'event' | 'provider' | 'sessionId'>): void {
    const msg: InfoMessage = { event: 'info', ...base, provider: this.d.provider.name, sessionId: this.params.sessionId ?? null };
    this.client.send(JSON.stringify(msg));
  }

  handle(data: string | ArrayBuffer | Uint8Array): void {
    if (this.closed) return;
    if (typeof data !== 'string') return this.refuse('binary_frame', 'binary frames are not accepted; send JSON text frames');
    if (data.length > this.d.maxMessageBytes) {
      return this.refuse('too_large', `message of ${data.length} bytes exceeds the ${this.d.maxMessageBytes}-byte limit (MAX_MESSAGE_BYTES)`);
    }
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      return this.refuse('invalid_json', 'message is not JSON');
    }
    if (typeof json !== 'object' || json === null) return this.refuse('invalid_json', 'message is not a JSON object');
    const event = (json as { event?: unknown }).event;
    // The hot path: most frames are media.
    if (event === 'media') return this.media(json);
    if (!isKnownEvent(event)) return this.unknownEvent(event);
    const parsed = v.safeParse(InboundEvent, json);
    if (!parsed.success) return this.refuse(`invalid_${event}`, `${event}: ${describeIssues(parsed.issues)}`);
    const msg = parsed.output;
    switch (msg.event) {
      case 'start': {
        const { tag, mediaFormat } = msg.start;
        const input: InputFormat = {
          encoding: mediaFormat?.encoding ?? this.params.encoding,
          sampleRate: (mediaFormat?.sampleRate ?? 48000) as PcmRate,
        };
        if (input.encoding === 'l16' && mediaFormat?.sampleRate === undefined) input.sampleRate = 16000;
        const existing = this.participants.get(tag);
        if (existing) existing.setInput(input);
        else this.participant(tag, input);
        this.log.info('stream started', { tag, encoding: input.encoding });
        break;
      }
      case 'stop':
        this.stop(msg.stop.tag);
        break;
      case 'ping':
        this.client.send(pong(msg.id));
        break;
      case 'info':
        this.log.info('client info', { info: JSON.stringify(json).slice(0, 512) });
        break;
      case 'media':
        break;
    }
  }

  /** Socket closed: finals still wanted by a sink get a grace period; everything is released. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.d.timers.clearInterval(this.sweep);
    const drain = this.sinks.some((s) => s.outlivesClient);
    const all = [...this.participants.values()];
    this.participants.clear();
    this.d.metrics.state.participants -= all.length;
    if (drain) await Promise.all(all.map((p) => p.finish(this.d.finishTimeoutMs)));
    else for (const p of all) p.close();
    await Promise.all(this.stopping);
    await Promise.all(this.sinks.map((s) => s.close()));
    this.d.metrics.state.sessions--;
    this.log.info('session closed', { participants: all.length });
  }

  private media(json: object): void {
    const parsed = v.safeParse(MediaEvent, json);
    if (!parsed.success) return this.refuse('invalid_media', `media: ${describeIssues(parsed.issues)}`);
    const { tag, payload, chunk } = parsed.output.media;
    const bytes = this.d.base64.decode(payload);
    if (!bytes) return this.refuse('bad_base64', 'media payload is not valid base64', tag);
    const p = this.participants.get(tag) ?? this.participant(tag, { encoding: this.params.encoding, sampleRate: 48000 });
    if (!p) return;
    this.d.metrics.framesTotal.inc();
    p.media(bytes, chunk, this.d.timers.now());
  }

  private participant(tag: string, input: InputFormat): Participant | undefined {
    if (this.d.maxParticipants && this.participants.size >= this.d.maxParticipants) {
      // A policy close (docs/PROTOCOL.md §6): the operator's limit, or on workerd what fits in the
      // isolate's memory. Going on would drop this participant's audio without a word.
      const reason = `participant limit of ${this.d.maxParticipants} reached`;
      this.refuse('too_many_participants', reason, tag);
      this.client.close(1008, reason);
      return undefined;
    }
    const id = participantIdOf(tag);
    const log = this.log.child({ tag });
    const p = new Participant(tag, id, input, {
      codec: this.d.codec,
      provider: this.d.provider,
      language: this.params.lang,
      log,
      metrics: this.d.metrics,
      timers: this.d.timers,
      queueLimitMs: this.d.queueLimitMs,
      finishTimeoutMs: this.d.finishTimeoutMs,
      newMessageId: this.d.newId,
      onResult: (r) => this.deliver(tag, id, r),
      onDecodeError: (reason, detail) => {
        this.d.metrics.decodeErrors.inc({ reason });
        this.refuse(reason, detail, tag, { count: false });
      },
      onProviderTrouble: (err) => this.providerTrouble(tag, err),
    });
    this.participants.set(tag, p);
    this.d.metrics.state.participants++;
    return p;
  }

  private stop(tag: string): void {
    const p = this.participants.get(tag);
    if (!p) return;
    this.participants.delete(tag);
    this.d.metrics.state.participants--;
    const done = p.finish(this.d.finishTimeoutMs).finally(() => this.stopping.delete(done));
    this.stopping.add(done);
    this.log.info('stream stopped', { tag });
  }

  private deliver(tag: string, id: string, r: StreamResult): void {
    const result: TranscriptionResult = {
      event: 'transcription-result',
      type: 'transcription-result',
      transcript: [r.confidence === undefined ? { text: r.text } : { text: r.text, confidence: r.confidence }],
      is_interim: r.kind === 'interim',
      message_id: r.messageId,
      participant: { id, tag },
      timestamp: r.startedAt,
    };
    const language = r.language ?? this.params.lang;
    if (language) result.language = language;
    if (r.speaker !== undefined) result.speaker = r.speaker;
    if (r.kind === 'final') this.d.metrics.finalLatency.observe((this.d.timers.now() - r.startedAt) / 1000);
    for (const sink of this.sinks) sink.deliver(result);
  }

  private flushIdle(): void {
    const due = this.d.timers.now() - this.d.forceCommitMs;
    for (const p of this.participants.values()) {
      if (!p.flushed && p.lastAudioAt <= due) p.flush();
    }
  }

  /** Told to the client (docs/PROTOCOL.md §5.4); the stream has logged and counted it. */
  private providerTrouble(tag: string, err: ProviderError): void {
    if (this.closed) return;
    this.client.send(errorMessage(providerErrorCode(err.kind), err.message, { tag, provider: this.d.provider.name }));
  }

  /** Ignored, as the protocol says, but answered and counted; logged once per name. */
  private unknownEvent(event: unknown): void {
    const name = typeof event === 'string' ? event.slice(0, 64) : undefined;
    const label = name ?? `(${event === undefined ? 'none' : typeof event})`;
    const firstSeen = !this.unknownEvents.has(label) && this.unknownEvents.size < MAX_UNKNOWN_NAMES;
    if (firstSeen) {
      this.unknownEvents.add(label);
      this.log.warn('unknown event', { event: label });
    }
    const detail =
      name === undefined ? `message has no "event" string; events are ${EVENT_NAMES}` : `unknown event "${name}"; events are ${EVENT_NAMES}`;
    this.refuse('unknown_event', detail, undefined, { log: !firstSeen && !this.unknownEvents.has(label) });
  }

  /**
   * Counts, logs and answers refused input. Logging and answers are throttled per reason
   * (the first few, then every power of ten) so a participant sending garbage at 50 frames
   * a second floods neither the log nor the client.
   */
  private refuse(reason: InputErrorCode | DecodeErrorCode, detail: string, tag?: string, options: { count?: boolean; log?: boolean } = {}): void {
    if (options.count ?? true) this.d.metrics.inputErrors.inc({ reason });
    const n = (this.errorCounts.get(reason) ?? 0) + 1;
    this.errorCounts.set(reason, n);
    if (n > 5 && !Number.isInteger(Math.log10(n))) return;
    if (options.log ?? true) this.log.warn('input refused', { reason, detail, tag, occurrences: n });
    this.client.send(errorMessage(reason, detail, { tag }));
  }
}
