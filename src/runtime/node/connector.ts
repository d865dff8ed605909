import WebSocket from 'ws';
import { ConnectError, type SocketConnector } from '../../net.ts';

/** Outbound WebSockets on Node 20, which has no global WebSocket that can set headers. */
export const nodeConnector: SocketConnector = {
  supportsHeaders: true,
  connect(url, options, handlers) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, options.protocols ?? [], {
        headers: options.headers,
        handshakeTimeout: options.timeoutMs ?? 10_000,
        perMessageDeflate: false,
      });
      let opened = false;
      // Listeners go on before `open` so a message sent right after the handshake is kept.
      ws.on('message', (data, isBinary) => {
        if (!isBinary) handlers.message(data.toString());
        else handlers.message(Array.isArray(data) ? Buffer.concat(data) : new Uint8Array(data as Buffer));
      });
      ws.on('unexpected-response', (_req, res) => {
        reject(new ConnectError(`handshake refused with HTTP ${res.statusCode}`, res.statusCode));
        res.resume();
        ws.terminate();
      });
      ws.on('error', (err) => {
        if (!opened) reject(new ConnectError(err.message));
      });
      ws.on('close', (code, reason) => {
        if (opened) handlers.close(code, reason.toString());
        else reject(new ConnectError(`closed during handshake (${code})`));
      });
      ws.on('open', () => {
        opened = true;
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
