import type { Logger } from '../../log.ts';
import type { OutboundSocket, SocketHandlers } from '../../net.ts';
import { errorMessage, type TranscriptionResult } from '../../protocol/outbound.ts';
import type { TranscribeParams } from '../../protocol/query.ts';
import type { InfoBase, SessionContext, SessionHandle, TranscriptSink } from '../../session/ports.ts';
import type { SessionShell } from '../../session/shell.ts';
import { sentToClient } from '../../sinks/client.ts';
import { withDeadline } from '../../util/timers.ts';

/**
 * Close codes for the client when its transcriber goes away. Both ask the media server to
 * reconnect, which lands on the same transcriber instance (it is chosen by sessionId):
 * 1012 (Service Restart) when an established link dies (the container restarted, slept or
 * was replaced), 1013 (Try Again Later) when no transcriber could be reached at all. Not
 * 1011 (docs/PROTOCOL.md §6): that code means a failure the session cannot survive, and this one it can.
 */
const LINK_LOST = 1012;
const UNAVAILABLE = 1013;

export interface RelayOptions {
  /** Opens the socket to this session's transcriber (handlers are attached before it opens). */
  connect(handlers: SocketHandlers): Promise<OutboundSocket>;
  /**
   * Renews the transcriber host's idle timer while the session lives: a container's
   * activity timer does not count socket traffic.
   */
  keepAlive?: { everyMs: number; renew(): Promise<void> };
  /** Client frames held while the transcriber starts; beyond this many bytes, media frames are dropped (counted). */
  backlogBytes: number;
  /** After the client has gone, how long finals still wanted by a sink (the dispatcher) may take. */
  drainMs: number;
  /** Keeps the runtime alive for that drain (workerd's waitUntil). */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** The session is over on this side (the router frees its place). */
  finished?: () => Promise<void>;
}

/**
 * The query the transcriber gets for one client session: every result the client or a sink
 * may want (finals always, interims when the client takes them), and no dispatcher of its
 * own, since the relay dispatches.
 */
export function transcriberQuery(params: TranscribeParams): URLSearchParams {
  const query = new URLSearchParams();
  if (params.sessionId !== undefined) query.set('sessionId', params.sessionId);
  query.set('sendBack', 'true');
  if (sentToClient(params, true)) query.set('sendBackInterim', 'true');
  query.set('useDispatcher', 'false');
  query.set('provider', params.provider);
  query.set('encoding', params.encoding);
  if (params.lang !== undefined) query.set('lang', params.lang);
  return query;
}

// The first "tag" of a frame is its stream's (start.tag, media.tag, stop.tag): enough to
// stop every stream at the end without parsing each media frame.
const TAG = /"tag"\s*:\s*"([^"\\]{1,256})"/;
const CONTROL = /"event"\s*:\s*"(?:start|stop)"/;
const MAX_TRACKED_TAGS = 10_000;

type Frame = string | Uint8Array;

/**
 * A session whose transcription runs elsewhere (the container behind the Cloudflare
 * Worker): client frames go to the transcriber unchanged, and what it sends comes back
 * unchanged, filtered by the client's sendBack flags, with finals also handed to the sinks.
 * Pings are answered here, so a cold start does not look like a dead socket.
 */
export class RelaySession implements SessionHandle {
  private upstream: OutboundSocket | undefined;
  private backlog: Frame[] = [];
  private backlogSize = 0;
  private readonly tags = new Set<string>();
  private readonly drainWanted: boolean;
  private readonly linked: Promise<void>;
  private keepAliveTimer: unknown;
  private clientGone = false;
  private closing: Promise<void> | undefined;
  private onUpstreamClosed: (() => void) | undefined;
  private readonly log: Logger;

  constructor(
    private readonly shell: SessionShell,
    private readonly sinks: readonly TranscriptSink[],
    private readonly ctx: Pick<SessionContext, 'metrics' | 'timers'>,
    private readonly o: RelayOptions,
  ) {
    this.log = shell.log;
    this.drainWanted = sinks.some((s) => s.outlivesClient);
    this.linked = this.link();
  }

  info(base: InfoBase): void {
    this.shell.info(base);
  }

  handle(data: string | ArrayBuffer | Uint8Array): void {
    if (this.clientGone) return;
    let frame: Frame;
    if (typeof data === 'string') {
      if (data.includes('"ping"') && this.answerPing(data)) return;
      if (this.drainWanted) this.noteTag(data);
      frame = data;
    } else {
      frame = data instanceof Uint8Array ? data : new Uint8Array(data);
    }
    if (this.upstream) this.upstream.send(frame);
    else this.hold(frame);
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closing = this.finish();
      this.o.waitUntil?.(this.closing);
    }
    return this.closing;
  }

  private async link(): Promise<void> {
    let socket: OutboundSocket;
    try {
      socket = await this.o.connect({
        message: (data) => this.fromUpstream(data),
        close: (code, reason) => this.upstreamClosed(code, reason),
      });
    } catch (error) {
      this.ctx.metrics.relayErrors.inc({ reason: 'unavailable' });
      this.log.warn('transcriber unavailable', { error });
      this.backlog = [];
      // The close reason is all some clients show; the event says it where messages are read.
      if (!this.clientGone) this.shell.send(errorMessage('transcriber_unavailable', 'no transcriber could be reached; reconnect later'));
      this.end(UNAVAILABLE, 'transcription container unavailable; try again later');
      return;
    }
    if (this.clientGone && !this.drainWanted) {
      socket.close(1000, 'client closed');
      return;
    }
    this.upstream = socket;
    for (const frame of this.backlog) socket.send(frame);
    this.backlog = [];
    this.backlogSize = 0;
    this.log.info('transcriber linked');
    const keepAlive = this.o.keepAlive;
    if (keepAlive) {
      this.keepAliveTimer = this.ctx.timers.setInterval(() => {
        keepAlive.renew().catch((error: unknown) => this.log.warn('transcriber keep-alive failed', { error }));
      }, keepAlive.everyMs);
    }
  }

  private fromUpstream(data: string | Uint8Array): void {
    // The transcriber speaks JSON text only.
    if (typeof data !== 'string') return;
    let msg: { event?: unknown; is_interim?: unknown };
    try {
      msg = JSON.parse(data) as typeof msg;
    } catch {
      this.log.warn('transcriber sent a frame that is not JSON', { bytes: data.length });
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    switch (msg.event) {
      case 'info':
        // The client had ours (this runtime, at once); the transcriber's is for the log.
        this.log.debug('transcriber info', { info: data.slice(0, 512) });
        return;
      case 'transcription-result':
        if (!this.clientGone && this.shell.wants(msg.is_interim === true)) this.shell.send(data);
        // The transcriber is our own server: its results have the docs/PROTOCOL.md §5.3 shape.
        for (const sink of this.sinks) sink.deliver(msg as TranscriptionResult);
        return;
      default:
        if (!this.clientGone) this.shell.send(data);
    }
  }

  private upstreamClosed(code: number, reason: string): void {
    this.upstream = undefined;
    this.stopKeepAlive();
    if (this.clientGone) {
      this.onUpstreamClosed?.();
      return;
    }
    this.ctx.metrics.relayErrors.inc({ reason: 'lost' });
    this.log.warn('transcriber link closed', { code, reason });
    // A policy refusal (limits, auth) is the client's to see; reconnecting would not help.
    if (code === 1008) this.end(1008, reason);
    else this.end(LINK_LOST, 'transcription container restarted; reconnect');
  }

  /** Ends the session from this side: the client is told why, and the sinks drain. */
  private end(code: number, reason: string): void {
    if (this.clientGone) return;
    try {
      this.shell.close(code, clipReason(reason));
    } catch (error) {
      this.log.debug('client socket already closed', { error });
    }
    void this.close();
  }

  private async finish(): Promise<void> {
    this.clientGone = true;
    if (this.drainWanted) await this.drain();
    else this.upstream?.close(1000, 'client closed');
    this.stopKeepAlive();
    this.backlog = [];
    await Promise.all([...this.sinks.map((s) => s.close()), this.o.finished?.()]);
    this.shell.closed({ tags: this.tags.size });
  }

  /**
   * The client has gone but a sink still wants finals: stop every stream (the transcriber
   * finalises what it heard) and keep the link open while those finals arrive.
   */
  private async drain(): Promise<void> {
    await this.linked;
    const upstream = this.upstream;
    if (!upstream) return;
    for (const tag of this.tags) upstream.send(JSON.stringify({ event: 'stop', stop: { tag } }));
    await withDeadline(new Promise<void>((resolve) => (this.onUpstreamClosed = resolve)), this.o.drainMs, this.ctx.timers);
    this.onUpstreamClosed = undefined;
    this.upstream?.close(1000, 'client closed');
  }

  private answerPing(data: string): boolean {
    let msg: { event?: unknown; id?: unknown };
    try {
      msg = JSON.parse(data) as typeof msg;
    } catch {
      return false;
    }
    if (msg?.event !== 'ping') return false;
    this.shell.pong(msg.id);
    return true;
  }

  private noteTag(data: string): void {
    if (this.tags.size >= MAX_TRACKED_TAGS) return;
    const tag = TAG.exec(data)?.[1];
    if (tag !== undefined) this.tags.add(tag);
  }

  /** Holds a frame until the transcriber is reached; start and stop are always kept. */
  private hold(frame: Frame): void {
    const size = typeof frame === 'string' ? frame.length : frame.byteLength;
    if (this.backlogSize + size > this.o.backlogBytes && !(typeof frame === 'string' && CONTROL.test(frame))) {
      const n = this.shell.countRefusal('relay_backlog_full');
      if (n !== undefined) this.log.warn('frame dropped while the transcriber starts', { backlogBytes: this.o.backlogBytes, dropped: n });
      return;
    }
    this.backlog.push(frame);
    this.backlogSize += size;
  }

  private stopKeepAlive(): void {
    if (this.keepAliveTimer === undefined) return;
    this.ctx.timers.clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
  }
}

/** A close reason is at most 123 bytes (RFC 6455 §5.5). */
function clipReason(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.length <= 123) return reason;
  return new TextDecoder().decode(bytes.slice(0, 120)).replace(/\uFFFD$/, '') + '…';
}
