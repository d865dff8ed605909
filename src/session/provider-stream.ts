import {
  ProviderError,
  type AudioFormat,
  type Provider,
  type ProviderConnection,
  type Transcript,
} from '../providers/provider.ts';
import { backoffMs, withDeadline } from '../util/timers.ts';
import { SessionBacklog, type HeldAudio } from './backlog.ts';
import type { PcmReader, PcmSource } from './decode-history.ts';
import type { SessionContext } from './ports.ts';
import type { StreamUsage } from './usage.ts';
import { Timeline } from './timeline.ts';

export interface StreamResult {
  kind: 'interim' | 'final';
  text: string;
  messageId: string;
  /** Epoch ms at which the utterance's first audio reached the proxy. */
  startedAt: number;
  confidence?: number;
  language?: string;
  speaker?: string | number;
}

export interface ProviderStreamOptions {
  provider: Provider;
  format: AudioFormat;
  language?: string;
  onResult(result: StreamResult): void;
  /**
   * The first failure of an episode: the client is told once, not at every retry. The
   * episode ends when the stream recovers (a connection the provider accepted, or a result).
   */
  onTrouble(err: ProviderError): void;
  /** Sent first on every new connection (the Ogg header pages of a pass-through stream). */
  preamble?: () => Uint8Array | undefined;
  /**
   * The provider failed `FAILOVER_AFTER` times in a row (at once for a refused key): the
   * participant may move to another one, taking this stream's audio along (`handOver`).
   */
  onGiveUp?(err: ProviderError): void;
  /** Usage accounting (usage.ts): one call per event. */
  usage?: StreamUsage;
}

/** One connection and what it takes to turn its transcripts into results. */
interface Link {
  serial: number;
  conn?: ProviderConnection;
  openedAt: number;
  timeline: Timeline;
  /** Arrival of the first audio since the last final, for providers that give no offsets. */
  utteranceStart?: number;
  healthy: boolean;
  flushOnOpen: boolean;
  /** The provider announced the connection's end; it is replaced at the next utterance boundary. */
  expiring: boolean;
  /** Replaces it regardless, in time for the retiring connection to deliver its last final. */
  rotateTimer?: unknown;
  /** Audio sent on it so far (ms): the offsets providers give their finals in. */
  sentMs: number;
}

export interface Queued {
  audio: Uint8Array;
  durationMs: number;
  arrival: number;
}

interface SentAt {
  durationMs: number;
  arrival: number;
  serial: number;
  /** Where it ended on its connection. */
  endMs: number;
}

/**
 * Decoded PCM kept as where to rebuild it (decode-history.ts): samples `[start, end)` of
 * `source`, a twelfth of the bytes' size while it waits for its final.
 */
interface Span {
  source: PcmSource;
  start: number;
  end: number;
}

/**
 * What was sent on a connection since the last final: audio (its bytes, or the span of
 * decoded PCM it was), or the point where the utterance was flushed.
 */
type Unfinalised = (SentAt & { audio: Uint8Array }) | (SentAt & Span) | { flush: true; serial: number; endMs: number };

/** Reconnect backoff bounds, and how long a connection must live to count as healthy. */
const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
const HEALTHY_AFTER_MS = 10_000;
/** Failures in a row (a refused key counts at once) after which the participant may move to the next provider. */
const FAILOVER_AFTER = 3;
/** Connections `finish` may open to deliver the last finals when one dies on the way. */
const FINISH_ATTEMPTS = 3;
/** Rotate this long before the provider's connection cap. */
const ROTATE_MARGIN_MS = 60_000;

/**
 * The provider side of one participant: opened lazily on the first audio, audio queued
 * (bounded) while it connects, reopened with backoff after a failure, and rotated before the
 * provider's connection cap without losing the utterance in flight.
 */
export class ProviderStream implements HeldAudio {
  private link: Link | undefined;
  private connecting: Promise<void> | undefined;
  private readonly queue: Queued[] = [];
  private queuedMs = 0;
  private queuedBytes = 0;
  /** When audio began waiting for a connection (the outage, as far as this stream can tell). */
  private outageSince: number | undefined;
  /** The session's audio held for its providers (the hard bound, the client's backpressure). */
  private readonly backlog: SessionBacklog;
  /** Audio dropped since the current episode began (the session's buffer full), reported when it ends. */
  private dropping: { since: number; frames: number; ms: number } | undefined;
  private released = false;
  private failures = 0;
  private retryAt = 0;
  private retryTimer: unknown;
  private flushQueued = false;
  private serial = 0;
  private closed = false;
  /** `finish` has begun: no new audio, but a lost connection is still replaced to deliver the last finals. */
  private finishing = false;
  /** Trouble has been reported and the stream has not recovered since. */
  private troubled = false;
  private readonly retiring = new Set<Promise<void>>();
  private readonly utterances = new Map<string, { messageId: string; startedAt: number }>();
  /** Sent since the last final (bounded by `limits.providerReplayMs`): replayed if the connection dies first. */
  private unfinalised: Unfinalised[] = [];
  private unfinalisedMs = 0;
  /** Why the next connection opens (a failure's kind, `rotation`, `expired`), for the metrics. */
  private reopenReason = 'closed';
  /**
   * PCM gathered for one upstream message (PCM_BATCH_MS): one buffer per batch, which is then
   * sent and kept for replay as is (no per-frame copy besides the one into it). It exists only
   * while a connection is open: whatever takes the connection away sends or queues it first.
   */
  private batch: Uint8Array | undefined;
  private batchBytes = 0;
  private batchMs = 0;
  private batchArrival = 0;
  /** The batch is samples `[batchStart, batchEnd)` of `batchSource`, contiguous (otherwise undefined: kept as bytes). */
  private batchSource: PcmSource | undefined;
  private batchStart = 0;
  private batchEnd = 0;
  /** Bytes of one batch (0: no batching). */
  private readonly batchCapacity: number;

  /**
   * Audio waits in the queue while a connection opens or backs off: at
   * `ctx.limits.providerQueueMs` of it the session's client socket is paused, and only the
   * session's hard bound (`ctx.backlog`, MAX_SESSION_BUFFER_MB) drops any.
   * `ctx.limits.finishTimeoutMs` is how long a retiring connection may take to deliver its
   * last finals.
   */
  constructor(
    private readonly ctx: SessionContext,
    private readonly o: ProviderStreamOptions,
  ) {
    this.backlog = ctx.backlog ?? new SessionBacklog(ctx);
    ctx.metrics.state.providerStreams++;
    const batchMs = ctx.limits.pcmBatchMs ?? 0;
    // Whole 16-bit samples of the provider's rate; Opus and Ogg pass-through are never batched.
    this.batchCapacity = o.format.kind === 'pcm16' && batchMs > 0 ? 2 * Math.round((o.format.sampleRate * batchMs) / 1000) : 0;
  }

  /**
   * Audio the client sent for this stream, counted for usage whether or not it is sent: the
   * participant reports it before the silence gate, which keeps most of it from `push`.
   */
  heard(durationMs: number): void {
    this.o.usage?.received(durationMs);
  }

  /**
   * `source` and `position`: decoded PCM, samples `[position, position + samples)` of a decode
   * history, which the replay buffer then keeps instead of the bytes. The queue during an
   * outage keeps bytes regardless (bounded by the session's buffer).
   */
  push(audio: Uint8Array, durationMs: number, arrival: number, source?: PcmSource, position?: number): void {
    if (this.closed || this.finishing) return;
    const link = this.link;
    if (link?.conn) {
      if (this.dueForRotation(link, arrival)) {
        this.rotate();
      } else if (this.batchCapacity > 0 && durationMs > 0) {
        this.addToBatch(link, audio, durationMs, arrival, source, position);
        return;
      } else {
        this.sendNow(link, audio, durationMs, arrival, false, source, position);
        return;
      }
    }
    this.enqueue(audio, durationMs, arrival);
    if (this.connecting || this.retryTimer !== undefined) return;
    const wait = this.retryAt - this.ctx.timers.now();
    if (wait <= 0) this.open();
    // Audio waits out the backoff in the queue; it must not wait for more audio to arrive.
    else this.retryTimer = this.ctx.timers.setTimeout(() => this.retryNow(), wait);
  }

  private addToBatch(link: Link, audio: Uint8Array, durationMs: number, arrival: number, source: PcmSource | undefined, position: number | undefined): void {
    if (this.batchBytes + audio.byteLength > this.batchCapacity) this.sendBatch();
    if (audio.byteLength >= this.batchCapacity) {
      this.sendNow(link, audio, durationMs, arrival, false, source, position);
      return;
    }
    const samples = audio.byteLength / 2;
    if (!this.batch) {
      this.batch = new Uint8Array(this.batchCapacity);
      this.batchArrival = arrival;
      this.batchSource = position === undefined ? undefined : source;
      this.batchStart = this.batchEnd = position ?? 0;
    } else if (this.batchSource && (source !== this.batchSource || position !== this.batchEnd)) {
      // Not one contiguous span (input switched mid-batch): its bytes are kept instead.
      this.batchSource = undefined;
    }
    this.batchEnd += samples;
    this.batch.set(audio, this.batchBytes);
    this.batchBytes += audio.byteLength;
    this.batchMs += durationMs;
    if (this.batchBytes === this.batchCapacity) this.sendBatch();
  }

  /**
   * Sends the audio gathered so far now (end of speech, flush, rotation, finish), or queues it
   * when its connection is gone. Nothing else is ever sent before it, so order is kept.
   */
  sendBatch(): void {
    const batch = this.batch;
    if (!batch) return;
    const bytes = this.batchBytes;
    const ms = this.batchMs;
    this.batch = undefined;
    this.batchBytes = 0;
    this.batchMs = 0;
    const source = this.batchSource;
    this.batchSource = undefined;
    const audio = bytes === batch.byteLength ? batch : batch.subarray(0, bytes);
    const link = this.link;
    if (link?.conn && !this.closed) this.sendNow(link, audio, ms, this.batchArrival, true, source, this.batchStart);
    else if (!this.closed) this.enqueue(audio, ms, this.batchArrival);
  }

  /** A batch that has waited its period and a frame more at `now` (the session's sweep): its audio stopped coming, so it goes (no timer per batch). */
  sendStaleBatch(now: number): void {
    if (this.batch && this.batchArrival < now - (this.ctx.limits.pcmBatchMs ?? 0) - 20) this.sendBatch();
  }

  /** Before the provider's cap, or at the first utterance boundary once it announced the end. */
  private dueForRotation(link: Link, arrival: number): boolean {
    if (link.expiring && link.utteranceStart === undefined) return true;
    const max = this.o.provider.maxConnectionMs;
    return !!max && arrival - link.openedAt > max - ROTATE_MARGIN_MS;
  }

  private retryNow(): void {
    this.retryTimer = undefined;
    if (!this.closed && !this.link && this.pendingAudio()) this.open();
  }

  /** Audio that still needs a connection: queued, or heard by one that died before its final. */
  private pendingAudio(): boolean {
    return this.queue.length > 0 || this.unfinalisedMs > 0;
  }

  /** End of utterance (idle timeout or stop). */
  flush(): void {
    this.sendBatch();
    const link = this.link;
    if (link?.conn) {
      link.conn.flush();
      // A replay must end the utterance at the same point.
      if (this.unfinalised.at(-1) && !('flush' in this.unfinalised.at(-1)!)) {
        this.unfinalised.push({ flush: true, serial: link.serial, endMs: link.sentMs });
      }
    } else if (link) link.flushOnOpen = true;
    // Backing off: the queued (or replayed) utterance still needs its end once a connection opens.
    else if (this.pendingAudio()) this.flushQueued = true;
  }

  /** Finalise what is in flight (bounded by `timeoutMs`), then close everything. */
  async finish(timeoutMs: number): Promise<void> {
    if (this.closed || this.finishing) return;
    this.sendBatch();
    this.finishing = true;
    const deadline = this.ctx.timers.now() + timeoutMs;
    const left = () => Math.max(0, deadline - this.ctx.timers.now());
    // A connection that dies before its last final is replaced while time is left, its
    // audio replayed: a deploy or a `stop` is no reason to lose the utterance in flight.
    for (let attempt = 0; attempt < FINISH_ATTEMPTS && left() > 0; attempt++) {
      if (!this.link && this.pendingAudio()) {
        // No waiting out the backoff now.
        if (this.retryTimer !== undefined) this.ctx.timers.clearTimeout(this.retryTimer);
        this.retryTimer = undefined;
        this.flushQueued = true;
        this.open();
      }
      if (this.connecting) await withDeadline(this.connecting.catch(() => undefined), left(), this.ctx.timers);
      const link = this.link;
      if (!link?.conn) continue;
      this.stopRotationTimer(link);
      await withDeadline(link.conn.finish(left()).catch(() => undefined), left(), this.ctx.timers);
      // Still current: it delivered what it had (or ran out of time); lost: try again.
      if (this.link === link) break;
    }
    this.closed = true;
    const link = this.link;
    this.link = undefined;
    if (link) this.stopRotationTimer(link);
    link?.conn?.close();
    await withDeadline(Promise.all(this.retiring).catch(() => undefined), left(), this.ctx.timers);
    this.drop();
  }

  /**
   * Failover: what this stream still owes a provider, in order (audio a dead connection heard
   * and never finalised, then the queue; `undefined` where the utterance was flushed), and
   * the stream closed without sending it.
   */
  handOver(): (Queued | undefined)[] {
    this.sendBatch();
    this.materialise();
    const pending: (Queued | undefined)[] = this.unfinalised.map((u) => ('audio' in u ? u : undefined));
    pending.push(...this.queue);
    if (this.flushQueued || this.link?.flushOnOpen) pending.push(undefined);
    this.close();
    return pending;
  }

  /**
   * The replay buffer's spans become bytes again: the stream is retired (a format switch, a
   * probe back) while it may still replay in `finish`, and the decode history they point
   * into goes on with the participant's next stream, which releases what it no longer needs.
   */
  materialise(): void {
    this.sendBatch();
    if (!this.unfinalised.some((u) => 'source' in u)) return;
    const readers = new Map<PcmSource, PcmReader>();
    try {
      const kept: Unfinalised[] = [];
      for (const u of this.unfinalised) {
        if (!('source' in u)) {
          kept.push(u);
          continue;
        }
        const audio = this.rebuild(readers, u);
        if (audio) kept.push({ audio, durationMs: u.durationMs, arrival: u.arrival, serial: u.serial, endMs: u.endMs });
        else this.unfinalisedMs -= u.durationMs;
      }
      this.unfinalised = kept;
    } finally {
      for (const reader of readers.values()) reader.close();
    }
  }

  /**
   * The oldest position of `source` the replay buffer (or the batch being gathered) points
   * at: the decode history may release everything before it.
   */
  oldestPosition(source: PcmSource): number | undefined {
    let oldest = this.batch && this.batchSource === source ? this.batchStart : undefined;
    for (const u of this.unfinalised) if ('source' in u && u.source === source && !(oldest !== undefined && oldest <= u.start)) oldest = u.start;
    return oldest;
  }

  /** A span's PCM, rebuilt; undefined (logged, counted as dropped audio) if it cannot be. */
  private rebuild(readers: Map<PcmSource, PcmReader>, span: Span & { durationMs: number }): Uint8Array | undefined {
    let reader = readers.get(span.source);
    if (!reader) readers.set(span.source, (reader = span.source.reader()));
    try {
      const pcm = reader.read(span.start, span.end);
      return new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    } catch (error) {
      const provider = this.o.provider.name;
      this.ctx.metrics.audioDroppedSeconds.inc({ provider }, span.durationMs / 1000);
      this.ctx.log.error('audio to replay could not be rebuilt', { provider, ms: Math.round(span.durationMs), error: String(error) });
      return undefined;
    }
  }

  /** Close now, dropping what is in flight. */
  close(): void {
    if (this.closed && !this.link) return;
    this.closed = true;
    if (this.link) this.stopRotationTimer(this.link);
    this.link?.conn?.close();
    this.link = undefined;
    this.drop();
  }

  private drop(): void {
    this.batch = undefined;
    this.batchSource = undefined;
    this.batchBytes = 0;
    this.batchMs = 0;
    if (this.retryTimer !== undefined) this.ctx.timers.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.queue.length = 0;
    this.queuedMs = 0;
    this.queueGone('stream ended');
    this.utterances.clear();
    if (!this.released) {
      this.released = true;
      this.ctx.metrics.state.providerStreams--;
    }
    this.unfinalised = [];
    this.unfinalisedMs = 0;
  }

  /**
   * `kept`: the audio is already a copy of its own (queued or replayed), not a view into WASM
   * memory. `source`: it is samples from `position` on of that decode history, kept as such.
   */
  private sendNow(link: Link, audio: Uint8Array, durationMs: number, arrival: number, kept = false, source?: PcmSource, position?: number): void {
    link.utteranceStart ??= arrival;
    link.timeline.record(durationMs, arrival);
    link.sentMs += durationMs;
    link.conn!.send(audio, durationMs);
    this.o.usage?.sent(durationMs);
    const limit = this.ctx.limits.providerReplayMs;
    if (limit <= 0 || durationMs <= 0) return;
    this.unfinalised.push(
      source && position !== undefined
        ? { source, start: position, end: position + audio.byteLength / 2, durationMs, arrival, serial: link.serial, endMs: link.sentMs }
        : { audio: kept ? audio : audio.slice(), durationMs, arrival, serial: link.serial, endMs: link.sentMs },
    );
    this.unfinalisedMs += durationMs;
    // A final long overdue (a monologue the provider never ends): the oldest audio can no longer be replayed.
    while (this.unfinalisedMs > limit) {
      const old = this.unfinalised.shift()!;
      if (!('flush' in old)) this.unfinalisedMs -= old.durationMs;
    }
  }

  /** A final on `link` ended at `endMs` (or, when the provider does not say, at the first flush): that audio is done. */
  private finalised(link: Link, endMs: number | undefined): void {
    let cut = 0;
    if (endMs !== undefined) {
      while (cut < this.unfinalised.length && this.unfinalised[cut]!.serial === link.serial && this.unfinalised[cut]!.endMs <= endMs) cut++;
    } else {
      const flush = this.unfinalised.findIndex((u) => 'flush' in u && u.serial === link.serial);
      cut = flush >= 0 ? flush + 1 : this.unfinalised.length;
    }
    for (const u of this.unfinalised.splice(0, cut)) if (!('flush' in u)) this.unfinalisedMs -= u.durationMs;
    // A flush mark left at the front ends audio that is gone: nothing to end any more.
    while (this.unfinalised[0] && 'flush' in this.unfinalised[0]) this.unfinalised.shift();
    // A batch (PCM_BATCH_MS) the final ends inside: its samples up to that end are final too,
    // and a replay must not send them again (the last word heard twice, billed twice).
    const head = this.unfinalised[0];
    const format = this.o.format;
    if (endMs === undefined || !head || 'flush' in head || head.serial !== link.serial || format.kind !== 'pcm16') return;
    const bytes = 2 * Math.round(((endMs - (head.endMs - head.durationMs)) * format.sampleRate) / 1000);
    if (bytes <= 0 || bytes >= ('audio' in head ? head.audio.byteLength : 2 * (head.end - head.start))) return;
    const ms = (bytes / 2 / format.sampleRate) * 1000;
    const trimmed = { durationMs: head.durationMs - ms, arrival: head.arrival + ms, serial: head.serial, endMs: head.endMs };
    this.unfinalised[0] = 'audio' in head ? { ...trimmed, audio: head.audio.subarray(bytes) } : { ...trimmed, source: head.source, start: head.start + bytes / 2, end: head.end };
    this.unfinalisedMs -= ms;
  }

  /** On a new connection, first what the dead one heard and never finalised, flushes where they were. */
  private replay(link: Link): void {
    if (this.unfinalised.length === 0) return;
    const pending = this.unfinalised;
    this.unfinalised = [];
    this.unfinalisedMs = 0;
    let ms = 0;
    const readers = new Map<PcmSource, PcmReader>();
    try {
      for (const u of pending) {
        if ('flush' in u) {
          link.conn!.flush();
          this.unfinalised.push({ flush: true, serial: link.serial, endMs: link.sentMs });
        } else if ('audio' in u) {
          this.sendNow(link, u.audio, u.durationMs, u.arrival, true);
          ms += u.durationMs;
        } else {
          // Rebuilt to send, kept as the span it is.
          const audio = this.rebuild(readers, u);
          if (!audio) continue;
          this.sendNow(link, audio, u.durationMs, u.arrival, true, u.source, u.start);
          ms += u.durationMs;
        }
      }
    } finally {
      for (const reader of readers.values()) reader.close();
    }
    this.ctx.metrics.replayedSeconds.inc({ provider: this.o.provider.name, reason: this.reopenReason }, ms / 1000);
    this.ctx.log.info('replaying audio the lost connection had not finalised', { provider: this.o.provider.name, ms, reason: this.reopenReason });
  }

  private enqueue(audio: Uint8Array, durationMs: number, arrival: number): void {
    // The audio may be a view into WASM memory that the next decode overwrites.
    const copy = audio.slice();
    this.queue.push({ audio: copy, durationMs, arrival });
    this.queuedMs += durationMs;
    this.queuedBytes += copy.byteLength;
    this.outageSince ??= this.ctx.timers.now();
    // Nothing is dropped at the mark: the client is paused instead (docs/PROTOCOL.md §4.10).
    this.backlog.add(this, copy.byteLength);
    if (this.queuedMs >= this.ctx.limits.providerQueueMs) this.backlog.hold(this, this.outageSince);
  }

  oldestArrival(): number | undefined {
    return this.queue[0]?.arrival;
  }

  /** The session's buffer is full and this queue holds its oldest audio: it goes, counted. */
  dropOldest(): number {
    const old = this.queue.shift();
    if (!old) return 0;
    this.queuedMs -= old.durationMs;
    this.queuedBytes -= old.audio.byteLength;
    const provider = this.o.provider.name;
    this.ctx.metrics.queueDropped.inc({ provider });
    this.ctx.metrics.audioDroppedSeconds.inc({ provider }, old.durationMs / 1000);
    this.dropping ??= { since: this.ctx.timers.now(), frames: 0, ms: 0 };
    this.dropping.frames++;
    this.dropping.ms += old.durationMs;
    if (this.queuedMs < this.ctx.limits.providerQueueMs) this.backlog.hold(this, undefined);
    return old.audio.byteLength;
  }

  /** The queue went to a connection (or with the stream): the outage is over for the backlog. */
  private queueGone(how: 'connected' | 'stream ended'): void {
    if (how === 'stream ended') this.backlog.leave(this, this.queuedBytes);
    else {
      this.backlog.remove(this.queuedBytes);
      this.backlog.hold(this, undefined);
    }
    this.queuedBytes = 0;
    this.outageSince = undefined;
    const d = this.dropping;
    if (!d) return;
    this.dropping = undefined;
    // One line per episode, when it ends; the metrics count as it happens.
    this.ctx.log.warn('audio dropped while the provider was unavailable: the session buffer was full', {
      provider: this.o.provider.name,
      droppedMs: Math.round(d.ms),
      frames: d.frames,
      episodeMs: this.ctx.timers.now() - d.since,
      limitBytes: this.ctx.limits.maxSessionBufferBytes,
      ended: how,
    });
  }

  private open(): void {
    const serial = ++this.serial;
    if (serial > 1) {
      this.ctx.metrics.reconnects.inc({ provider: this.o.provider.name, reason: this.reopenReason });
      this.o.usage?.reconnect();
    }
    const link: Link = {
      serial,
      openedAt: this.ctx.timers.now(),
      timeline: new Timeline(),
      healthy: false,
      flushOnOpen: this.flushQueued,
      expiring: false,
      sentMs: 0,
    };
    this.link = link;
    this.flushQueued = false;
    const { provider } = this.o;
    const attempt = provider
      .connect(
        { format: this.o.format, language: this.o.language, log: this.ctx.log },
        {
          transcript: (t) => this.onTranscript(link, t),
          error: (err) => this.onError(err),
          closed: (err) => this.onClosed(link, err),
          expiring: (inMs) => this.onExpiring(link, inMs),
        },
      )
      .then(
        (conn) => {
          if (this.closed || this.link !== link) {
            // Superseded while connecting (session ended or rotated again).
            if (this.closed) conn.close();
            else this.retire(conn);
            return;
          }
          link.conn = conn;
          link.openedAt = this.ctx.timers.now();
          this.troubled = false;
          const preamble = this.o.preamble?.();
          if (preamble) conn.send(preamble, 0);
          this.replay(link);
          for (const q of this.queue) this.sendNow(link, q.audio, q.durationMs, q.arrival, true);
          this.queue.length = 0;
          this.queuedMs = 0;
          this.queueGone('connected');
          if (link.flushOnOpen) conn.flush();
        },
        (err: unknown) => {
          if (this.link === link) this.link = undefined;
          if (link.flushOnOpen) this.flushQueued = true;
          this.fail(err instanceof ProviderError ? err : new ProviderError(String(err), 'handshake'), false);
        },
      )
      .finally(() => {
        if (this.connecting === attempt) this.connecting = undefined;
      });
    this.connecting = attempt;
  }

  /** Move the current connection aside to finish its utterance; new audio opens a new one. */
  private rotate(): void {
    // The retiring connection's utterance includes what was gathered for it.
    this.sendBatch();
    const old = this.link;
    this.link = undefined;
    if (old) this.stopRotationTimer(old);
    if (old?.conn) this.retire(old.conn);
    // The retiring connection finishes its own utterance: nothing of it is the next one's to replay.
    this.reopenReason = 'rotation';
    this.unfinalised = [];
    this.unfinalisedMs = 0;
    this.ctx.log.info('rotating provider connection before its cap', { provider: this.o.provider.name });
  }

  private onExpiring(link: Link, inMs: number): void {
    if (this.link !== link || !link.conn || link.expiring) return;
    link.expiring = true;
    this.ctx.log.info('provider announced the end of its connection', { provider: this.o.provider.name, inMs });
    // Nothing sent since the last final: nothing can be cut, so move at once.
    if (link.utteranceStart === undefined) return this.rotate();
    const wait = Math.max(0, inMs - this.ctx.limits.finishTimeoutMs);
    link.rotateTimer = this.ctx.timers.setTimeout(() => {
      link.rotateTimer = undefined;
      if (this.link === link) this.rotate();
    }, wait);
  }

  private stopRotationTimer(link: Link): void {
    if (link.rotateTimer !== undefined) this.ctx.timers.clearTimeout(link.rotateTimer);
    link.rotateTimer = undefined;
  }

  private retire(conn: ProviderConnection): void {
    const done = conn
      .finish(this.ctx.limits.finishTimeoutMs)
      .catch(() => undefined)
      .finally(() => this.retiring.delete(done));
    this.retiring.add(done);
  }

  private onTranscript(link: Link, t: Transcript): void {
    link.healthy = true;
    this.failures = 0;
    this.troubled = false;
    const key = `${link.serial}:${t.itemId}`;
    let u = this.utterances.get(key);
    if (!u) {
      const startedAt =
        (t.audioStartMs !== undefined ? link.timeline.arrivalAt(t.audioStartMs) : undefined) ??
        link.utteranceStart ??
        this.ctx.timers.now();
      u = { messageId: this.ctx.newId(), startedAt };
      this.utterances.set(key, u);
      this.o.usage?.utterance();
    }
    if (t.kind === 'final') {
      this.o.usage?.final();
      this.utterances.delete(key);
      link.utteranceStart = undefined;
      if (this.link === link) this.finalised(link, t.audioEndMs);
    }
    this.ctx.metrics.transcripts.inc({ provider: this.o.provider.name, kind: t.kind });
    this.o.onResult({
      kind: t.kind,
      text: t.text,
      messageId: u.messageId,
      startedAt: u.startedAt,
      confidence: t.confidence,
      language: t.language,
      speaker: t.speaker,
    });
  }

  private onError(err: ProviderError): void {
    this.ctx.metrics.backendErrors.inc({ provider: this.o.provider.name, kind: err.kind });
    this.ctx.log.warn('provider reported an error', { provider: this.o.provider.name, kind: err.kind, error: err.message });
    this.trouble(err);
  }

  private trouble(err: ProviderError): void {
    if (this.troubled || this.closed) return;
    this.troubled = true;
    this.o.onTrouble(err);
  }

  private onClosed(link: Link, err: ProviderError): void {
    if (this.link !== link) return;
    this.link = undefined;
    // Never sent: it waits in the queue, first, for the next connection.
    this.sendBatch();
    if (link.expiring) {
      // The end it announced: not a failure, and the next audio opens a new connection at once.
      this.stopRotationTimer(link);
      this.reopenReason = 'expired';
      this.ctx.log.info('provider ended its connection as announced', { provider: this.o.provider.name });
      return;
    }
    const healthy = link.healthy || this.ctx.timers.now() - link.openedAt > HEALTHY_AFTER_MS;
    if (healthy) this.failures = 0;
    // Its utterances in flight will be heard again, under new message ids.
    for (const key of this.utterances.keys()) if (key.startsWith(`${link.serial}:`)) this.utterances.delete(key);
    this.fail(err, true);
  }

  private fail(err: ProviderError, afterOpen: boolean): void {
    this.failures++;
    this.reopenReason = err.kind;
    const wait = err.retryable ? backoffMs(this.failures, MIN_BACKOFF_MS, MAX_BACKOFF_MS) : MAX_BACKOFF_MS;
    this.retryAt = this.ctx.timers.now() + wait;
    // Audio queued (or to replay) may be all there is: it must not wait for more to arrive.
    if (this.pendingAudio() && this.retryTimer === undefined && !this.closed) {
      this.retryTimer = this.ctx.timers.setTimeout(() => this.retryNow(), wait);
    }
    this.ctx.metrics.backendErrors.inc({ provider: this.o.provider.name, kind: err.kind });
    this.ctx.log.warn(afterOpen ? 'provider connection lost' : 'provider connection failed', {
      provider: this.o.provider.name,
      kind: err.kind,
      error: err.message,
      retryInMs: wait,
      failures: this.failures,
    });
    this.trouble(err);
    if (this.o.onGiveUp && !this.finishing && !this.closed && (err.kind === 'auth' || this.failures >= FAILOVER_AFTER)) this.o.onGiveUp(err);
  }
}
