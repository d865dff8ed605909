/**
 * The Deno seams against real sockets: denoConnector (headers, messages right after the
 * handshake, refusals) and createDenoWebSocket (onOpen, binary as ArrayBuffer), served by
 * Deno.serve in this process. Run with `deno task test` (npm test runs it through
 * test/runtimes/deno-native.test.ts). Assertions from node:assert, which Deno has built in,
 * so these tests need no package from a registry.
 */
import assert from 'node:assert/strict';
import { Hono } from 'hono';
import { ConnectError, type OutboundSocket } from '../../../src/net.ts';
import { denoConnector, handshakeStatus } from '../../../src/runtime/deno/connector.ts';
import { createDenoWebSocket, firstProtocol } from '../../../src/runtime/deno/websocket.ts';

interface Seen {
  events: string[];
  messages: (string | ArrayBuffer)[];
  authorization: string | null;
}

/** A Hono app on our upgrade adapter that greets on open and echoes what it receives. */
function startEchoServer(): { url: string; seen: Seen; stop(): Promise<void> } {
  const seen: Seen = { events: [], messages: [], authorization: null };
  const { upgradeWebSocket } = createDenoWebSocket();
  const app = new Hono();
  app.get('/refuse', (c) => c.text('no such key', 401));
  app.get('/ws', (c) => {
    seen.authorization = c.req.header('authorization') ?? null;
    return upgradeWebSocket(c, {
      onOpen: (_event, ws) => {
        seen.events.push('open');
        ws.send('hello');
      },
      onMessage: (event, ws) => {
        const data: unknown = event.data;
        seen.messages.push(data as string | ArrayBuffer);
        if (data instanceof ArrayBuffer) ws.send(new Uint8Array(data).reverse());
        else if (data === 'bye') ws.close(4001, 'as asked');
        else ws.send(`echo ${String(data)}`);
      },
      onClose: () => {
        seen.events.push('close');
      },
    });
  });
  const server = Deno.serve({ port: 0, hostname: '127.0.0.1', onListen: () => {} }, app.fetch);
  return { url: `ws://127.0.0.1:${server.addr.port}`, seen, stop: () => server.shutdown() };
}

/** The ConnectError `connect` rejects with. */
async function connectError(connect: () => Promise<OutboundSocket>): Promise<ConnectError> {
  try {
    await connect();
  } catch (error) {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    return error;
  }
  throw new assert.AssertionError({ message: 'connect resolved' });
}

function recorder() {
  const received: (string | Uint8Array)[] = [];
  let closed: (value: [number, string]) => void = () => {};
  const closedWith = new Promise<[number, string]>((resolve) => (closed = resolve));
  let waiting: { count: number; resolve: () => void } | undefined;
  return {
    received,
    closedWith,
    handlers: {
      message(data: string | Uint8Array) {
        received.push(data);
        if (waiting && received.length >= waiting.count) waiting.resolve();
      },
      close(code: number, reason: string) {
        closed([code, reason]);
      },
    },
    until(count: number): Promise<void> {
      if (received.length >= count) return Promise.resolve();
      return new Promise((resolve) => (waiting = { count, resolve }));
    },
  };
}

Deno.test('denoConnector sends headers, keeps the first message, round-trips text and binary', async () => {
  const server = startEchoServer();
  try {
    const rec = recorder();
    const socket: OutboundSocket = await denoConnector.connect(
      `${server.url}/ws`,
      { headers: { Authorization: 'Bearer sk-deno' } },
      rec.handlers,
    );
    await rec.until(1);
    assert.deepEqual(rec.received, ['hello']);
    assert.deepEqual(server.seen.authorization, 'Bearer sk-deno');

    socket.send('ping');
    socket.send(new Uint8Array([1, 2, 3]));
    await rec.until(3);
    assert.deepEqual(rec.received.slice(1), ['echo ping', new Uint8Array([3, 2, 1])]);
    assert.ok(server.seen.messages[1] instanceof ArrayBuffer, 'binary frames reach the app as ArrayBuffer');
    assert.deepEqual(server.seen.events, ['open']);

    socket.send('bye');
    assert.deepEqual(await rec.closedWith, [4001, 'as asked']);
  } finally {
    await server.stop();
  }
});

Deno.test('denoConnector reports a refused handshake with its HTTP status', async () => {
  const server = startEchoServer();
  try {
    const error = await connectError(() => denoConnector.connect(`${server.url}/refuse`, {}, recorder().handlers));
    assert.deepEqual(error.status, 401);
  } finally {
    await server.stop();
  }
});

Deno.test('denoConnector fails without a status when nothing listens', async () => {
  const listener = Deno.listen({ port: 0, hostname: '127.0.0.1' });
  const port = listener.addr.port;
  listener.close();
  const error = await connectError(() => denoConnector.connect(`ws://127.0.0.1:${port}/`, {}, recorder().handlers));
  assert.deepEqual(error.status, undefined);
});

Deno.test('denoConnector gives up on a handshake that never completes', async () => {
  const listener = Deno.listen({ port: 0, hostname: '127.0.0.1' });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn); // accept, never answer
  })();
  try {
    const error = await connectError(() =>
      denoConnector.connect(`ws://127.0.0.1:${listener.addr.port}/`, { timeoutMs: 50 }, recorder().handlers),
    );
    assert.deepEqual(error.message, 'handshake timed out after 50 ms');
  } finally {
    listener.close();
    for (const conn of held) conn.close();
    await accepting.catch(() => {});
  }
});

Deno.test('handshakeStatus reads the status from Deno error messages', () => {
  assert.deepEqual(handshakeStatus('NetworkError: failed to connect to WebSocket: Invalid status code: 401'), 401);
  assert.deepEqual(handshakeStatus('NetworkError: failed to connect to WebSocket: tcp connect error'), undefined);
});

Deno.test('firstProtocol agrees only where Deno.upgradeWebSocket can', () => {
  assert.equal(firstProtocol(undefined), undefined);
  assert.equal(firstProtocol('jitsi'), 'jitsi');
  assert.equal(firstProtocol('jitsi, other'), 'jitsi');
  assert.equal(firstProtocol('jitsi,other'), undefined);
});
