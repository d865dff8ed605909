import {
  ProviderError,
  type AudioFormat,
  type Provider,
  type ProviderConnection,
  type Transcript,
} from '../providers/provider.ts';
import { backoffMs, withDeadline } from '../util/timers.ts';
import { SessionBacklog, type HeldAudio } from './backlog.ts';
import type { SessionContext } from './ports.ts';
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
}

interface Queued {
  audio: Uint8Array;
  durationMs: number;
  arrival: number;
}

/** Reconnect backoff bounds, and how long a connection must live to count as healthy. */
const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
const HEALTHY_AFTER_MS = 10_000;
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
  /** Trouble has been reported and the stream has not recovered since. */
  private troubled = false;
  private readonly retiring = new Set<Promise<void>>();
  private readonly utterances = new Map<string, { messageId: string; startedAt: number }>();

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
  }

  push(audio: Uint8Array, durationMs: number, arrival: number): void {
    if (this.closed) return;
    const link = this.link;
    if (link?.conn) {
      if (this.dueForRotation(link, arrival)) {
        this.rotate();
      } else {
        this.sendNow(link, audio, durationMs, arrival);
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

  /** Before the provider's cap, or at the first utterance boundary once it announced the end. */
  private dueForRotation(link: Link, arrival: number): boolean {
    if (link.expiring && link.utteranceStart === undefined) return true;
    const max = this.o.provider.maxConnectionMs;
    return !!max && arrival - link.openedAt > max - ROTATE_MARGIN_MS;
  }

  private retryNow(): void {
    this.retryTimer = undefined;
    if (!this.closed && !this.link && this.queue.length > 0) this.open();
  }

  /** End of utterance (idle timeout or stop). */
  flush(): void {
    const link = this.link;
    if (link?.conn) link.conn.flush();
    else if (link) link.flushOnOpen = true;
    // Backing off: the queued utterance still needs its end once a connection opens.
    else if (this.queue.length) this.flushQueued = true;
  }

  /** Finalise what is in flight (bounded by `timeoutMs`), then close everything. */
  async finish(timeoutMs: number): Promise<void> {
    if (this.closed) return;
    const deadline = this.ctx.timers.now() + timeoutMs;
    if (this.connecting) await withDeadline(this.connecting.catch(() => undefined), timeoutMs, this.ctx.timers);
    this.closed = true;
    const link = this.link;
    this.link = undefined;
    if (link) this.stopRotationTimer(link);
    const left = Math.max(0, deadline - this.ctx.timers.now());
    const waits = [...this.retiring];
    if (link?.conn) waits.push(link.conn.finish(left).catch(() => undefined));
    await withDeadline(Promise.all(waits).catch(() => undefined), left, this.ctx.timers);
    this.drop();
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
  }

  private sendNow(link: Link, audio: Uint8Array, durationMs: number, arrival: number): void {
    link.utteranceStart ??= arrival;
    link.timeline.record(durationMs, arrival);
    link.conn!.send(audio, durationMs);
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
    if (serial > 1) this.ctx.metrics.reconnects.inc({ provider: this.o.provider.name });
    const link: Link = {
      serial,
      openedAt: this.ctx.timers.now(),
      timeline: new Timeline(),
      healthy: false,
      flushOnOpen: this.flushQueued,
      expiring: false,
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
          for (const q of this.queue) this.sendNow(link, q.audio, q.durationMs, q.arrival);
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
    const old = this.link;
    this.link = undefined;
    if (old) this.stopRotationTimer(old);
    if (old?.conn) this.retire(old.conn);
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
    }
    if (t.kind === 'final') {
      this.utterances.delete(key);
      link.utteranceStart = undefined;
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
    if (link.expiring) {
      // The end it announced: not a failure, and the next audio opens a new connection at once.
      this.stopRotationTimer(link);
      this.ctx.log.info('provider ended its connection as announced', { provider: this.o.provider.name });
      return;
    }
    const healthy = link.healthy || this.ctx.timers.now() - link.openedAt > HEALTHY_AFTER_MS;
    if (healthy) this.failures = 0;
    this.fail(err, true);
  }

  private fail(err: ProviderError, afterOpen: boolean): void {
    this.failures++;
    const wait = err.retryable ? backoffMs(this.failures, MIN_BACKOFF_MS, MAX_BACKOFF_MS) : MAX_BACKOFF_MS;
    this.retryAt = this.ctx.timers.now() + wait;
    // Audio queued while this attempt failed may be all there is: it must not wait for more.
    if (this.queue.length && this.retryTimer === undefined && !this.closed) {
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
  }
}
