/**
 * What only workerd needs from our upgrade adapter (src/runtime/workerd/websocket.ts): `info`
 * from an onOpen that hono's own adapter never fires, and the client's close answered on
 * compatibility dates before workerd did it itself. The app's behaviour under workerd is in
 * the conformance suite (test/conformance/).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TestClient } from '../helpers/client.ts';
import { startWorker, type RunningWorker } from './workerd-harness.ts';

let fake: FakeOpenAI;
let worker: RunningWorker;
const url = (path: string) => new URL(path, worker.url).href;
const wsUrl = (path: string) => url(path).replace(/^http/, 'ws');

beforeAll(async () => {
  fake = await FakeOpenAI.start();
  worker = await startWorker('src/runtime/workerd.ts', {
    vars: { TRANSCRIBE_IN_WORKER: 'true', OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, LOG_LEVEL: 'warn' },
  });
});

afterAll(async () => {
  await worker?.dispose();
  await fake?.close();
});

describe('workerd app', () => {
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

});

describe('workerd app before compatibility date 2026-04-07', () => {
  it('answers the client close itself (workerd did not yet)', async () => {
    const old = await startWorker('src/runtime/workerd.ts', {
      compatibilityDate: '2026-01-01',
      vars: { TRANSCRIBE_IN_WORKER: 'true', OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, LOG_LEVEL: 'warn' },
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
