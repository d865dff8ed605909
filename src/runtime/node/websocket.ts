import type { IncomingMessage, Server } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Hono } from 'hono';
import { WSContext, defineWebSocketHelper, type UpgradeWebSocket, type WSEvents } from 'hono/ws';
import { WebSocketServer, type WebSocket } from 'ws';

/**
 * Hono WebSocket upgrades on Node, on the `ws` package.
 *
 * Written instead of using @hono/node-ws because that adapter answers a refused upgrade
 * with an empty body (our 400s must carry their one-line reason), cannot set `maxPayload`,
 * and its error path references `ErrorEvent`, which Node 20 lacks.
 */
export function createNodeWebSocket(options: { maxPayload: number }) {
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayload });
  const accepted = new WeakMap<IncomingMessage, WSEvents<WebSocket>>();

  const upgradeWebSocket: UpgradeWebSocket<WebSocket> = defineWebSocketHelper<WebSocket>((c, events) => {
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    if (!incoming || c.req.header('upgrade')?.toLowerCase() !== 'websocket') return;
    accepted.set(incoming, events);
    // A marker: the real 101 is written by `ws` in the server's upgrade listener below.
    return new Response(null, { status: 200 });
  });

  function injectWebSocket(server: Server, app: Hono): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void handleUpgrade(app, req, socket, head);
    });
  }

  async function handleUpgrade(app: Hono, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
    const headers = new Headers();
    for (const [key, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(key, Array.isArray(value) ? value.join(', ') : value);
    }
    let response: Response;
    try {
      response = await app.fetch(new Request(url, { headers }), { incoming: req });
    } catch {
      response = new Response('internal error', { status: 500 });
    }
    const events = accepted.get(req);
    if (!events) {
      const body = Buffer.from(await response.text());
      const head =
        `HTTP/1.1 ${response.status} ${STATUS_CODES[response.status] ?? ''}\r\n` +
        `Content-Type: ${response.headers.get('content-type') ?? 'text/plain; charset=UTF-8'}\r\n` +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
      socket.on('error', () => {}); // the client may hang up before reading its refusal
      socket.end(Buffer.concat([Buffer.from(head), body]));
      return;
    }
    accepted.delete(req);
    wss.handleUpgrade(req, socket, head, (ws) => attach(ws, url, events));
  }

  async function closeAll(): Promise<void> {
    for (const client of wss.clients) client.close(1001, 'server shutting down');
  }

  return { upgradeWebSocket, injectWebSocket, closeAll };
}

/**
 * `raw` is the `ws` WebSocket itself: its pause() and resume() are the sessions' backpressure
 * (ClientSocket.pause, src/app.ts). They stop and restart reading the TCP socket; ws's own
 * rather than its `_socket`'s, because its receiver resumes a socket it had paused for its
 * own buffer only when the WebSocket is not paused. Frames already read still arrive.
 */
function attach(ws: WebSocket, url: URL, events: WSEvents<WebSocket>): void {
  const ctx = new WSContext<WebSocket>({
    send: (data, opts) => ws.send(data, { compress: opts.compress }),
    close: (code, reason) => ws.close(code, reason),
    raw: ws,
    get readyState() {
      return ws.readyState as 0 | 1 | 2 | 3;
    },
    url,
    protocol: ws.protocol,
  });
  ws.on('message', (data, isBinary) => {
    const payload = isBinary ? toArrayBuffer(data) : data.toString();
    events.onMessage?.(new MessageEvent('message', { data: payload }), ctx);
  });
  ws.on('close', (code, reason) => {
    // Node 20 has no global CloseEvent.
    const event = Object.assign(new Event('close'), { code, reason: reason.toString(), wasClean: code !== 1006 });
    events.onClose?.(event as CloseEvent, ctx);
  });
  ws.on('error', () => {
    events.onError?.(new Event('error'), ctx);
  });
  events.onOpen?.(new Event('open'), ctx);
}

function toArrayBuffer(data: Buffer | ArrayBuffer | Buffer[]): ArrayBuffer {
  const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
}
