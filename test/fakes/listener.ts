/**
 * The socket side every fake server shares: an HTTP server on 127.0.0.1 that only upgrades
 * (each fake decides how, in its own `onUpgrade`), a free port, and a close that drops
 * every client; and FakeServer, the base of every fake, with what its tests call on it.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { Waiters } from '../helpers/waiters.ts';

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export class UpgradeListener {
  private constructor(
    private readonly server: Server,
    readonly wss: WebSocketServer,
  ) {}

  /** `subprotocol`: the one the fake agrees to when a client offers it (as the real service does). */
  static async listen(onUpgrade: UpgradeHandler, options: { subprotocol?: string } = {}): Promise<UpgradeListener> {
    const server = createServer((_req, res) => res.writeHead(426, { 'content-type': 'text/plain' }).end('WebSocket only'));
    const { subprotocol } = options;
    const wss = new WebSocketServer({
      noServer: true,
      handleProtocols: (offered) => (subprotocol !== undefined && offered.has(subprotocol) ? subprotocol : false),
    });
    server.on('upgrade', onUpgrade);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new UpgradeListener(server, wss);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * What every fake server offers its tests: waits on its recorded state, re-checked whenever
 * the fake records something (`notify`), and a close that drops every client.
 */
export abstract class FakeServer {
  private readonly waiters: Waiters;

  protected constructor(
    protected readonly listener: UpgradeListener,
    name: string,
    private readonly waitMs = 20_000,
  ) {
    this.waiters = new Waiters(name);
  }

  /** Resolves when `predicate` holds, checked after every event the fake records. */
  waitFor(predicate: () => boolean, what: string, timeoutMs = this.waitMs): Promise<void> {
    return this.waiters.waitFor(predicate, what, timeoutMs);
  }

  notify(): void {
    this.waiters.notify();
  }

  /** Hands `ws`'s frames (text as a string, binary as bytes) and its close to `conn`, re-checking the waits after each. */
  protected wire(ws: WebSocket, conn: { onText(text: string): void; onBinary(bytes: Uint8Array): void; onClosed(code: number, reason: string): void }): void {
    ws.on('message', (data, isBinary) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
      if (isBinary) conn.onBinary(new Uint8Array(buf));
      else conn.onText(buf.toString('utf8'));
      this.notify();
    });
    ws.on('close', (code, reason) => {
      conn.onClosed(code, reason.toString());
      this.notify();
    });
    this.notify();
  }

  async close(): Promise<void> {
    await this.listener.close();
  }
}
