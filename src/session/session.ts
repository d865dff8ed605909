import * as v from 'valibot';
import type { Provider, ProviderError } from '../providers/provider.ts';
import type { OpusCodec } from '../codec/opus.ts';
import type { PcmRate } from '../codec/pcm.ts';
import { InboundEvent, KNOWN_EVENTS, MediaEvent, describeIssues, isKnownEvent } from '../protocol/inbound.ts';
import { errorMessage, providerErrorCode, providerSwitched, type TranscriptionResult } from '../protocol/outbound.ts';
import { participantIdOf } from '../protocol/participant.ts';
import type { Base64Codec } from '../util/base64.ts';
import { SessionBacklog } from './backlog.ts';
import { Participant, type InputFormat } from './participant.ts';
import type { Logger } from '../log.ts';
import type { TranscribeParams } from '../protocol/query.ts';
import { withDeadline } from '../util/timers.ts';
import { scoped, type ClientSocket, type InfoBase, type SessionContext, type SessionHandle, type TranscriptSink } from './ports.ts';
import type { StreamResult } from './provider-stream.ts';
import type { SessionShell } from './shell.ts';
import { SessionUsage } from './usage.ts';

/** Unknown event names logged once each per session; a client inventing names forever gets the throttled log. */
const MAX_UNKNOWN_NAMES = 32;
/** Refused streams whose format is remembered until a provider connection frees. */
const MAX_WAITING_STREAMS = 256;
const EVENT_NAMES = [...KNOWN_EVENTS].join(', ');

/** What a session transcribes with: the shared codec, the provider the client chose, and the others to fail over to. */
export interface SessionTools {
  codec: OpusCodec;
  provider: Provider;
  /** The other configured providers, in priority order. */
  fallbacks: readonly Provider[];
  base64: Base64Codec;
}

/**
 * One media-server socket: its participants (one per tag), their provider streams, and the
 * sinks their transcripts go to. Bad input is refused, counted and logged; it never ends
 * the session or touches another participant.
 */
export class Session implements SessionHandle {
  private readonly participants = new Map<string, Participant>();
  private readonly stopping = new Set<Promise<void>>();
  private readonly unknownEvents = new Set<string>();
  /** Streams refused for want of a provider connection, with the format their `start` declared. */
  private readonly waiting = new Map<string, InputFormat>();
  private overParticipantLimit = false;
  private readonly sinks: readonly TranscriptSink[];
  private readonly ctx: SessionContext;
  private readonly sweep: unknown;
  private closed = false;
  private ending: Promise<void> | undefined;
  private readonly usage: SessionUsage;

  constructor(
    private readonly shell: SessionShell,
    sinks: readonly TranscriptSink[],
    ctx: SessionContext,
    private readonly tools: SessionTools,
  ) {
    // One backlog per session: the hard bound of its queues, and backpressure on its client socket.
    const backlog = new SessionBacklog({ ...ctx, log: shell.log }, { pause: () => shell.readFromClient(false), resume: () => shell.readFromClient(true) });
    this.ctx = { ...ctx, log: shell.log, backlog };
    this.sinks = [shell.clientSink, ...sinks];
    this.usage = new SessionUsage(shell.params.sessionId, ctx.metrics);
    const { forceCommitMs, pcmBatchMs, passThroughBatchMs } = ctx.limits;
    // One timer per session checks every participant for a silence, and for a batch whose audio
    // stopped coming (sent within about two batch periods), instead of one timer per frame or batch.
    const batchMs = Math.min(pcmBatchMs || Infinity, passThroughBatchMs || Infinity);
    this.sweep = ctx.timers.setInterval(() => this.flushIdle(), Math.min(250, batchMs, Math.max(20, forceCommitMs / 4)));
  }

  info(base: InfoBase): void {
    this.shell.info(base);
  }

  handle(data: string | ArrayBuffer | Uint8Array): void {
    if (this.closed) return;
    if (typeof data !== 'string') return this.shell.refuse('binary_frame', 'binary frames are not accepted; send JSON text frames');
    if (data.length > this.ctx.limits.maxMessageBytes) {
      return this.shell.refuse('too_large', `message of ${data.length} bytes exceeds the ${this.ctx.limits.maxMessageBytes}-byte limit (MAX_MESSAGE_BYTES)`);
    }
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      return this.shell.refuse('invalid_json', 'message is not JSON');
    }
    if (typeof json !== 'object' || json === null) return this.shell.refuse('invalid_json', 'message is not a JSON object');
    const event = (json as { event?: unknown }).event;
    // The hot path: most frames are media.
    if (event === 'media') return this.media(json);
    if (!isKnownEvent(event)) return this.unknownEvent(event);
    const parsed = v.safeParse(InboundEvent, json);
    if (!parsed.success) return this.shell.refuse(`invalid_${event}`, `${event}: ${describeIssues(parsed.issues)}`);
    const msg = parsed.output;
    switch (msg.event) {
      case 'start': {
        const { tag, mediaFormat } = msg.start;
        const input: InputFormat = {
          encoding: mediaFormat?.encoding ?? this.shell.params.encoding,
          sampleRate: (mediaFormat?.sampleRate ?? 48000) as PcmRate,
        };
        if (input.encoding === 'l16' && mediaFormat?.sampleRate === undefined) input.sampleRate = 16000;
        const existing = this.participants.get(tag);
        if (existing) existing.setInput(input);
        else if (!this.participant(tag, input)) break;
        this.ctx.log.info('stream started', { tag, encoding: input.encoding });
        break;
      }
      case 'stop':
        this.stop(msg.stop.tag);
        break;
      case 'ping':
        this.shell.pong(msg.id);
        break;
      case 'info':
        this.ctx.log.info('client info', { info: printable(json) });
        break;
      case 'usage':
        void this.answerUsage();
        break;
      case 'media':
        break;
    }
  }

  /** Socket closed for good: finals still wanted by a sink get a grace period; everything is released. */
  close(): Promise<void> {
    this.ending ??= this.end(undefined);
    return this.ending;
  }

  /**
   * Server shutdown: every participant's pending audio is committed and its finals awaited
   * (at most `timeoutMs`) while the client is still attached, so they reach it and every other
   * sink; then the client is closed with 1001 and the sinks drain. A session already ending
   * goes on as it was.
   */
  drain(timeoutMs: number): Promise<void> {
    this.ending ??= this.end(timeoutMs);
    return this.ending;
  }

  /** The query parameters of the client attached last. */
  get params(): TranscribeParams {
    return this.shell.params;
  }

  /** The session's log (its lines carry `session`). */
  get log(): Logger {
    return this.ctx.log;
  }

  /** Whether this session may wait for its client to come back: it has a sessionId, and neither side ended it. */
  get resumable(): boolean {
    return this.shell.params.sessionId !== undefined && !this.ending && this.shell.resumable;
  }

  /**
   * The client's socket went away, and the client may come back (docs/PROTOCOL.md §4.9):
   * provider streams stay open, the idle commit goes on, finals are held for the next socket.
   */
  detach(graceMs: number): void {
    this.shell.detach();
    this.ctx.log.info('session detached', { participants: this.participants.size, graceMs });
  }

  /** A new socket for a detached session: its `info`, then the finals held, then the rest. */
  resume(params: TranscribeParams, client: ClientSocket): void {
    this.shell.attach(params, client);
    for (const p of this.participants.values()) p.restartSequence();
    this.ctx.log.info('session resumed', { participants: this.participants.size });
  }

  private async end(drainMs: number | undefined): Promise<void> {
    this.closed = true;
    this.ctx.timers.clearInterval(this.sweep);
    this.ctx.backlog?.close();
    const all = [...this.participants.values()];
    this.participants.clear();
    this.ctx.metrics.state.participants -= all.length;
    if (drainMs !== undefined && this.shell.attached) {
      // The client is still there to receive what the drain produces.
      const finished = Promise.all([...all.map((p) => p.finish(drainMs)), ...this.stopping]);
      await withDeadline(finished, drainMs, this.ctx.timers);
      this.shell.close(1001, 'server shutting down');
    } else {
      const finishMs = drainMs ?? this.ctx.limits.finishTimeoutMs;
      if (this.sinks.some((s) => s.outlivesClient)) await Promise.all(all.map((p) => p.finish(finishMs)));
      else for (const p of all) p.close();
      await Promise.all(this.stopping);
    }
    const usage = this.usage.report();
    this.ctx.log.info('session usage', { usage: usage.totals, participants: usage.participants });
    for (const sink of this.sinks) sink.usage?.(usage);
    await Promise.all(this.sinks.map((s) => s.close()));
    this.shell.closed({ participants: all.length });
  }

  private media(json: object): void {
    const parsed = v.safeParse(MediaEvent, json);
    if (!parsed.success) return this.shell.refuse('invalid_media', `media: ${describeIssues(parsed.issues)}`);
    const { tag, payload, chunk } = parsed.output.media;
    const bytes = this.tools.base64.decode(payload);
    if (!bytes) return this.shell.refuse('bad_base64', 'media payload is not valid base64', tag);
    const p = this.participants.get(tag) ?? this.participant(tag, this.waiting.get(tag) ?? { encoding: this.shell.params.encoding, sampleRate: 48000 });
    if (!p) return;
    this.ctx.metrics.framesTotal.inc();
    p.media(bytes, chunk, this.ctx.timers.now());
  }

  private participant(tag: string, input: InputFormat): Participant | undefined {
    const { maxParticipants, maxProviderConnections } = this.ctx.limits;
    if (maxParticipants && this.participants.size >= maxParticipants) {
      // A policy close (docs/PROTOCOL.md §6): the operator's limit, or on workerd what fits in the
      // isolate's memory. Going on would drop this participant's audio without a word.
      const reason = `participant limit of ${maxParticipants} reached`;
      if (!this.overParticipantLimit) {
        this.overParticipantLimit = true;
        this.ctx.metrics.refused.inc({ reason: 'max_participants' });
      }
      this.shell.refuse('too_many_participants', reason, tag);
      this.shell.close(1008, reason);
      return undefined;
    }
    if (maxProviderConnections && this.ctx.metrics.state.providerStreams >= maxProviderConnections) {
      this.refuseStream(tag, input, 'max_provider_connections', 'too_many_provider_connections', `provider connection limit of ${maxProviderConnections} reached on this server (MAX_PROVIDER_CONNECTIONS); this stream's audio is refused until one frees`);
      return undefined;
    }
    // New work on a saturated process would slow every stream it already runs.
    const saturated = this.ctx.saturated?.();
    if (saturated) {
      this.refuseStream(tag, input, 'saturated', 'server_saturated', `${saturated}; this stream's audio is refused until the load falls`);
      return undefined;
    }
    this.waiting.delete(tag);
    const id = participantIdOf(tag);
    const p = new Participant(tag, id, input, scoped(this.ctx, { tag }), {
      codec: this.tools.codec,
      providers: [this.tools.provider, ...this.tools.fallbacks],
      language: this.shell.params.lang,
      onResult: (r) => this.deliver(tag, id, r),
      onDecodeError: (reason, detail) => {
        this.ctx.metrics.decodeErrors.inc({ reason });
        this.shell.refuse(reason, detail, tag, { count: false });
      },
      onProviderTrouble: (err, provider) => this.providerTrouble(tag, err, provider),
      onProviderSwitch: (from, to, reason) => {
        if (!this.closed) this.shell.send(JSON.stringify(providerSwitched(tag, from, to, reason)));
      },
      usage: (provider) => this.usage.meter(id, tag, provider),
    });
    this.participants.set(tag, p);
    this.ctx.metrics.state.participants++;
    return p;
  }

  /**
   * The server's provider connections are all taken (MAX_PROVIDER_CONNECTIONS), or the process
   * is saturated: this stream alone is refused, not the session. The limit is the whole
   * process's, not this client's doing; closing the socket would end the session's other
   * participants, whose streams run, and bring the media server straight back to the same
   * refusal. Each frame of the stream is answered (throttled) and counted; it starts, with the
   * format its `start` declared, at its first frame once the limit allows (docs/PROTOCOL.md §4.6).
   */
  private refuseStream(tag: string, input: InputFormat, reason: 'max_provider_connections' | 'saturated', code: 'too_many_provider_connections' | 'server_saturated', message: string): void {
    if (!this.waiting.has(tag)) {
      this.ctx.metrics.refused.inc({ reason });
      // Remembered for its format; a client inventing tags without end is not.
      if (this.waiting.size < MAX_WAITING_STREAMS) this.waiting.set(tag, input);
    } else if (input !== this.waiting.get(tag)) this.waiting.set(tag, input);
    this.shell.refuse(code, message, tag);
  }

  private stop(tag: string): void {
    this.waiting.delete(tag);
    const p = this.participants.get(tag);
    if (!p) return;
    this.participants.delete(tag);
    this.ctx.metrics.state.participants--;
    const done = p.finish(this.ctx.limits.finishTimeoutMs).finally(() => this.stopping.delete(done));
    this.stopping.add(done);
    this.ctx.log.info('stream stopped', { tag });
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
    const language = r.language ?? this.shell.params.lang;
    if (language) result.language = language;
    if (r.speaker !== undefined) result.speaker = r.speaker;
    if (r.kind === 'final') this.ctx.metrics.finalLatency.observe((this.ctx.timers.now() - r.startedAt) / 1000);
    for (const sink of this.sinks) sink.deliver(result);
  }

  /** The figures so far, once the streams being stopped have delivered their finals (docs/PROTOCOL.md §4.11). */
  private async answerUsage(): Promise<void> {
    await Promise.all(this.stopping);
    this.shell.send(JSON.stringify({ event: 'usage', ...this.usage.report() }));
  }

  private flushIdle(): void {
    const now = this.ctx.timers.now();
    const due = now - this.ctx.limits.forceCommitMs;
    for (const p of this.participants.values()) {
      if (!p.flushed && p.lastAudioAt <= due) p.flush();
      else p.sendStale(now);
    }
  }

  /** Told to the client (docs/PROTOCOL.md §5.4); the stream has logged and counted it. */
  private providerTrouble(tag: string, err: ProviderError, provider: string): void {
    if (this.closed) return;
    this.shell.send(errorMessage(providerErrorCode(err.kind), err.message, { tag, provider }));
  }

  /** Ignored, as the protocol says, but answered and counted; logged once per name. */
  private unknownEvent(event: unknown): void {
    const name = typeof event === 'string' ? event.slice(0, 64) : undefined;
    const label = name ?? `(${event === undefined ? 'none' : typeof event})`;
    const firstSeen = !this.unknownEvents.has(label) && this.unknownEvents.size < MAX_UNKNOWN_NAMES;
    if (firstSeen) {
      this.unknownEvents.add(label);
      this.ctx.log.warn('unknown event', { event: label });
    }
    const detail =
      name === undefined ? `message has no "event" string; events are ${EVENT_NAMES}` : `unknown event "${name}"; events are ${EVENT_NAMES}`;
    this.shell.refuse('unknown_event', detail, undefined, { log: !firstSeen && !this.unknownEvents.has(label) });
  }
}

/** The start of a client's `info` for the log, or a note when it cannot be printed (nested too deeply). */
function printable(json: unknown): string {
  try {
    return JSON.stringify(json).slice(0, 512);
  } catch {
    return '(not printable: nested too deeply)';
  }
}
