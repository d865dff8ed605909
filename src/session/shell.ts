import { worthLogging, type Logger } from '../log.ts';
import { errorMessage, pong, type DecodeErrorCode, type InfoMessage, type InputErrorCode, type TranscriptionResult } from '../protocol/outbound.ts';
import type { TranscribeParams } from '../protocol/query.ts';
import { sentToClient } from '../sinks/client.ts';
import { systemTimers, type Timers } from '../util/timers.ts';
import type { ClientSocket, InfoBase, SessionContext, TranscriptSink } from './ports.ts';

/** Finals kept for a client that went away and may come back (docs/PROTOCOL.md §4.9); beyond, the oldest go. */
export const HELD_FINALS_LIMIT = 1_000;
/**
 * Finals sent this long before the proxy noticed its client's socket gone may have died in
 * the socket with it (sent, never received): a resumed session sends them again, with the
 * same `message_id`, for the client to drop the ones it has.
 */
export const RESEND_WINDOW_MS = 5_000;

/**
 * What every session engine does the same way for its client, whether it transcribes here
 * (Session) or relays to a transcriber elsewhere (the Worker's RelaySession): the opening
 * `info`, pongs, the sendBack filter, the session counters, and refused input counted and
 * answered without flooding the log or the client.
 *
 * The client socket may go away and another take its place (`detach`, `attach`: a session
 * resumed by a client that reconnects with its sessionId): meanwhile finals are held, in
 * order, for the next socket, and everything else for the client is dropped. The finals
 * sent in the last RESEND_WINDOW_MS before the drop was noticed go again first: a socket
 * that is gone without a close swallows what was written to it last.
 */
export class SessionShell {
  readonly log: Logger;
  /** Results as far as the client's sendBack flags ask for them; finals held while detached. */
  readonly clientSink: TranscriptSink;
  private readonly refusals = new Map<string, number>();
  private done = false;
  private current: TranscribeParams;
  private client: ClientSocket | undefined;
  private readonly held: TranscriptionResult[] = [];
  /** Finals sent to the client within RESEND_WINDOW_MS, oldest first. */
  private readonly recent: { at: number; result: TranscriptionResult }[] = [];
  private heldDropped = 0;
  private readonly timers: Timers;
  private sinkOpen = true;
  /** The proxy closed the client socket itself (a policy close, shutdown): not to be resumed. */
  private closedByServer = false;

  constructor(
    params: TranscribeParams,
    client: ClientSocket,
    private readonly ctx: Pick<SessionContext, 'log' | 'metrics'> & { timers?: Timers },
  ) {
    this.timers = ctx.timers ?? systemTimers;
    this.current = params;
    this.client = client;
    this.log = ctx.log.child({ session: params.sessionId ?? null });
    this.clientSink = {
      outlivesClient: false,
      deliver: (result) => this.deliver(result),
      close: async () => {
        this.sinkOpen = false;
        this.held.length = 0;
      },
    };
    ctx.metrics.sessionsTotal.inc();
    ctx.metrics.state.sessions++;
  }

  /** The query parameters of the client socket attached last. */
  get params(): TranscribeParams {
    return this.current;
  }

  /** Whether a client socket is attached. */
  get attached(): boolean {
    return this.client !== undefined;
  }

  /** Whether the client's socket went away by itself, rather than closed by the proxy. */
  get resumable(): boolean {
    return !this.closedByServer && !this.done;
  }

  /**
   * The client socket has gone: finals are held for the next one, the rest is dropped. Those
   * sent just before are held too, first: they may have gone down with the socket.
   */
  detach(): void {
    this.client = undefined;
    this.forgetBefore(this.timers.now() - RESEND_WINDOW_MS);
    const resend = this.recent.splice(0).map((r) => r.result);
    if (resend.length) {
      this.held.unshift(...resend);
      this.log.info('finals sent just before the drop will be sent again', { finals: resend.length, windowMs: RESEND_WINDOW_MS });
    }
  }

  /** A new socket for this session; its own flags apply from now on. `info` sends what was held. */
  attach(params: TranscribeParams, client: ClientSocket): void {
    this.current = params;
    this.client = client;
  }

  /** The first message on the socket; finals held while no socket was attached follow it, in order. */
  info(base: InfoBase): void {
    const msg: InfoMessage = { event: 'info', ...base, provider: this.params.provider, sessionId: this.params.sessionId ?? null };
    this.client?.send(JSON.stringify(msg));
    const held = this.held.splice(0);
    if (this.heldDropped) {
      this.log.warn('finals held for the client dropped', { dropped: this.heldDropped, limit: HELD_FINALS_LIMIT });
      this.heldDropped = 0;
    }
    for (const result of held) this.deliver(result);
  }

  pong(id: unknown): void {
    const answer = pong(id);
    if (answer === undefined) return this.refuse('invalid_ping', 'ping: its id is nested too deeply to echo');
    this.client?.send(answer);
  }

  send(text: string): void {
    this.client?.send(text);
  }

  /** Closes the client socket (a policy refusal, a transcriber gone, shutdown); the session will not be resumed. */
  close(code: number, reason: string): void {
    this.closedByServer = true;
    this.client?.close(code, reason);
  }

  private deliver(result: TranscriptionResult): void {
    if (!this.sinkOpen) return;
    if (this.client) {
      if (!sentToClient(this.current, result.is_interim)) return;
      this.client.send(JSON.stringify(result));
      if (!result.is_interim) {
        const now = this.timers.now();
        this.forgetBefore(now - RESEND_WINDOW_MS);
        this.recent.push({ at: now, result });
      }
      return;
    }
    // Detached: what the next socket may want, decided by its flags when it comes.
    if (result.is_interim) return;
    this.held.push(result);
    if (this.held.length > HELD_FINALS_LIMIT) {
      this.held.shift();
      this.heldDropped++;
    }
  }

  private forgetBefore(cutoff: number): void {
    while (this.recent.length && (this.recent[0]!.at < cutoff || this.recent.length > HELD_FINALS_LIMIT)) this.recent.shift();
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
    this.client?.send(errorMessage(reason, detail, { tag }));
  }

  /** The session is over: counted once, and logged with `fields`. */
  closed(fields: Record<string, unknown>): void {
    if (this.done) return;
    this.done = true;
    this.ctx.metrics.state.sessions--;
    this.log.info('session closed', fields);
  }
}
