import { worthLogging, type Logger } from '../../log.ts';
import type { Metrics } from '../../metrics.ts';
import type { TranscriptionResult } from '../../protocol/outbound.ts';
import { backoffMs, withDeadline, type Timers } from '../../util/timers.ts';
import type { TranscriptSink } from '../../session/ports.ts';
import type { UsageReport } from '../../session/usage.ts';
import { toDispatcherMessage, toUsageMessage, type DispatcherMessage } from './message.ts';
import { BoundedQueue, outgoing, type Outgoing, type QueueLimits } from './queue.ts';
import type { DispatchTransport, HandBack } from './transport.ts';

export interface DispatcherSinkOptions {
  sessionId: string;
  limits: QueueLimits;
  /** At close, how long the queue gets to flush. */
  drainTimeoutMs: number;
  log: Logger;
  metrics: Metrics;
  timers: Timers;
  /** Builds the transport, which may hand finals back when their delivery became doubtful. */
  transport(handBack: HandBack): DispatchTransport;
  /** workerd's `ctx.waitUntil`: keeps the isolate alive for the drain after the client has gone. */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** Retry delays while the dispatcher is unreachable (defaults: 1 s doubling to 30 s, jittered). */
  backoff?: { minMs: number; maxMs: number };
}

type LossReason = 'queue_full' | 'drain_timeout' | 'closed';

/**
 * Fans a session's finals out to the dispatcher. `deliver` only enqueues: a slow or dead
 * dispatcher fills this sink's bounded queue, never the client's path. One pump sends the
 * queue in order through the transport and, when it fails, waits (backoff) and tries again.
 */
export class DispatcherSink implements TranscriptSink {
  readonly outlivesClient = true;
  private readonly queue: BoundedQueue;
  private readonly transport: DispatchTransport;
  private readonly log: Logger;
  private seq = 0;
  private pumping = false;
  private retryTimer: unknown;
  private attempt = 0;
  private closing: Promise<void> | undefined;
  private closed = false;
  private deadline = Number.POSITIVE_INFINITY;
  private onIdle: (() => void) | undefined;
  private lost = 0;

  constructor(private readonly o: DispatcherSinkOptions) {
    this.queue = new BoundedQueue(o.limits);
    this.log = o.log;
    this.transport = o.transport((items) => this.handBack(items));
  }

  deliver(result: TranscriptionResult): void {
    // The client path calls this: nothing thrown here may reach it.
    try {
      const message = toDispatcherMessage(result, this.o.sessionId);
      if (message) this.enqueue(message);
    } catch (error) {
      this.log.error('dispatcher sink failed to take a final', { error });
    }
  }

  /** Session end: the usage goes last, behind the session's finals, with the same delivery. */
  usage(report: UsageReport): void {
    try {
      this.enqueue(toUsageMessage(report, this.o.sessionId, this.o.timers.now()), true);
    } catch (error) {
      this.log.error('dispatcher sink failed to take the usage', { error });
    }
  }

  private enqueue(message: DispatcherMessage, exempt = false): void {
    const item = outgoing(++this.seq, message, exempt);
    if (this.closed) return this.lose([item], 'closed');
    this.lose(this.tracked(() => this.queue.push(item)), 'queue_full');
    this.kick();
  }

  close(): Promise<void> {
    this.closing ??= this.drain();
    this.o.waitUntil?.(this.closing);
    return this.closing;
  }

  private async drain(): Promise<void> {
    const { timers } = this.o;
    this.deadline = timers.now() + this.o.drainTimeoutMs;
    // The session is ending: try now rather than at the end of a backoff.
    this.cancelRetry();
    this.kick();
    const idle = new Promise<void>((resolve) => {
      this.onIdle = resolve;
      if (this.idle()) resolve();
    });
    await withDeadline(idle, this.deadline - timers.now(), timers);
    this.onIdle = undefined;
    this.closed = true;
    this.cancelRetry();
    const left = this.tracked(() => this.queue.clear());
    this.lose(left, 'drain_timeout');
    try {
      await this.transport.close(this.deadline);
    } catch (error) {
      this.log.warn('dispatcher transport failed to close', { error });
    }
  }

  private kick(): void {
    if (!this.pumping && this.retryTimer === undefined) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      for (;;) {
        const item = this.tracked(() => this.queue.shift());
        if (!item) break;
        try {
          await this.transport.send(item);
          this.attempt = 0;
        } catch (error) {
          this.handBack([item]);
          this.retryLater(error);
          break;
        }
      }
    } catch (error) {
      this.log.error('dispatcher pump failed', { error });
    } finally {
      this.pumping = false;
      if (this.idle()) this.onIdle?.();
    }
  }

  private retryLater(error: unknown): void {
    const { timers } = this.o;
    // Past the drain deadline nothing is retried: the drain is about to give up.
    if (this.closed || (this.closing && timers.now() >= this.deadline)) return;
    const delay = backoffMs(++this.attempt, this.o.backoff?.minMs ?? 1_000, this.o.backoff?.maxMs ?? 30_000);
    // While draining, the last try happens at the deadline at the latest.
    const wait = this.closing ? Math.max(0, Math.min(delay, this.deadline - timers.now())) : delay;
    this.log.debug('dispatcher unavailable; retrying', { attempt: this.attempt, inMs: wait, error, queued: this.queue.length });
    this.retryTimer = timers.setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, wait);
  }

  private cancelRetry(): void {
    if (this.retryTimer === undefined) return;
    this.o.timers.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private handBack(items: Outgoing[]): void {
    if (items.length === 0) return;
    if (this.closed) return this.lose(items, 'drain_timeout');
    this.lose(this.tracked(() => this.queue.restore(items)), 'queue_full');
    this.kick();
  }

  private idle(): boolean {
    return this.queue.length === 0 && !this.pumping;
  }

  /** Runs a queue operation, keeping the process-wide queue-depth gauge in step. */
  private tracked<T>(op: () => T): T {
    const before = this.queue.length;
    const result = op();
    this.o.metrics.state.dispatcherQueue += this.queue.length - before;
    return result;
  }

  /**
   * Counts and logs finals that will not reach the dispatcher. One written before (a resend
   * after a doubtful close) most likely arrived, so it is logged but not counted as lost.
   */
  private lose(items: readonly Outgoing[], reason: LossReason): void {
    for (const item of items) {
      if (item.sent) {
        this.log.info('dispatcher resend abandoned; the final was written once before', { messageId: item.message.messageId, reason });
        continue;
      }
      this.o.metrics.dispatcherDropped.inc({ reason });
      const n = ++this.lost;
      // An outage must show, not flood the log.
      if (worthLogging(n)) {
        this.log.warn('dispatcher final dropped', {
          reason,
          messageId: item.message.messageId,
          endpointId: 'endpointId' in item.message ? item.message.endpointId : undefined,
          droppedInSession: n,
          queueLimit: this.o.limits.maxCount,
          queueMaxBytes: this.o.limits.maxBytes,
        });
      }
    }
  }
}
