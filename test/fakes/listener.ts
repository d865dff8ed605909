/**
 * The socket side every fake server shares: an HTTP server on 127.0.0.1 that only upgrades
 * (each fake decides how, in its own `onUpgrade`), a free port, and a close that drops
 * every client.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';

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
