import type { Logger } from '../../log.ts';
import type { Metrics } from '../../metrics.ts';
import type { OutboundSocket, SocketConnector } from '../../net.ts';
import { sleep, withDeadline, type Timers } from '../../util/timers.ts';
import type { DispatcherConfig } from '../../config.ts';
import type { SinkFactory } from '../../session/ports.ts';
import type { Outgoing } from './queue.ts';
import { safeUrl, secretRedactor } from '../../util/redact.ts';
import { DispatcherSink } from './sink.ts';
import type { DispatchTransport, HandBack } from './transport.ts';

export interface WebSocketTransportOptions {
  /** Names the transport in metrics. */
  name: string;
  url: string;
  headers: Record<string, string>;
  connector: SocketConnector;
  connectTimeoutMs: number;
  /** A connection older than this is replaced by a fresh one (0: never). */
  recycleMs: number;
  /** The log line operators search for when a connection opens. */
  connectedLine: string;
  log: Logger;
  metrics: Metrics;
  timers: Timers;
  handBack: HandBack;
  /**
   * Finals written within this long before a connection died unexpectedly are sent again:
   * WebSocket has no acknowledgements, so they may sit unread in a buffer that died with it.
   */
  settleMs?: number;
  /** How long a retiring connection gets to finish its close handshake. */
  closeTimeoutMs?: number;
}

interface Connection {
  readonly id: number;
  socket: OutboundSocket | undefined;
  /** Written, not yet known to have arrived. */
  unconfirmed: { item: Outgoing; at: number }[];
  retiring: boolean;
  closed: { code: number; reason: string } | undefined;
  onClosed: (() => void) | undefined;
  recycleTimer: unknown;
}

/** Bytes a connection may hold unsent before writes wait: beyond it the bounded queue holds them. */
const HIGH_WATER = 256 * 1024;
const CONGESTION_POLL_MS = 25;

/**
 * One WebSocket per session to the dispatcher, through the runtime's SocketConnector.
 * Sends are serialised, so finals leave in order; a long-lived connection is recycled by
 * opening the new one before closing the old, and the old one's finals count as delivered
 * only when its close handshake completes (the peer read everything before it).
 */
export class WebSocketTransport implements DispatchTransport {
  readonly name: string;
  private current: Connection | undefined;
  private connections = 0;
  private lock: Promise<unknown> = Promise.resolve();
  private closing = false;
  private readonly redact: (text: string) => string;
  private readonly logUrl: string;

  constructor(private readonly o: WebSocketTransportOptions) {
    this.name = o.name;
    this.redact = secretRedactor(Object.values(o.headers));
    this.logUrl = this.redact(safeUrl(o.url));
  }

  send(item: Outgoing): Promise<void> {
    return this.exclusive(async () => {
      const conn = this.current ?? (await this.open());
      while (conn.socket!.bufferedAmount > HIGH_WATER && !conn.closed) await sleep(this.o.timers, CONGESTION_POLL_MS);
      if (conn.closed || this.current !== conn) throw new Error('dispatcher connection lost');
      this.write(conn, item);
    });
  }

  async close(deadline: number): Promise<void> {
    this.closing = true;
    const { timers } = this.o;
    // A send stuck in a handshake must not hold the session's end past the deadline.
    await withDeadline(this.lock, deadline - timers.now(), timers);
    const conn = this.current;
    this.current = undefined;
    if (conn && !conn.closed) await this.retire(conn, Math.max(deadline, timers.now() + (this.o.closeTimeoutMs ?? 1_000)));
  }

  private write(conn: Connection, item: Outgoing): void {
    conn.socket!.send(item.json);
    item.sent = true;
    const now = this.o.timers.now();
    conn.unconfirmed.push({ item, at: now });
    const settled = now - (this.o.settleMs ?? 5_000);
    while (conn.unconfirmed.length > 0 && conn.unconfirmed[0]!.at < settled) conn.unconfirmed.shift();
    this.o.metrics.dispatcherDelivered.inc({ transport: this.name });
  }

  private async open(): Promise<Connection> {
    const conn: Connection = {
      id: ++this.connections,
      socket: undefined,
      unconfirmed: [],
      retiring: false,
      closed: undefined,
      onClosed: undefined,
      recycleTimer: undefined,
    };
    try {
      conn.socket = await this.o.connector.connect(
        this.o.url,
        { headers: this.o.headers, timeoutMs: this.o.connectTimeoutMs },
        {
          // The dispatcher has nothing to say on this socket; anything it sends is ignored.
          message: () => {},
          close: (code, reason) => this.onClose(conn, code, reason),
        },
      );
    } catch (error) {
      this.o.metrics.dispatcherErrors.inc({ transport: this.name });
      const message = this.redact(error instanceof Error ? error.message : String(error));
      this.o.log.warn('Dispatcher connection failed', { url: this.logUrl, error: message });
      throw new Error(`dispatcher connection failed: ${message}`);
    }
    if (this.closing) {
      conn.socket.close(1000, 'session ended');
      throw new Error('dispatcher transport closed');
    }
    this.current = conn;
    this.o.log.info(this.o.connectedLine, { url: this.logUrl, connection: conn.id });
    this.scheduleRecycle(conn, this.o.recycleMs);
    return conn;
  }

  private onClose(conn: Connection, code: number, reason: string): void {
    conn.closed = { code, reason };
    this.o.timers.clearTimeout(conn.recycleTimer);
    if (conn.retiring) return conn.onClosed?.();
    this.o.log.info('Dispatcher connection closed', { code, reason: this.redact(reason), connection: conn.id });
    this.o.metrics.dispatcherErrors.inc({ transport: this.name });
    if (this.current === conn) this.current = undefined;
    this.handBackUnconfirmed(conn);
  }

  private scheduleRecycle(conn: Connection, ms: number): void {
    if (ms <= 0) return;
    conn.recycleTimer = this.o.timers.setTimeout(() => {
      void this.exclusive(() => this.recycle(conn)).catch((error: unknown) => {
        this.o.log.warn('dispatcher connection recycle failed', { error });
      });
    }, ms);
  }

  /** Replaces a long-lived connection: the new one opens before the old one closes. */
  private async recycle(old: Connection): Promise<void> {
    if (this.current !== old || old.closed || this.closing) return;
    let fresh: Connection;
    try {
      fresh = await this.open();
    } catch {
      // Keep the working connection and try again later.
      this.scheduleRecycle(old, Math.min(this.o.recycleMs, 30_000));
      return;
    }
    const doubtful = await this.retire(old, this.o.timers.now() + (this.o.closeTimeoutMs ?? 5_000), false);
    // Written before anything still waiting for the lock, so resent first: order holds.
    for (const item of doubtful) {
      if (fresh.closed) {
        this.o.handBack([item]);
        continue;
      }
      this.write(fresh, item);
    }
  }

  /**
   * Closes `conn` with 1000 and waits for the handshake until `deadline`. A completed
   * handshake confirms everything written before it; otherwise the unconfirmed finals are
   * handed back (or, with `handBack` false, returned for the caller to resend).
   */
  private async retire(conn: Connection, deadline: number, handBack = true): Promise<Outgoing[]> {
    const { timers } = this.o;
    conn.retiring = true;
    timers.clearTimeout(conn.recycleTimer);
    if (!conn.closed) {
      const closed = new Promise<void>((resolve) => (conn.onClosed = resolve));
      let closing = true;
      try {
        conn.socket!.close(1000, 'session ended');
      } catch {
        closing = false;
      }
      if (closing) await withDeadline(closed, deadline - timers.now(), timers);
      conn.onClosed = undefined;
    }
    const clean = conn.closed?.code === 1000;
    this.o.log.info('Dispatcher connection closed', {
      code: conn.closed?.code ?? null,
      connection: conn.id,
      ...(clean ? {} : { unconfirmed: conn.unconfirmed.length }),
    });
    if (clean) {
      conn.unconfirmed = [];
      return [];
    }
    if (handBack) {
      this.handBackUnconfirmed(conn);
      return [];
    }
    const doubtful = conn.unconfirmed.map((u) => u.item);
    conn.unconfirmed = [];
    return doubtful;
  }

  private handBackUnconfirmed(conn: Connection): void {
    const doubtful = conn.unconfirmed.filter((u) => u.at >= this.o.timers.now() - (this.o.settleMs ?? 5_000)).map((u) => u.item);
    conn.unconfirmed = [];
    if (doubtful.length === 0) return;
    this.o.log.info('resending finals written just before the connection closed', { count: doubtful.length, connection: conn.id });
    this.o.handBack(doubtful);
  }

  private exclusive<T>(op: () => Promise<T>): Promise<T> {
    const run = this.lock.then(op, op);
    this.lock = run.catch(() => undefined);
    return run;
  }
}

/** The dispatcher URL for one session: `sessionId` added to whatever query the URL has. */
export function sessionUrl(base: string, sessionId: string): string {
  const url = new URL(base);
  url.searchParams.set('sessionId', sessionId);
  return url.toString();
}

export interface WebSocketDispatcherDeps {
  config: DispatcherConfig;
  connector: SocketConnector;
  log: Logger;
  metrics: Metrics;
  timers: Timers;
}

/**
 * The Node and Deno dispatcher: for each session that wants it, a sink sending its finals
 * over one WebSocket to DISPATCHER_WS_URL. For `AppDeps.sinks`.
 */
export function webSocketDispatcherSinks(deps: WebSocketDispatcherDeps): SinkFactory {
  const { config, log } = deps;
  return (session) => {
    if (!session.useDispatcher) return [];
    const wsUrl = config.wsUrl;
    if (wsUrl === undefined) {
      log.warn('dispatcher requested but DISPATCHER_WS_URL is not set; finals are not dispatched', { session: session.sessionId ?? null });
      return [];
    }
    if (session.sessionId === undefined) {
      log.warn('dispatcher requested without a sessionId; finals are not dispatched');
      return [];
    }
    const sessionLog = log.child({ session: session.sessionId });
    return [
      new DispatcherSink({
        sessionId: session.sessionId,
        limits: { maxCount: config.queueLimit, maxBytes: config.queueMaxBytes },
        drainTimeoutMs: config.drainTimeoutMs,
        log: sessionLog,
        metrics: deps.metrics,
        timers: deps.timers,
        transport: (handBack) =>
          new WebSocketTransport({
            name: 'websocket',
            url: sessionUrl(wsUrl, session.sessionId!),
            headers: config.headers,
            connector: deps.connector,
            connectTimeoutMs: config.connectTimeoutMs,
            recycleMs: config.reconnectIntervalMs,
            connectedLine: 'Connected to Dispatcher via WebSocket',
            log: sessionLog,
            metrics: deps.metrics,
            timers: deps.timers,
            handBack,
          }),
      }),
    ];
  };
}
