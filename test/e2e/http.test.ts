/**
 * The HTTP surface of the Node server (docs/PROTOCOL.md §2-3), ping/pong, session end, and the
 * start-up configuration.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { PROVIDERS } from '../../src/providers/registry.ts';
import { startNodeServer } from '../../src/runtime/node/server.ts';
import { createLogger } from '../../src/log.ts';
import { readCapture } from '../helpers/fixtures.ts';
import { TestClient, replayJvb, ID_A, TAG_A } from '../helpers/client.ts';
import { metricValue, startProxy, type Proxy } from '../helpers/proxy.ts';
import { until } from '../helpers/wait.ts';

let proxy: Proxy;
beforeAll(async () => {
  proxy = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5' });
});
afterAll(() => proxy.close());

const wsUrl = (query: string, path = '/transcribe') => `ws://127.0.0.1:${proxy.server.port}${path}?${query}`;

async function refusal(url: string): Promise<{ status: number; body: string }> {
  const error = await TestClient.connect(url).then(
    () => {
      throw new Error(`${url} was accepted`);
    },
    (e: { status: number; body: string }) => e,
  );
  return { status: error.status, body: error.body };
}

describe('HTTP', () => {
  it('GET /health answers small JSON without touching a provider', async () => {
    const before = proxy.fake.connections.length;
    const res = await fetch(proxy.url('/health'));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', runtime: 'node', providers: ['openai', 'local'] });
    expect(proxy.fake.connections.length).toBe(before);
  });

  it('GET /metrics is Prometheus text', async () => {
    const res = await fetch(proxy.url('/metrics'));
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    for (const name of ['transcriber_sessions', 'transcriber_participants', 'transcriber_media_frames_total', 'transcriber_final_latency_seconds']) {
      expect(text).toContain(`# TYPE ${name} `);
    }
  });

  it('answers 426 to a plain GET of /transcribe and 404 elsewhere', async () => {
    const plain = await fetch(proxy.url('/transcribe'));
    expect(plain.status).toBe(426);
    expect(await plain.text()).toContain('WebSocket');
    expect((await fetch(proxy.url('/nope'))).status).toBe(404);
    expect(await refusal(wsUrl('sendBack=true', '/elsewhere'))).toMatchObject({ status: 404, body: expect.stringContaining('/transcribe') });
  });

  it('accepts /transcribe under any prefix', async () => {
    const client = await TestClient.connect(wsUrl('sendBack=true&sessionId=prefixed', '/some/mount/transcribe'));
    await client.waitFor(() => client.messages.length > 0, 'info');
    expect(client.messages[0]).toMatchObject({ event: 'info', sessionId: 'prefixed' });
    await client.close();
  });

  it.each([
    ['sessionId=x', 'no output: set sendBack=true (and sendBackInterim=true for interims) or useDispatcher=true'],
    ['sessionId=x&sendBack=maybe', 'sendBack must be true or false (or 1, 0, yes, no, on, off), got "maybe"'],
    ['sendBack=true&transcribe=false', 'transcribe must be "true"'],
    ['sendBack=true&provider=whisper', 'provider "whisper" is unknown; known providers: openai, deepgram, gemini, vosk, local'],
    ['sendBack=true&provider=gemini', 'provider "gemini" is not configured: set GEMINI_API_KEY (configured: openai, local)'],
    ['sendBack=true&encoding=mp3', 'encoding must be opus or ogg-opus'],
    ['sendBack=true&lang=english!', 'lang must be'],
    ['sendBack=true&sessionId=' + 'x'.repeat(300), 'sessionId must be'],
    ['sessionId=x&useDispatcher=true', 'useDispatcher=true but this server has no dispatcher configured'],
  ])('refuses %s before the upgrade with a one-line 400', async (query, reason) => {
    const { status, body } = await refusal(wsUrl(query));
    expect(status).toBe(400);
    expect(body).toContain(reason);
    expect(body).not.toContain('\n');
  });

  it('answers 503 naming the variable to set when no provider is configured (the local one switched off)', async () => {
    const bare = await startNodeServer({ env: { PORT: '0', HOST: '127.0.0.1', LOCAL_PROVIDER: 'false' }, log: createLogger('error', () => {}) });
    try {
      const health = await fetch(`http://127.0.0.1:${bare.port}/health`);
      expect(health.status).toBe(503);
      const { status, body } = await refusal(`ws://127.0.0.1:${bare.port}/transcribe?sendBack=true`);
      expect(status).toBe(503);
      expect(body).toContain('OPENAI_API_KEY');
      expect(body).toContain('LOCAL_PROVIDER=true');
    } finally {
      await bare.close();
    }
  });
});

describe('messages', () => {
  it('echoes ping ids of any JSON type, and omits an absent one', async () => {
    const client = await proxy.connect();
    const ids = [1, 'abc', { n: 1 }, null, [1, 2]];
    for (const id of ids) client.send({ event: 'ping', id });
    client.send({ event: 'ping' });
    await client.waitFor(() => client.messages.filter((m) => m.event === 'pong').length === ids.length + 1, 'pongs');
    expect(client.messages.filter((m) => m.event === 'pong')).toEqual([...ids.map((id) => ({ event: 'pong', id })), { event: 'pong' }]);
    await client.close();
  });

  it('accepts numbers as strings or numbers, and creates a stream for media of an unknown tag', async () => {
    const capture = readCapture().filter((r) => r.tag === TAG_A && r.event === 'media').slice(0, 151);
    const client = await proxy.connect({ sessionId: 'numeric' });
    // No start event; integer chunk and timestamp, as test clients send them.
    await replayJvb(client, {
      pace: 'fast',
      records: capture,
      map: (r) => {
        const frame = JSON.parse(r.data) as { media: Record<string, unknown> };
        frame.media.chunk = Number(frame.media.chunk);
        frame.media.timestamp = Number(frame.media.timestamp);
        return JSON.stringify(frame);
      },
    });
    await client.waitFor(() => client.finals(TAG_A).length > 0, 'a final');
    expect(client.finals(TAG_A)[0]!.participant).toEqual({ id: ID_A, tag: TAG_A });
    await client.close();
  });
});

describe('session end', () => {
  it('closes every provider stream and frees every decoder; no timer or socket outlives it', async () => {
    const local = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5', PROVIDER_QUEUE_MS: '60000' });
    try {
      // Baseline: the server, the fake and their listening sockets, with no session.
      const resources = () => process.getActiveResourcesInfo().filter((r) => r !== 'FSReqPromise');
      const count = (list: string[]) => list.reduce<Record<string, number>>((m, r) => ((m[r] = (m[r] ?? 0) + 1), m), {});
      await new Promise((r) => setTimeout(r, 50));
      const baseline = count(resources());

      const client = await local.connect({ sessionId: 'ending' });
      await replayJvb(client, { pace: 'fast', records: readCapture() });
      await local.fake.waitFor(() => local.fake.connections.length === 2, 'two provider streams');
      expect(metricValue(await local.metrics(), 'transcriber_participants')).toBe(2);
      expect(metricValue(await local.metrics(), 'transcriber_opus_decoders')).toBe(2);
      // The measure can see a session: its client and provider sockets.
      expect(count(resources()).TCPSocketWrap ?? 0).toBeGreaterThan(baseline.TCPSocketWrap ?? 0);

      await client.close();
      await local.fake.waitFor(() => local.fake.connections.every((c) => c.closedWith !== undefined), 'provider streams closed');
      expect(local.fake.connections.map((c) => c.closedWith!.by)).toEqual(['client', 'client']);
      await until(async () => metricValue(await local.metrics(), 'transcriber_sessions') === 0, 'the session to end');
      expect(metricValue(await local.metrics(), 'transcriber_participants')).toBe(0);
      expect(local.logs.some((l) => l.msg === 'session closed' && l.session === 'ending')).toBe(true);
      expect(metricValue(await local.metrics(), 'transcriber_opus_decoders')).toBe(0);
      await until(() => {
        const now = count(resources());
        return Object.keys({ ...now, ...baseline }).every((k) => (now[k] ?? 0) <= (baseline[k] ?? 0));
      }, `resources back to the baseline ${JSON.stringify(baseline)}`);
    } finally {
      await local.close();
    }
  });
});

describe('configuration', () => {
  it('lists every bad variable at once', () => {
    const result = loadConfig(
      {
        PORT: 'eighty',
        LOG_LEVEL: 'loud',
        FORCE_COMMIT_TIMEOUT: '-1',
        USE_DISPATCHER: 'maybe',
        OPENAI_API_KEY: 'sk-x',
        OPENAI_BASE_URL: 'ftp://example.com',
        OPENAI_TURN_DETECTION: '{not json',
        PROVIDERS_PRIORITY: 'openai,nonesuch',
        DRAIN_TIMEOUT_MS: '-5',
        RESUME_GRACE_MS: 'soon',
      },
      PROVIDERS,
    );
    expect(result.ok).toBe(false);
    const errors = result.ok ? [] : result.errors;
    for (const name of [
      'PORT',
      'LOG_LEVEL',
      'FORCE_COMMIT_TIMEOUT',
      'USE_DISPATCHER',
      'OPENAI_BASE_URL',
      'OPENAI_TURN_DETECTION',
      'PROVIDERS_PRIORITY',
      'DRAIN_TIMEOUT_MS',
      'RESUME_GRACE_MS',
    ]) {
      expect(errors.some((e) => e.startsWith(name)), `${name} in ${JSON.stringify(errors)}`).toBe(true);
    }
    expect(JSON.stringify(errors)).not.toContain('sk-x');
  });

  it('has the documented defaults', () => {
    const result = loadConfig({ OPENAI_API_KEY: 'sk-x' }, PROVIDERS);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      forceCommitMs: 2000,
      useDispatcher: false,
      maxMessageBytes: 262144,
      drainTimeoutMs: 10_000,
      resumeGraceMs: 15_000,
    });
    expect(result.config.providers.map((p) => p.name)).toEqual(['openai']);
  });

  it('maps an http OPENAI_BASE_URL (with a trailing slash) to ws, and passes the model and prompt', async () => {
    const local = await startProxy((fake) => ({
      OPENAI_BASE_URL: `${fake.baseUrl.replace('ws://', 'http://')}/`,
      OPENAI_MODEL: 'gpt-4o-mini-transcribe',
      OPENAI_TRANSCRIPTION_PROMPT: 'Jitsi, Videobridge',
    }));
    try {
      const client = await local.connect({ lang: 'en' });
      await replayJvb(client, { pace: 'fast', records: readCapture().slice(0, 20) });
      await local.fake.waitFor(() => local.fake.connections[0]?.sessionUpdates.length === 1, 'session.update');
      expect(local.fake.connections[0]!.url).toBe('/v1/realtime?intent=transcription');
      expect(local.fake.connections[0]!.sessionUpdates[0]).toMatchObject({
        audio: { input: { transcription: { model: 'gpt-4o-mini-transcribe', language: 'en', prompt: 'Jitsi, Videobridge' } } },
      });
    } finally {
      await local.close();
    }
  });
});
