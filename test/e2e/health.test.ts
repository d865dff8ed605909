/**
 * /health tells the truth: 200 "ok" while transcription can work, 503 "degraded" with its
 * reasons when no provider is usable (none configured, or every configured one refusing its
 * key or out of reach, with no success since), learnt from the sessions' own attempts.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeDeepgram } from '../fakes/deepgram.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TAG_A, replayJvb } from '../helpers/client.ts';
import { readCapture } from '../helpers/fixtures.ts';
import { onlyTag, startProviderServer, type ProviderServer } from '../helpers/provider-server.ts';
import { startProxy } from '../helpers/proxy.ts';
import { until } from '../helpers/wait.ts';

const FAST = { FORCE_COMMIT_TIMEOUT: '0.5', PROVIDER_QUEUE_MS: '60000' };
const audio = onlyTag(readCapture(), TAG_A);

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function health(server: ProviderServer): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(server.url('/health'));
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Opens a session and sends audio until its provider stream has tried (and, here, failed) once. */
async function attempt(server: ProviderServer, sessionId: string, provider?: string): Promise<void> {
  const client = await server.connect(provider ? { sessionId, provider } : { sessionId });
  await replayJvb(client, { pace: 'fast', records: audio.slice(0, 50) });
  await until(() => server.logs.some((l) => l.msg === 'provider connection failed' && l.session === sessionId), `${sessionId}'s attempt`);
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('/health', () => {
  it('is degraded (503) with the variable to set when no provider is configured, and keeps its other fields', async () => {
    const bare = await startProviderServer({ LOCAL_PROVIDER: 'false' });
    closers.push(() => bare.close());
    expect(await health(bare)).toEqual({
      status: 503,
      body: {
        status: 'degraded',
        reasons: ['no speech-to-text provider is configured: set OPENAI_API_KEY or DEEPGRAM_API_KEY or GEMINI_API_KEY or VOSK_URL or LOCAL_PROVIDER=true'],
        runtime: 'node',
        version: '0.1.0',
        providers: [],
        sessions: 0,
        participants: 0,
        eventLoopLagMs: 0,
        eventLoopUtilization: 0,
      },
    });
  });

  it('turns degraded once the only provider refuses its key, never showing the key, and ok again once a connection succeeds', async () => {
    const wrong = 'sk-health-wrong-key-42';
    const proxy = await startProxy({ ...FAST, OPENAI_API_KEY: wrong });
    closers.push(() => proxy.close());
    proxy.fake.faults.echoKey = true;
    // Nothing tried yet: presumed usable, and asking does not touch the provider.
    expect(await health(proxy)).toMatchObject({ status: 200, body: { status: 'ok', providers: ['openai', 'local'] } });
    expect(proxy.fake.handshakes).toBe(0);

    await attempt(proxy, 'first');
    const degraded = await health(proxy);
    expect(degraded).toMatchObject({
      status: 503,
      body: {
        status: 'degraded',
        reasons: ['openai: the API key was refused (OpenAI error invalid_api_key: Incorrect API key provided: ***. You can find your API key at https://platform.openai.com/account/api-keys.)'],
        runtime: 'node',
        providers: ['openai', 'local'],
        sessions: 1,
      },
    });
    expect(JSON.stringify(degraded.body)).not.toContain(wrong);

    // The operator fixes the key at the provider's end: the next connection succeeds.
    proxy.fake.options.apiKey = wrong;
    const again = await proxy.connect({ sessionId: 'second' });
    await replayJvb(again, { pace: 'fast', records: audio.slice(0, 50) });
    await proxy.fake.waitFor(() => proxy.fake.connections.some((c) => c.authorized), 'an accepted connection');
    await until(async () => (await health(proxy)).status === 200, 'ok again');
    expect((await health(proxy)).body).not.toHaveProperty('reasons');
  });

  it('turns degraded when the provider is unreachable', async () => {
    const port = await closedPort();
    const proxy = await startProviderServer({ ...FAST, OPENAI_API_KEY: 'sk-x', OPENAI_BASE_URL: `ws://127.0.0.1:${port}/v1` });
    closers.push(() => proxy.close());
    await attempt(proxy, 'unreachable');
    const { status, body } = await health(proxy);
    expect(status).toBe(503);
    expect(body.status).toBe('degraded');
    expect(body.reasons).toEqual([expect.stringMatching(new RegExp(`^openai: unreachable \\(OpenAI could not be reached: .*ECONNREFUSED 127\\.0\\.0\\.1:${port}`))]);
  });

  it('stays ok while a provider is only rate-limited, or while another provider may still work', async () => {
    const openai = await FakeOpenAI.start();
    const deepgram = await FakeDeepgram.start();
    closers.push(() => openai.close(), () => deepgram.close());
    const proxy = await startProviderServer({
      ...FAST,
      OPENAI_API_KEY: openai.apiKey,
      OPENAI_BASE_URL: openai.baseUrl,
      DEEPGRAM_API_KEY: 'dg-wrong-key-for-health',
      DEEPGRAM_BASE_URL: deepgram.baseUrl,
    });
    closers.push(() => proxy.close());
    openai.faults.refuseHandshake = 429;
    await attempt(proxy, 'limited', 'openai');
    await attempt(proxy, 'refused', 'deepgram');
    // OpenAI is throttled, not refused: transcription can still work.
    expect(await health(proxy)).toMatchObject({ status: 200, body: { status: 'ok', providers: ['openai', 'deepgram', 'local'] } });

    openai.faults.refuseHandshake = 401;
    await attempt(proxy, 'refused-too', 'openai');
    const { status, body } = await health(proxy);
    expect(status).toBe(503);
    expect(body.reasons).toEqual([
      'openai: the API key was refused (OpenAI refused the connection: HTTP 401 (refused by fault injection))',
      'deepgram: the API key was refused (Deepgram refused the connection: HTTP 401 (Invalid credentials.))',
    ]);
  });
});
