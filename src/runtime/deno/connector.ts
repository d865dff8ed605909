import { ConnectError, type OutboundSocket, type SocketConnector } from '../../net.ts';
import { systemTimers, withDeadline } from '../../util/timers.ts';

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Deno's non-standard constructor overload that sets handshake headers. deno.json types
 * Deno code against the DOM lib, as the runtime-neutral core is, and that lib lacks it.
 */
type DenoWebSocketConstructor = new (url: string, options: { protocols?: string[]; headers?: HeadersInit }) => WebSocket;
const DenoWebSocket = WebSocket as unknown as DenoWebSocketConstructor;

/**
 * Deno reports a refused handshake only through the error event's message
 * ("failed to connect to WebSocket: Invalid status code: 401"); the status is recovered
 * from it so callers can tell auth failures (no retry) from transient ones.
 */
export function handshakeStatus(message: string): number | undefined {
  const match = /invalid status code:?\s*(\d{3})\b/i.exec(message);
  return match ? Number(match[1]) : undefined;
}

/** Outbound WebSockets on Deno, whose WebSocket constructor takes handshake headers. */
export const denoConnector: SocketConnector = {
  supportsHeaders: true,
  connect(url, options, handlers) {
    let ws: WebSocket;
    try {
      ws = new DenoWebSocket(url, { protocols: options.protocols ?? [], headers: options.headers ?? {} });
    } catch (error) {
      return Promise.reject(new ConnectError(error instanceof Error ? error.message : String(error)));
    }
    // Client sockets default to Blob, which would make every binary frame async.
    ws.binaryType = 'arraybuffer';
    let opened = false;
    let failed = false;
    const handshake = new Promise<OutboundSocket>((resolve, reject) => {
      const fail = (error: ConnectError) => {
        if (opened || failed) return;
        failed = true;
        reject(error);
      };
      // Listeners go on before `open` so a message sent right after the handshake is kept.
      ws.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
        const data = event.data;
        handlers.message(typeof data === 'string' ? data : new Uint8Array(data));
      };
      ws.onerror = (event) => {
        const message = event instanceof ErrorEvent ? event.message : 'WebSocket error';
        fail(new ConnectError(message, handshakeStatus(message)));
      };
      ws.onclose = (event) => {
        // A failed handshake closes with code 0 after its error event; only an open socket reports.
        if (opened) handlers.close(event.code, event.reason);
        else fail(new ConnectError(`closed during handshake (${event.code})`));
      };
      ws.onopen = () => {
        if (failed) return;
        opened = true;
        resolve({
          // Our bytes never live in a SharedArrayBuffer; TS 6's lib just cannot tell.
          send: (data) => ws.send(data as string | Uint8Array<ArrayBuffer>),
          close: (code, reason) => ws.close(code, reason),
          get bufferedAmount() {
            return ws.bufferedAmount;
          },
        });
      };
    });
    const timeoutMs = options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    return withDeadline(handshake, timeoutMs, systemTimers, () => {
      failed = true;
      ws.close();
      throw new ConnectError(`handshake timed out after ${timeoutMs} ms`);
    });
  },
};
