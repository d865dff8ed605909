import { afterAll, beforeAll, expect, it } from 'vitest';
import { startNodeServer, type NodeServer } from '../../src/runtime/node/server.ts';
import { createLogger } from '../../src/log.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TestClient, replayJvb, TAG_A, TAG_B } from '../helpers/client.ts';

let fake: FakeOpenAI;
let server: NodeServer;
beforeAll(async () => {
  fake = await FakeOpenAI.start();
  server = await startNodeServer({ env: { PORT: '0', HOST: '127.0.0.1', OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, LOG_LEVEL: 'debug' } });
});
afterAll(async () => {
  await server.close();
  await fake.close();
});

it('smoke', async () => {
  const client = await TestClient.connect(`ws://127.0.0.1:${server.port}/transcribe?sessionId=s1&sendBack=true&sendBackInterim=true`);
  await replayJvb(client, { pace: 'fast' });
  await client.waitFor(() => client.finals(TAG_A).length > 0 && client.finals(TAG_B).length > 0, 'finals', 30000);
  console.log(client.messages.slice(0, 3), client.finals().map((f) => f.transcript[0].text));
  console.log(fake.connections.map((c) => [c.appends, c.violations, c.completed()]));
  await client.close();
  expect(1).toBe(1);
});
