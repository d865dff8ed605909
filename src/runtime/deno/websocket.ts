import { defineWebSocketHelper, type UpgradeWebSocket } from 'hono/ws';
import { systemTimers, withDeadline } from '../../util/timers.ts';
import { webSocketContext } from '../ws-context.ts';

/** How long shutdown waits for clients to answer our close frame. */
const CLOSE_GRACE_MS = 2_000;

/**
 * Hono WebSocket upgrades on Deno.upgradeWebSocket.
 *
 * Ours rather than `hono/deno`'s: that one is deprecated (gone in Hono 5) and compares the
 * Upgrade header case-sensitively, so `Upgrade: WebSocket`, which app.ts accepts, would
 * throw inside the helper. Sockets are tracked so that shutdown can close them with 1001.
 *
 * No backpressure: the WebSocket of Deno.upgradeWebSocket delivers every frame as it
 * arrives and has no way to stop reading (only the client-side WebSocketStream has flow
 * control), so sessions get no ClientSocket.pause here, and a fast sender's audio is held up
 * to MAX_SESSION_BUFFER_MB per session (docs/PROTOCOL.md §4.10).
 */
export function createDenoWebSocket() {
  const sockets = new Set<WebSocket>();

  const upgradeWebSocket: UpgradeWebSocket<WebSocket> = defineWebSocketHelper<WebSocket>((c, events) => {
    if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') return;
    const protocol = firstProtocol(c.req.header('sec-websocket-protocol'));
    const { socket, response } = Deno.upgradeWebSocket(c.req.raw, protocol === undefined ? {} : { protocol });
    // Already Deno's default for accepted sockets; set so binary frames never arrive as Blob.
    socket.binaryType = 'arraybuffer';
    const url = new URL(c.req.url);
    const ctx = webSocketContext(socket, url, protocol);
    socket.onopen = (event) => {
      sockets.add(socket);
      events.onOpen?.(event, ctx);
    };
    socket.onmessage = (event) => events.onMessage?.(event, ctx);
    socket.onclose = (event) => {
      sockets.delete(socket);
      events.onClose?.(event, ctx);
    };
    socket.onerror = (event) => events.onError?.(event, ctx);
    return response;
  });

  /**
   * Deno's shutdown() closes upgraded sockets itself ("Server shutting down"), and its frame
   * overtakes ours unless the close handshakes finish first: they get CLOSE_GRACE_MS.
   */
  async function closeAll(): Promise<void> {
    const closed = [...sockets].map((socket) => new Promise<void>((resolve) => socket.addEventListener('close', () => resolve(), { once: true })));
    for (const socket of sockets) socket.close(1001, 'server shutting down');
    await withDeadline(Promise.all(closed), CLOSE_GRACE_MS, systemTimers);
  }

  return { upgradeWebSocket, closeAll };
}

/**
 * Like Node's `ws` server, agree to the client's first subprotocol. Deno.upgradeWebSocket
 * splits the offer on ", " exactly and throws (a 500) for a protocol it did not find that
 * way, so an offer written "a,b" (as Node's `ws` client writes it) gets no agreement.
 */
export function firstProtocol(offer: string | undefined): string | undefined {
  const first = offer?.split(',')[0]?.trim();
  return first && offer!.split(', ').includes(first) ? first : undefined;
}

