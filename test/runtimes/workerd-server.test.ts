/**
 * The app on workerd (miniflare) with the seams of src/runtime/workerd/: HTTP surface, the
 * `info` message from our onOpen-firing upgrade adapter, and a transcript end to end
 * through the fake OpenAI server over the fetch-upgrade connector.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TAG_A, TAG_B, TestClient, replayJvb } from '../helpers/client.ts';
import { startWorker, type RunningWorker } from './workerd-harness.ts';

let fake: FakeOpenAI;
let worker: RunningWorker;
const url = (path: string) => new URL(path, worker.url).href;
const wsUrl = (path: string) => url(path).replace(/^http/, 'ws');

beforeAll(async () => {
  fake = await FakeOpenAI.start();
  worker = await startWorker('test/runtimes/workerd/app-worker.ts', {
    vars: {
      OPENAI_API_KEY: fake.apiKey,
      OPENAI_BASE_URL: fake.baseUrl,
      // A fast replay delivers 46 s of audio before the provider connection opens: hold it all.
      FORCE_COMMIT_TIMEOUT: '0.5',
      PROVIDER_QUEUE_MS: '60000',
      LOG_LEVEL: 'warn',
    },
  });
});

afterAll(async () => {
  await worker?.dispose();
  await fake?.close();
});

describe('workerd app', () => {
  it('answers /health', async () => {
    const response = await fetch(url('/health'));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: 'ok', runtime: 'workerd', providers: ['openai'] });
  });

  it('refuses a bad query before the upgrade, with its reason', async () => {
    await expect(TestClient.connect(wsUrl('/transcribe?sendBack=true&transcribe=false'))).rejects.toMatchObject({
      status: 400,
      body: 'transcribe must be "true" (got "false")',
    });
  });

  it('sends info first on /transcribe, and answers the client close', async () => {
    const client = await TestClient.connect(wsUrl('/jitsi/transcribe?sessionId=conf-1&sendBack=true'));
    await client.waitFor(() => client.messages.length > 0, 'info');
    expect(client.messages[0]).toEqual({
      event: 'info',
      application: 'opus-transcriber-proxy',
      version: '0.1.0',
      runtime: 'workerd',
      provider: 'openai',
      providersAvailable: ['openai'],
      sessionId: 'conf-1',
    });
    await client.close();
    expect(client.closed).toEqual({ code: 1000, reason: 'done' });
  });

  it("agrees to the client's subprotocol, as the Node server does", async () => {
    const ws = new WebSocket(wsUrl('/transcribe?sessionId=conf-p&sendBack=true'), ['jitsi-transcriber']);
    const info = new Promise<string>((resolve) => ws.once('message', (data) => resolve(data.toString())));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    expect(ws.protocol).toBe('jitsi-transcriber');
    expect(JSON.parse(await info)).toMatchObject({ event: 'info', runtime: 'workerd' });
    ws.close(1000);
    await new Promise((resolve) => ws.once('close', resolve));
  });

  it('transcribes the JVB capture through the provider, authenticated by header', async () => {
    const client = await TestClient.connect(wsUrl('/transcribe?sessionId=conf-2&sendBack=true'));
    await replayJvb(client, { pace: 'fast' });
    await client.waitFor(() => client.finals(TAG_A).length > 0 && client.finals(TAG_B).length > 0, 'finals of both tags', 30_000);
    const connections = fake.connections.filter((c) => c.appends > 0);
    expect(connections).toHaveLength(2);
    for (const c of connections) {
      expect(c.authorized).toBe(true);
      expect(c.headers.authorization).toBe(`Bearer ${fake.apiKey}`);
      expect(c.protocols).toEqual([]);
      expect(c.violations).toEqual([]);
    }
    const produced = new Set(connections.flatMap((c) => c.completed()));
    for (const final of client.finals()) expect(produced).toContain(final.transcript[0]!.text);
    await client.close();
  });
});

describe('workerd app before compatibility date 2026-04-07', () => {
  it('answers the client close itself (workerd did not yet)', async () => {
    const old = await startWorker('test/runtimes/workerd/app-worker.ts', {
      compatibilityDate: '2026-01-01',
      vars: { OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, LOG_LEVEL: 'warn' },
    });
    try {
      const client = await TestClient.connect(new URL('/transcribe?sendBack=true', old.url).href.replace(/^http/, 'ws'));
      await client.waitFor(() => client.messages.length > 0, 'info');
      expect(client.messages[0]).toMatchObject({ event: 'info', runtime: 'workerd' });
      await client.close();
      expect(client.closed).toEqual({ code: 1000, reason: 'done' });
    } finally {
      await old.dispose();
    }
  });
});
