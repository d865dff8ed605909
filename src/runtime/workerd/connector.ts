import { ConnectError, type OutboundSocket, type SocketConnector } from '../../net.ts';
import { closeBack } from './websocket.ts';

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** workerd's fetch only speaks http(s); the Upgrade header makes it a WebSocket handshake. */
export function toHandshakeUrl(url: string): string {
  return url.replace(/^ws(s?):\/\//i, 'http$1://');
}

/**
 * Outbound WebSockets on workerd: its WebSocket constructor cannot set headers, but a fetch
 * with `Upgrade: websocket` can, and hands back the socket on a 101.
 */
export const workerdConnector: SocketConnector = {
  supportsHeaders: true,
  async connect(url, options, handlers) {
    const headers: Record<string, string> = { ...options.headers, Upgrade: 'websocket' };
    if (options.protocols?.length) headers['Sec-WebSocket-Protocol'] = options.protocols.join(', ');
    const timeoutMs = options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    let response: Response;
    try {
      response = await fetch(toHandshakeUrl(url), { headers, signal: AbortSignal.timeout(timeoutMs) });
    } catch (error) {
      const timedOut = error instanceof Error && error.name === 'TimeoutError';
      throw new ConnectError(timedOut ? `handshake timed out after ${timeoutMs} ms` : String(error instanceof Error ? error.message : error));
    }
    const ws = response.webSocket;
    if (response.status !== 101 || ws === null) {
      await response.body?.cancel();
      throw new ConnectError(`handshake refused with HTTP ${response.status}`, response.status);
    }

    let closed = false;
    const reportClose = (code: number, reason: string) => {
      if (closed) return;
      closed = true;
      handlers.close(code, reason);
    };
    // Events are held until accept(), so listeners attached first miss nothing.
    ws.addEventListener('message', (event) => {
      const data: unknown = event.data;
      if (typeof data === 'string') handlers.message(data);
      else if (data instanceof ArrayBuffer) handlers.message(new Uint8Array(data));
    });
    ws.addEventListener('close', (event) => {
      closeBack(ws, event.code, event.reason);
      reportClose(event.code, event.reason);
    });
    // workerd does not always follow an error with a close event.
    ws.addEventListener('error', () => reportClose(1006, 'WebSocket error'));
    ws.accept();
    ws.binaryType = 'arraybuffer';

    const socket: OutboundSocket = {
      send: (data) => ws.send(data),
      close: (code, reason) => ws.close(code, reason),
      // workerd does not expose how much is queued.
      bufferedAmount: 0,
    };
    return socket;
  },
};
