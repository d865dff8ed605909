/**
 * The Deno entry (src/runtime/deno.ts) as a process: HTTP surface, the `info` message, a
 * transcript end to end through the fake OpenAI server (the Deno connector, base64 and
 * codec in the path), and a graceful shutdown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TAG_A, TAG_B, TestClient, replayJvb } from '../helpers/client.ts';
import { startDenoProcess, type DenoProcess } from './deno-process.ts';

let fake: FakeOpenAI;
let deno: DenoProcess;
const url = (path: string) => `http://127.0.0.1:${deno.port}${path}`;
const wsUrl = (query: string) => `ws://127.0.0.1:${deno.port}/transcribe?${query}`;

beforeAll(async () => {
  fake = await FakeOpenAI.start();
  deno = await startDenoProcess({
    OPENAI_API_KEY: fake.apiKey,
    OPENAI_BASE_URL: fake.baseUrl,
    // A fast replay delivers 46 s of audio before the provider connection opens: hold it all.
    FORCE_COMMIT_TIMEOUT: '0.5',
    PROVIDER_QUEUE_MS: '60000',
  });
});

afterAll(async () => {
  await deno?.stop('SIGKILL');
  await fake?.close();
});

describe('Deno server', () => {
  it('answers /health', async () => {
    const response = await fetch(url('/health'));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: 'ok', runtime: 'deno', providers: ['openai'] });
  });

  it('refuses a bad query before the upgrade, with its reason', async () => {
    await expect(TestClient.connect(wsUrl('sendBack=true&transcribe=false'))).rejects.toMatchObject({
      status: 400,
      body: 'transcribe must be "true" (got "false")',
    });
  });

  it('sends info first on /transcribe, under any prefix', async () => {
    const client = await TestClient.connect(`ws://127.0.0.1:${deno.port}/jitsi/transcribe?sessionId=conf-1&sendBack=true`);
    await client.waitFor(() => client.messages.length > 0, 'info');
    expect(client.messages[0]).toEqual({
      event: 'info',
      application: 'opus-transcriber-proxy',
      version: '0.1.0',
      runtime: 'deno',
      provider: 'openai',
      providersAvailable: ['openai'],
      sessionId: 'conf-1',
    });
    await client.close();
    expect(client.closed?.code).toBe(1000);
  });

  it("agrees to the client's subprotocol, as the Node server does", async () => {
    const ws = new WebSocket(wsUrl('sessionId=conf-p&sendBack=true'), ['jitsi-transcriber']);
    const info = new Promise<string>((resolve) => ws.once('message', (data) => resolve(data.toString())));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    expect(ws.protocol).toBe('jitsi-transcriber');
    expect(JSON.parse(await info)).toMatchObject({ event: 'info', runtime: 'deno' });
    ws.close(1000);
    await new Promise((resolve) => ws.once('close', resolve));
  });

  it('transcribes the JVB capture through the provider, authenticated by header', async () => {
    const client = await TestClient.connect(wsUrl('sessionId=conf-2&sendBack=true'));
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
    // Every final the client got is a transcript the provider produced.
    const produced = new Set(connections.flatMap((c) => c.completed()));
    for (const final of client.finals()) expect(produced).toContain(final.transcript[0]!.text);
    await client.close();
  });

  it('closes client sockets with 1001 and exits 0 on SIGTERM', async () => {
    const client = await TestClient.connect(wsUrl('sessionId=conf-3&sendBack=true'));
    await client.waitFor(() => client.messages.length > 0, 'info');
    const code = await deno.stop('SIGTERM');
    await client.waitFor(() => client.closed !== undefined, 'close');
    expect(client.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(code).toBe(0);
  });
});
