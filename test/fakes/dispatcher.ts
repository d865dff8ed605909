/**
 * A fake transcript dispatcher: a WebSocket server on 127.0.0.1 that records every message
 * with the connection it came on, and each connection's handshake URL and headers.
 *
 * Faults: refuse upgrades with HTTP 503 (for a window of time, or until told otherwise; the
 * body may be chosen), leave upgrades unanswered, drop live connections (TCP torn down, as
 * when the dispatcher's host dies), and close them with a given code and reason.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { FakeServer, UpgradeListener } from './listener.ts';

export interface DispatchedMessage {
  sessionId: string;
  endpointId: string;
  text: string;
  timestamp: number;
  language?: string;
  messageId: string;
}

/** The session's usage, sent once at its end (docs/PROTOCOL.md §7.1). */
export interface DispatchedUsage {
  type: 'usage';
  sessionId: string;
  timestamp: number;
  messageId: string;
  participants: { endpointId: string; tag: string; provider: string; receivedSeconds: number; sentSeconds: number; utterances: number; finals: number; reconnects: number }[];
  totals: Record<string, { receivedSeconds: number; sentSeconds: number; utterances: number; finals: number; reconnects: number }>;
}

export interface DispatcherConnection {
  readonly id: number;
  /** The request target of the handshake, e.g. `/ingest?region=eu&sessionId=s1`. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly messages: DispatchedMessage[];
  closedWith: { code: number; by: 'client' | 'server' } | undefined;
}

export class FakeDispatcher extends FakeServer {
  readonly connections: DispatcherConnection[] = [];
  /** Every message received, in arrival order, with the connection it came on. */
  readonly received: { connection: number; message: DispatchedMessage }[] = [];
  /** Upgrades answered with 503. */
  refusals = 0;
  /** The body of those 503s (a service may echo what it was sent, credentials included). */
  refusalBody: (req: IncomingMessage) => string = () => 'dispatcher unavailable';
  /** While true, upgrades are never answered (a host that accepts TCP and hangs); counted in `held`. */
  holdUpgrades = false;
  held = 0;
  private readonly heldSockets = new Set<Duplex>();
  private refusing = false;
  private refusingUntil = 0;
  private readonly sockets = new Map<number, WebSocket>();

  private constructor(listener: UpgradeListener) {
    super(listener, 'fake dispatcher', 30_000);
  }

  static async start(): Promise<FakeDispatcher> {
    // The handler runs only once a client connects, after `fake` is assigned.
    let fake: FakeDispatcher | undefined;
    const listener = await UpgradeListener.listen((req, socket, head) => fake!.onUpgrade(req, socket, head));
    fake = new FakeDispatcher(listener);
    return fake;
  }

  /** The value for DISPATCHER_WS_URL (with `path`, which may carry a query). */
  url(path = '/ingest'): string {
    return `ws://127.0.0.1:${this.listener.port}${path}`;
  }

  /** The finals received, in arrival order. */
  messages(): DispatchedMessage[] {
    return this.received.map((r) => r.message).filter((m) => !('type' in m));
  }

  /** The usage messages received (one per session, at its end). */
  usages(): DispatchedUsage[] {
    return this.received.map((r) => r.message as unknown as DispatchedUsage | DispatchedMessage).filter((m): m is DispatchedUsage => 'type' in m && m.type === 'usage');
  }

  /** Refuses upgrades with 503 from now on, until `accept()`. */
  refuse(): void {
    this.refusing = true;
  }

  accept(): void {
    this.refusing = false;
    this.refusingUntil = 0;
  }

  /** Refuses upgrades with 503 for `ms` from now. */
  refuseFor(ms: number): void {
    this.refusingUntil = Date.now() + ms;
  }

  /** Tears down every live connection without a close handshake. */
  dropConnections(): void {
    for (const [id, ws] of this.sockets) {
      const conn = this.connections[id - 1]!;
      conn.closedWith ??= { code: 1006, by: 'server' };
      ws.terminate();
    }
    this.sockets.clear();
    this.notify();
  }

  /** Closes every live connection with a close handshake carrying `code` and `reason`. */
  closeConnections(code: number, reason: string): void {
    for (const [id, ws] of this.sockets) {
      this.connections[id - 1]!.closedWith ??= { code, by: 'server' };
      ws.close(code, reason);
    }
    this.notify();
  }

  override async close(): Promise<void> {
    for (const socket of this.heldSockets) socket.destroy();
    await super.close();
  }

  /** The dispatcher goes down for `ms`: live connections dropped, new ones refused. */
  outage(ms: number): void {
    this.refuseFor(ms);
    this.dropConnections();
  }

  get down(): boolean {
    return this.refusing || Date.now() < this.refusingUntil;
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.holdUpgrades) {
      this.held++;
      this.heldSockets.add(socket);
      socket.on('close', () => this.heldSockets.delete(socket));
      this.notify();
      return;
    }
    if (this.down) {
      this.refusals++;
      const body = this.refusalBody(req);
      socket.end(`HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      this.notify();
      return;
    }
    this.listener.wss.handleUpgrade(req, socket, head, (ws) => {
      const conn: DispatcherConnection = { id: this.connections.length + 1, url: req.url ?? '', headers: req.headers, messages: [], closedWith: undefined };
      this.connections.push(conn);
      this.sockets.set(conn.id, ws);
      ws.on('message', (data) => {
        const message = JSON.parse(data.toString()) as DispatchedMessage;
        conn.messages.push(message);
        this.received.push({ connection: conn.id, message });
        this.notify();
      });
      ws.on('close', (code) => {
        conn.closedWith ??= { code, by: 'client' };
        this.sockets.delete(conn.id);
        this.notify();
      });
      this.notify();
    });
  }
}
