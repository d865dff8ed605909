/**
 * The Node connector's heartbeat against real WebSocket servers on 127.0.0.1: a peer that
 * stops answering (no pong, no frame) is closed as 1006 with the reason, so the provider
 * stream or dispatcher reconnects; a peer that answers, by pong or by any frame, stays open.
 */
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { createNodeConnector } from '../../src/runtime/node/connector.ts';
import type { OutboundSocket } from '../../src/net.ts';
import { until } from '../helpers/wait.ts';

/**
 * Real time (the connector's heartbeat is a Node interval). A healthy peer's pong is read
 * within a millisecond, but a process starved of CPU for longer than a period (a busy 2-core
 * CI machine) wakes to the timer before the pong, and drops that peer: the period is the
 * margin, so it is not made small.
 */
const HEARTBEAT_MS = 500;
const servers: WebSocketServer[] = [];

interface Peer {
  url: string;
  pings: number;
  sockets: WebSocket[];
}

async function startPeer(options: { autoPong: boolean; chatterMs?: number }): Promise<Peer> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: options.autoPong });
  servers.push(wss);
  await new Promise((resolve) => wss.once('listening', resolve));
  const peer: Peer = { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, pings: 0, sockets: [] };
  wss.on('connection', (ws) => {
    peer.sockets.push(ws);
    ws.on('ping', () => peer.pings++);
    ws.on('message', (data) => ws.send(`echo ${data.toString()}`));
    if (options.chatterMs) {
      const chatter = setInterval(() => ws.send('transcript'), options.chatterMs);
      ws.on('close', () => clearInterval(chatter));
    }
  });
  return peer;
}

async function connect(peer: Peer) {
  const closes: { code: number; reason: string }[] = [];
  const messages: string[] = [];
  const socket: OutboundSocket = await createNodeConnector({ heartbeatMs: HEARTBEAT_MS }).connect(peer.url, {}, {
    message: (data) => messages.push(String(data)),
    close: (code, reason) => closes.push({ code, reason }),
  });
  return { socket, closes, messages };
}

afterEach(async () => {
  for (const wss of servers.splice(0)) {
    for (const ws of wss.clients) ws.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});

describe('Node connector heartbeat', () => {
  it('closes a peer that answers neither ping nor anything else, as 1006 with the reason', async () => {
    const peer = await startPeer({ autoPong: false });
    const { closes } = await connect(peer);
    await until(() => closes.length > 0, 'the silent peer to be dropped', 10_000);
    expect(closes).toEqual([{ code: 1006, reason: `no answer to a ping within ${HEARTBEAT_MS} ms` }]);
    expect(peer.pings).toBeGreaterThanOrEqual(1);
  });

  it('keeps a peer that answers pings open, and messages flow', async () => {
    const peer = await startPeer({ autoPong: true });
    const { socket, closes, messages } = await connect(peer);
    await until(() => peer.pings >= 3, 'three heartbeats', 10_000);
    socket.send('hello');
    await until(() => messages.includes('echo hello'), 'the echo', 5_000);
    expect(closes).toEqual([]);
    socket.close(1000, 'done');
    await until(() => closes.length > 0, 'the close', 5_000);
    expect(closes).toEqual([{ code: 1000, reason: 'done' }]);
  });

  it('counts any frame from the peer as an answer (a provider busy sending transcripts)', async () => {
    const peer = await startPeer({ autoPong: false, chatterMs: HEARTBEAT_MS / 4 });
    const { closes, messages } = await connect(peer);
    await until(() => peer.pings >= 3, 'three heartbeats', 10_000);
    expect(messages.length).toBeGreaterThan(5);
    expect(closes).toEqual([]);
  });
});
