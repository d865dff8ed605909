import { WSContext } from 'hono/ws';

/** Hono's WSContext over a web-standard WebSocket (Deno's and workerd's accepted sockets). */
export function webSocketContext(socket: WebSocket, url: URL, protocol: string | undefined): WSContext<WebSocket> {
  return new WSContext<WebSocket>({
    send: (data) => socket.send(data),
    close: (code, reason) => socket.close(code, reason),
    raw: socket,
    get readyState() {
      return socket.readyState as 0 | 1 | 2 | 3;
    },
    url,
    protocol: protocol ?? '',
  });
}
