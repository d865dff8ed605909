/**
 * workerdConnector (fetch with `Upgrade: websocket`, then accept()) inside workerd against a
 * real WebSocket server in this process: headers, the message sent right after the
 * handshake, text and binary, the peer's close, and refusals with their HTTP status.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { startWorker, type RunningWorker } from './workerd-harness.ts';
import type { Probe, ProbeResult } from './workerd-probe.ts';

let worker: RunningWorker;
let server: Server;
let base: string;
const handshakes: { headers: IncomingHttpHeaders; protocol: string }[] = [];

/** Greets on open, echoes text, reverses binary, and closes with 4001 on "bye". */
function startEchoServer(): Promise<Server> {
  const wss = new WebSocketServer({ noServer: true });
  const http = createServer((_req, res) => res.writeHead(404).end());
  http.on('upgrade', (req, socket, head) => {
    if (req.url === '/refuse') {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\nX-Reason: bad-key\r\n\r\nno such key');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      handshakes.push({ headers: req.headers, protocol: ws.protocol });
      ws.send('hello');
      ws.on('message', (data, isBinary) => {
        if (isBinary) ws.send(Buffer.from(data as Buffer).reverse());
        else if (data.toString() === 'bye') ws.close(4001, 'as asked');
        else ws.send(`echo ${data.toString()}`);
      });
    });
  });
  return new Promise((resolve) => http.listen(0, '127.0.0.1', () => resolve(http)));
}

async function run(probe: Probe): Promise<ProbeResult> {
  const response = await fetch(worker.url, { method: 'POST', body: JSON.stringify(probe) });
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as ProbeResult;
}

beforeAll(async () => {
  server = await startEchoServer();
  base = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  worker = await startWorker('test/runtimes/workerd/connector-worker.ts');
});

afterAll(async () => {
  await worker?.dispose();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

describe('workerdConnector', () => {
  it('sends headers, keeps the first message, round-trips text and binary, reports the close', async () => {
    handshakes.length = 0;
    const result = await run({
      url: `${base}/ws`,
      headers: { Authorization: 'Bearer sk-workerd' },
      send: ['ping', [1, 2, 3], 'bye'],
      messages: 3,
      awaitClose: true,
    });
    expect(result).toEqual({
      ok: true,
      messages: [{ text: 'hello' }, { text: 'echo ping' }, { bytes: [3, 2, 1] }],
      closed: { code: 4001, reason: 'as asked' },
    });
    expect(handshakes).toHaveLength(1);
    expect(handshakes[0]!.headers.authorization).toBe('Bearer sk-workerd');
    expect(handshakes[0]!.protocol).toBe('');
  });

  it('offers subprotocols when asked', async () => {
    handshakes.length = 0;
    const result = await run({ url: `${base}/ws`, protocols: ['realtime', 'openai-insecure-api-key.k'], messages: 1 });
    expect(result).toEqual({ ok: true, messages: [{ text: 'hello' }] });
    expect(handshakes[0]!.headers['sec-websocket-protocol']).toBe('realtime, openai-insecure-api-key.k');
    expect(handshakes[0]!.protocol).toBe('realtime');
  });

  it('reports a refused handshake with its HTTP status, headers and body', async () => {
    expect(await run({ url: `${base}/refuse`, messages: 0 })).toEqual({
      ok: false,
      error: 'ConnectError',
      message: 'handshake refused with HTTP 401',
      status: 401,
      refusal: {
        headers: { 'content-type': 'text/plain', 'content-length': '11', connection: 'close', 'x-reason': 'bad-key' },
        body: 'no such key',
      },
    });
  });

  it('fails without a status when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const result = await run({ url: `ws://127.0.0.1:${port}/`, messages: 0 });
    expect(result).toMatchObject({ ok: false, error: 'ConnectError' });
    expect(result).not.toHaveProperty('status');
  });

  it('gives up on a handshake that never completes', async () => {
    const held: Socket[] = [];
    const silent = createTcpServer((socket) => held.push(socket)); // accepts, never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const port = (silent.address() as AddressInfo).port;
      expect(await run({ url: `ws://127.0.0.1:${port}/`, timeoutMs: 50, messages: 0 })).toEqual({
        ok: false,
        error: 'ConnectError',
        message: 'handshake timed out after 50 ms',
      });
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
