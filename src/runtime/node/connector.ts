import WebSocket from 'ws';
import { ConnectError, type SocketConnector } from '../../net.ts';
import { systemTimers, withDeadline } from '../../util/timers.ts';

const MAX_REFUSAL_BODY = 2048;
/** A refusal whose body never ends must not hold the caller's retry. */
const REFUSAL_BODY_WAIT_MS = 2_000;

/**
 * How often an open socket is pinged. A peer that answers neither the ping nor with any other
 * frame before the next one is taken for gone: a provider or dispatcher host that vanished
 * without closing (a crash, a NAT that forgot the flow) would otherwise hold a participant's
 * audio until TCP gives up, many minutes later.
 */
const HEARTBEAT_MS = 20_000;

/** Outbound WebSockets on Node 20, which has no global WebSocket that can set headers. */
export const nodeConnector = createNodeConnector();

export function createNodeConnector({ heartbeatMs = HEARTBEAT_MS } = {}): SocketConnector {
  return {
    supportsHeaders: true,
    connect(url, options, handlers) {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(url, options.protocols ?? [], {
          headers: options.headers,
          handshakeTimeout: options.timeoutMs ?? 10_000,
          perMessageDeflate: false,
          // A zero mask lets `ws` write each frame's string as is, without copying and XOR-ing
          // it: that is most of the cost of the one write per 20 ms frame per participant.
          // Masking protects browsers' intermediaries from cache poisoning; this client is a
          // server talking to a provider's API, which the mask does not protect.
          generateMask: (mask) => mask.fill(0),
        });
        let opened = false;
        let heard = true;
        let silent = false;
        let heartbeat: NodeJS.Timeout | undefined;
        // Listeners go on before `open` so a message sent right after the handshake is kept.
        ws.on('message', (data, isBinary) => {
          heard = true;
          if (!isBinary) handlers.message(data.toString());
          else handlers.message(Array.isArray(data) ? Buffer.concat(data) : new Uint8Array(data as Buffer));
        });
        ws.on('unexpected-response', (_req, res) => {
          // The body and headers say why (a bad key, a bad parameter); keep a bounded excerpt.
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            if (size < MAX_REFUSAL_BODY) chunks.push(chunk);
            size += chunk.length;
          });
          const ended = new Promise<void>((resolve) => {
            res.on('end', resolve);
            res.on('error', () => resolve());
          });
          void withDeadline(ended, REFUSAL_BODY_WAIT_MS, systemTimers).then(() => {
            const headers: Record<string, string> = {};
            for (const [name, value] of Object.entries(res.headers)) {
              if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
            }
            const body = Buffer.concat(chunks).toString('utf8').slice(0, MAX_REFUSAL_BODY);
            reject(new ConnectError(`handshake refused with HTTP ${res.statusCode}`, res.statusCode, { headers, body }));
            ws.terminate();
          });
        });
        ws.on('error', (err) => {
          if (!opened) reject(new ConnectError(err.message));
        });
        ws.on('pong', () => {
          heard = true;
        });
        ws.on('close', (code, reason) => {
          clearInterval(heartbeat);
          if (!opened) reject(new ConnectError(`closed during handshake (${code})`));
          else handlers.close(code, silent ? `no answer to a ping within ${heartbeatMs} ms` : reason.toString());
        });
        ws.on('open', () => {
          opened = true;
          heartbeat = setInterval(() => {
            if (!heard) {
              silent = true;
              return ws.terminate();
            }
            heard = false;
            ws.ping();
          }, heartbeatMs).unref();
          resolve({
            send: (data) => ws.send(data),
            close: (code, reason) => ws.close(code, reason),
            get bufferedAmount() {
              return ws.bufferedAmount;
            },
          });
        });
      });
    },
  };
}
