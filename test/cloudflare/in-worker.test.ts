/**
 * The production Worker entry transcribing by itself (TRANSCRIBE_IN_WORKER=true, or no
 * CONTAINER binding), under workerd: its own /health, its configuration errors, and the
 * participant limit that protects the isolate's 128 MB.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TestClient } from '../helpers/client.ts';
import { readCapture } from '../helpers/fixtures.ts';
import { startWorker, type RunningWorker } from '../runtimes/workerd-harness.ts';

describe('the Worker without a container', () => {
  let fake: FakeOpenAI;
  let worker: RunningWorker;

  beforeAll(async () => {
    fake = await FakeOpenAI.start();
    // No CONTAINER binding at all: the isolate transcribes.
    worker = await startWorker('src/runtime/workerd.ts', { vars: { OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl } });
  });

  afterAll(async () => {
    await worker?.dispose();
    await fake?.close();
  });

  it('answers /health itself, with no container to ask', async () => {
    const res = await fetch(new URL('/health', worker.url));
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 'ok', runtime: 'workerd', providers: ['openai'] });
    expect(body).not.toHaveProperty('container');
  });

  it('closes a connection that goes over 64 participants with 1008 and the reason', async () => {
    const client = await TestClient.connect(`${worker.url.origin.replace('http', 'ws')}/transcribe?sessionId=crowd&sendBack=true`);
    const media = readCapture().find((r) => r.event === 'media')!;
    const payload = (JSON.parse(media.data) as { media: { payload: string } }).media.payload;
    for (let p = 0; p <= 64; p++) client.send({ event: 'media', media: { tag: `p${p}-0`, chunk: 1, timestamp: 960, payload } });
    await client.waitFor(() => client.closed !== undefined, 'the close', 30_000);
    expect(client.closed).toEqual({ code: 1008, reason: 'participant limit of 64 reached' });
  });
});

it('refuses a TRANSCRIBE_IN_WORKER that is not true or false, naming it', async () => {
  const worker = await startWorker('src/runtime/workerd.ts', { vars: { OPENAI_API_KEY: 'sk-x', TRANSCRIBE_IN_WORKER: 'maybe' } });
  try {
    const res = await fetch(new URL('/health', worker.url));
    expect(res.status).toBe(500);
    expect(await res.text()).toContain('TRANSCRIBE_IN_WORKER: must be true or false');
  } finally {
    await worker.dispose();
  }
});
