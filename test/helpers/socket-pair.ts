/**
 * A real WebSocket connection on 127.0.0.1 (port 0): the server end as the product's
 * `ClientSocket` port (what a session writes to), the client end recording what a media
 * server would receive. `received()` waits for a marker written after the product's frames,
 * so "nothing was sent" is asserted on what crossed the socket, not on a timeout.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import type { ClientSocket } from '../../src/session/ports.ts';

export interface SocketPair {
  /** The server end, as the session sees its client. */
  client: ClientSocket;
  /** Every frame the media-server end has received so far, up to the marker. */
  received(): Promise<string[]>;
  close(): Promise<void>;
}

const MARKER = '\u0000end-of-test-frames';

export async function socketPair(): Promise<SocketPair> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  const port = (wss.address() as AddressInfo).port;
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>;
  const media = new WebSocket(`ws://127.0.0.1:${port}/`);
  const frames: string[] = [];
  let marked: () => void = () => {};
  media.on('message', (data) => {
    const text = data.toString();
    if (text === MARKER) marked();
    else frames.push(text);
  });
  await once(media, 'open');
  const [server] = await accepted;
  return {
    client: { send: (text) => server.send(text), close: (code, reason) => server.close(code, reason) },
    async received() {
      const seen = new Promise<void>((resolve) => (marked = resolve));
      server.send(MARKER);
      await seen;
      return [...frames];
    },
    async close() {
      media.terminate();
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
