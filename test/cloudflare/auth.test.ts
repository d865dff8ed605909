/**
 * The Worker in front of its containers checks credentials before it wakes one: a refused
 * request never reaches the container side (no Durable Object start, no socket at the tap,
 * no session in the Node server standing in for the container), and an accepted one does.
 *
 *   client → Worker (AUTH_MODE=token) → TranscriberContainer → tap → Node server → fake OpenAI
 */
import type { Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import type { NodeServer } from '../../src/runtime/node/server.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TestClient } from '../helpers/client.ts';
import { until } from '../helpers/wait.ts';
import { startContainerServer, startFront } from './front.ts';
import { Tap } from './tap.ts';

const TOKEN = 'worker-front-shared-secret-42';

let fake: FakeOpenAI;
let node: NodeServer;
let tap: Tap;
let mf: Miniflare;
let base: URL;

beforeAll(async () => {
  fake = await FakeOpenAI.start();
  node = await startContainerServer(fake, createLogger('error', () => {}));
  tap = await Tap.start(node.port);
  ({ mf, base } = await startFront({ fake, tap, bindings: { AUTH_MODE: 'token', AUTH_TOKEN: TOKEN, LOG_LEVEL: 'error' } }));
});

afterAll(async () => {
  await mf?.dispose();
  await tap?.close();
  await node?.close();
  await fake?.close();
});

const wsUrl = (query: Record<string, string>) => `${new URL('/transcribe', base).href.replace(/^http/, 'ws')}?${new URLSearchParams(query)}`;

async function containerState(sessionId: string): Promise<string> {
  const response = await fetch(new URL(`/health?sessionId=${sessionId}`, base));
  return ((await response.json()) as { container: { state: string } }).container.state;
}

describe('the Worker front with AUTH_MODE=token', () => {
  it('refuses a wrong or missing token with 401 before any container is started', async () => {
    await expect(TestClient.connect(wsUrl({ sessionId: 'refused', sendBack: 'true' }))).rejects.toMatchObject({
      status: 401,
      body: expect.stringMatching(/^unauthorized: no token/),
    });
    await expect(TestClient.connect(wsUrl({ sessionId: 'refused', sendBack: 'true', token: `${TOKEN}-not` }))).rejects.toMatchObject({
      status: 401,
      body: 'unauthorized: the token is not accepted',
    });
    expect(tap.session('refused')).toEqual([]);
    expect(node.metrics.sessionsTotal.get()).toBe(0);
    expect(await containerState('refused')).not.toMatch(/^(running|healthy)$/);
    const metrics = await (await fetch(new URL('/metrics', base))).text();
    expect(metrics).toContain('transcriber_auth_refused_total{reason="bad_token"} 1');
  });

  it('relays an accepted session to its container, without passing the token on', async () => {
    const client = await TestClient.connect(wsUrl({ sessionId: 'accepted', sendBack: 'true' }), { headers: { Authorization: `Bearer ${TOKEN}` } });
    await until(() => tap.session('accepted').length === 1, 'the container socket');
    expect(tap.session('accepted')[0]!.url).not.toContain('token');
    await client.close();
    const viaQuery = await TestClient.connect(wsUrl({ sessionId: 'accepted-q', sendBack: 'true', token: TOKEN }));
    await until(() => tap.session('accepted-q').length === 1, 'the container socket');
    expect(tap.session('accepted-q')[0]!.url).not.toContain(TOKEN);
    await viaQuery.close();
  });
});
