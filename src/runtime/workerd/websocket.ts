import { defineWebSocketHelper, type UpgradeWebSocket } from 'hono/ws';
import { webSocketContext } from '../ws-context.ts';

/** Close codes that may not be sent in a close frame (RFC 6455 §7.4.1). */
const RESERVED_CLOSE_CODES = new Set([1005, 1006, 1015]);

/**
 * Answers a peer's close frame. workerd does this itself from compatibility date 2026-04-07;
 * on older dates the peer sees 1006 unless we close back. Closing twice is harmless.
 */
export function closeBack(socket: WebSocket, code: number, reason: string): void {
  if (socket.readyState === WebSocket.CLOSED) return;
  try {
    socket.close(RESERVED_CLOSE_CODES.has(code) ? 1000 : code, reason);
  } catch {
    // Already closing on newer compatibility dates.
  }
}

/**
 * Hono WebSocket upgrades on workerd's WebSocketPair.
 *
 * Ours rather than `hono/cloudflare-workers`'s: that one never calls `onOpen` (the app sends
 * `info` from it), and binary frames arrive as Blob on recent compatibility dates.
 *
 * No backpressure: an accepted WebSocketPair socket dispatches every message event as it
 * arrives and has no way to stop reading, so sessions get no ClientSocket.pause here, and a
 * fast sender's audio is held up to MAX_SESSION_BUFFER_MB per session (docs/PROTOCOL.md
 * §4.10; 16 MB by default when the Worker transcribes in its isolate).
 */
export const upgradeWebSocket: UpgradeWebSocket<WebSocket> = defineWebSocketHelper<WebSocket>((c, events) => {
  if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') return;
  const pair = new WebSocketPair();
  const client = pair[0];
  const server = pair[1];
  const url = new URL(c.req.url);
  // Like Node's `ws` server: agree to the client's first subprotocol, if it offers any.
  const protocol = c.req.header('sec-websocket-protocol')?.split(',')[0]?.trim() || undefined;
  const ctx = webSocketContext(server, url, protocol);
  server.binaryType = 'arraybuffer';
  server.addEventListener('message', (event) => events.onMessage?.(event, ctx));
  let closed = false;
  server.addEventListener('close', (event) => {
    closed = true;
    closeBack(server, event.code, event.reason);
    events.onClose?.(event, ctx);
  });
  // workerd can report "Network connection lost" after a clean close, when the client drops
  // the TCP connection; the session is already over, so that is not an error of ours.
  server.addEventListener('error', (event) => {
    if (!closed) events.onError?.(event, ctx);
  });
  server.accept();
  // Accepted means open from our side: what onOpen sends now is queued ahead of any reply,
  // and no message event can run before this handler returns the 101.
  events.onOpen?.(new Event('open'), ctx);
  const headers: Record<string, string> = protocol === undefined ? {} : { 'Sec-WebSocket-Protocol': protocol };
  return new Response(null, { status: 101, webSocket: client, headers });
});
