/**
 * What only the Deno entry (src/runtime/deno.ts) does: a graceful shutdown on SIGTERM. The
 * app's behaviour under Deno is in the conformance suite (test/conformance/).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TestClient } from '../helpers/client.ts';
import { startDenoProcess, type DenoProcess } from './deno-process.ts';

let fake: FakeOpenAI;
let deno: DenoProcess;
const wsUrl = (query: string) => `ws://127.0.0.1:${deno.port}/transcribe?${query}`;

beforeAll(async () => {
  fake = await FakeOpenAI.start();
  deno = await startDenoProcess({ OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl });
});

afterAll(async () => {
  await deno?.stop('SIGKILL');
  await fake?.close();
});

describe('Deno server', () => {
  it('closes client sockets with 1001 and exits 0 on SIGTERM', async () => {
    const client = await TestClient.connect(wsUrl('sessionId=conf-3&sendBack=true'));
    await client.waitFor(() => client.messages.length > 0, 'info');
    const code = await deno.stop('SIGTERM');
    await client.waitFor(() => client.closed !== undefined, 'close');
    expect(client.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(code).toBe(0);
  });
});
