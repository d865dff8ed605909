import { ConnectError, type HandshakeRefusal, type OutboundSocket, type SocketConnector, type SocketHandlers } from '../../net.ts';
import { systemTimers, withDeadline } from '../../util/timers.ts';
import { closeBack } from './websocket.ts';

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
const MAX_REFUSAL_BODY = 2048;
/** A refusal whose body never ends must not hold the caller's retry. */
const REFUSAL_BODY_WAIT_MS = 2_000;

/** workerd's fetch only speaks http(s); the Upgrade header makes it a WebSocket handshake. */
function toHandshakeUrl(url: string): string {
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
      throw new ConnectError(`handshake refused with HTTP ${response.status}`, response.status, await refusalOf(response));
    }

    return acceptWebSocket(ws, handlers);
  },
};

/**
 * Takes over the client end of an upgraded fetch (a provider, or a container's server).
 * Events are held until accept(), so listeners attached first miss nothing.
 */
export function acceptWebSocket(ws: WebSocket, handlers: SocketHandlers): OutboundSocket {
  let closed = false;
  const reportClose = (code: number, reason: string) => {
    if (closed) return;
    closed = true;
    handlers.close(code, reason);
  };
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
  return {
    send: (data) => ws.send(data),
    close: (code, reason) => ws.close(code, reason),
    // workerd does not expose how much is queued.
    bufferedAmount: 0,
  };
}

/** The headers and the start of the body of a refused handshake: they say why. */
async function refusalOf(response: Response): Promise<HandshakeRefusal> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  return { headers, body: await bodyExcerpt(response) };
}

async function bodyExcerpt(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  if (reader === undefined) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  const giveUpAt = Date.now() + REFUSAL_BODY_WAIT_MS;
  try {
    while (size < MAX_REFUSAL_BODY) {
      const next = await withDeadline(reader.read(), giveUpAt - Date.now(), systemTimers);
      if (next === undefined || next.done) break;
      chunks.push(next.value);
      size += next.value.length;
    }
  } catch {
    // What arrived before the failure is still worth reporting.
  } finally {
    reader.cancel().catch(() => {});
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return new TextDecoder().decode(bytes).slice(0, MAX_REFUSAL_BODY);
}
