import { worthLogging, type Logger } from '../log.ts';
import { errorMessage, pong, type DecodeErrorCode, type InfoMessage, type InputErrorCode } from '../protocol/outbound.ts';
import type { TranscribeParams } from '../protocol/query.ts';
import { createClientSink, sentToClient } from '../sinks/client.ts';
import type { ClientSocket, InfoBase, SessionContext, TranscriptSink } from './ports.ts';

/**
 * What every session engine does the same way for its client, whether it transcribes here
 * (Session) or relays to a transcriber elsewhere (the Worker's RelaySession): the opening
 * `info`, pongs, the sendBack filter, the session counters, and refused input counted and
 * answered without flooding the log or the client.
 */
export class SessionShell {
  readonly log: Logger;
  /** Results as far as the client's sendBack flags ask for them. */
  readonly clientSink: TranscriptSink;
  private readonly refusals = new Map<string, number>();
  private done = false;

  constructor(
    readonly params: TranscribeParams,
    private readonly client: ClientSocket,
    private readonly ctx: Pick<SessionContext, 'log' | 'metrics'>,
  ) {
    this.log = ctx.log.child({ session: params.sessionId ?? null });
    this.clientSink = createClientSink(client, params);
    ctx.metrics.sessionsTotal.inc();
    ctx.metrics.state.sessions++;
  }

  /** The first message on the socket. */
  info(base: InfoBase): void {
    const msg: InfoMessage = { event: 'info', ...base, provider: this.params.provider, sessionId: this.params.sessionId ?? null };
    this.client.send(JSON.stringify(msg));
  }

  pong(id: unknown): void {
    this.client.send(pong(id));
  }

  send(text: string): void {
    this.client.send(text);
  }

  /** Closes the client socket (a policy refusal, a transcriber gone). */
  close(code: number, reason: string): void {
    this.client.close(code, reason);
  }

  /**
   * Backpressure (docs/PROTOCOL.md §4.10): stop reading the client's frames (`false`), or
   * read them again, where its runtime can (ClientSocket.pause). A socket attached later is
   * read until the next call.
   */
  readFromClient(go: boolean): void {
    if (go) this.client?.resume?.();
    else this.client?.pause?.();
  }

  /** Whether a result goes back to the client (docs/PROTOCOL.md §5.3). */
  wants(isInterim: boolean): boolean {
    return sentToClient(this.params, isInterim);
  }

  /**
   * Counts refused input under `reason` (`transcriber_input_errors_total`, unless `count`
   * is false because another metric counts it) and returns which occurrence this is in the
   * session when it is worth reporting, else undefined.
   */
  countRefusal(reason: string, count = true): number | undefined {
    if (count) this.ctx.metrics.inputErrors.inc({ reason });
    const n = (this.refusals.get(reason) ?? 0) + 1;
    this.refusals.set(reason, n);
    return worthLogging(n) ? n : undefined;
  }

  /**
   * Counts, logs and answers refused input, throttled per reason (the first few, then every
   * power of ten) so a participant sending garbage at 50 frames a second floods neither the
   * log nor the client.
   */
  refuse(reason: InputErrorCode | DecodeErrorCode, detail: string, tag?: string, options: { count?: boolean; log?: boolean } = {}): void {
    const n = this.countRefusal(reason, options.count);
    if (n === undefined) return;
    if (options.log ?? true) this.log.warn('input refused', { reason, detail, tag, occurrences: n });
    this.client.send(errorMessage(reason, detail, { tag }));
  }

  /** The session is over: counted once, and logged with `fields`. */
  closed(fields: Record<string, unknown>): void {
    if (this.done) return;
    this.done = true;
    this.ctx.metrics.state.sessions--;
    this.log.info('session closed', fields);
  }
}
