/**
 * A recording pass-through in front of the Node server, standing where the container's port
 * would be: it forwards HTTP requests and WebSocket frames both ways untouched and keeps a
 * copy of every frame, so tests can compare what the container got and sent with what the
 * client sent and got. Its target can be switched (a restarted server on another port).
 */
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';

export interface TappedSession {
  /** The path and query the Worker asked the container for. */
  url: string;
  /** The container instance it came through (its x-transcriber-instance header). */
  instance: string | undefined;
  /** Frames the container received, as sent. */
  toContainer: string[];
  /** Frames the container sent, as sent. */
  fromContainer: string[];
  closed?: { by: 'container' | 'worker'; code: number };
}

export class Tap {
  readonly sessions: TappedSession[] = [];
  private readonly wss = new WebSocketServer({ noServer: true });

  private constructor(
    private readonly server: Server,
    private targetPort: number,
  ) {
    server.on('request', (req, res) => {
      const upstream = request({ host: '127.0.0.1', port: this.targetPort, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    server.on('upgrade', (req, socket, head) => this.upgrade(req, socket, head));
  }

  static async start(targetPort: number): Promise<Tap> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new Tap(server, targetPort);
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  retarget(port: number): void {
    this.targetPort = port;
  }

  session(sessionId: string): TappedSession[] {
    return this.sessions.filter((s) => new URL(s.url, 'http://x').searchParams.get('sessionId') === sessionId);
  }

  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const upstream = new WebSocket(`ws://127.0.0.1:${this.targetPort}${req.url ?? '/'}`);
    const named = req.headers['x-transcriber-instance'];
    const tapped: TappedSession = { url: req.url ?? '/', instance: typeof named === 'string' ? named : undefined, toContainer: [], fromContainer: [] };
    // The container's first frames may arrive before the Worker's side is accepted.
    const early: string[] = [];
    let worker: WebSocket | undefined;
    upstream.on('message', (data) => {
      const text = data.toString();
      tapped.fromContainer.push(text);
      if (worker) worker.send(text);
      else early.push(text);
    });
    upstream.once('unexpected-response', (_req, res) => {
      socket.end(`HTTP/1.1 ${res.statusCode ?? 502} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
    upstream.once('error', () => {
      if (!worker) socket.end('HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
    upstream.once('open', () => {
      this.sessions.push(tapped);
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        worker = ws;
        for (const text of early.splice(0)) ws.send(text);
        ws.on('message', (data) => {
          const text = data.toString();
          tapped.toContainer.push(text);
          upstream.send(text);
        });
        ws.on('close', (code) => {
          tapped.closed ??= { by: 'worker', code };
          closeLike(upstream, code);
        });
        upstream.on('close', (code) => {
          tapped.closed ??= { by: 'container', code };
          closeLike(ws, code);
        });
      });
    });
  }
}

/** Passes a close on; codes that cannot be sent in a frame become a dropped connection. */
function closeLike(ws: WebSocket, code: number): void {
  if (ws.readyState === WebSocket.CLOSED) return;
  if (code === 1005 || code === 1006) ws.terminate();
  else ws.close(code);
}
