/**
 * Provider choice with Deepgram and Gemini configured: `?provider=` refused before the
 * upgrade when not configured, the default from PROVIDERS_PRIORITY, what `info` and
 * /health list, and their environment variables validated at start-up.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config.ts';
import { startNodeServer } from '../../src/runtime/node/server.ts';
import { createLogger } from '../../src/log.ts';
import { TestClient } from '../helpers/client.ts';
import { startProviderServer, type ProviderServer } from '../helpers/provider-server.ts';

// Never contacted: no audio is sent in these tests.
const KEYS = {
  DEEPGRAM_API_KEY: 'dg-key',
  DEEPGRAM_BASE_URL: 'ws://127.0.0.1:9/v1',
  GEMINI_API_KEY: 'gm-key',
  GEMINI_BASE_URL: 'ws://127.0.0.1:9',
};

let proxy: ProviderServer | undefined;
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

const wsUrl = (p: ProviderServer, query: string) => `ws://127.0.0.1:${p.server.port}/transcribe?${query}`;

async function info(p: ProviderServer, query: string): Promise<Record<string, unknown>> {
  const client = await TestClient.connect(wsUrl(p, query));
  await client.waitFor(() => client.messages.length > 0, 'info');
  await client.close();
  return client.messages[0]!;
}

async function refusal(p: ProviderServer, query: string): Promise<{ status?: number; body?: string }> {
  return TestClient.connect(wsUrl(p, query)).then(
    () => ({}),
    (err: { status?: number; body?: string }) => ({ status: err.status, body: err.body }),
  );
}

describe('provider choice', () => {
  it('defaults to the first configured provider in PROVIDERS_PRIORITY and lists the configured ones', async () => {
    proxy = await startProviderServer({ ...KEYS, PROVIDERS_PRIORITY: 'gemini,deepgram,openai' });
    expect(await info(proxy, 'sendBack=true')).toMatchObject({ event: 'info', provider: 'gemini', providersAvailable: ['gemini', 'deepgram', 'local'] });
    expect(await info(proxy, 'sendBack=true&provider=deepgram')).toMatchObject({ provider: 'deepgram', providersAvailable: ['gemini', 'deepgram', 'local'] });
    const health = (await fetch(proxy.url('/health')).then((r) => r.json())) as { providers: string[] };
    expect(health.providers).toEqual(['gemini', 'deepgram', 'local']);
  });

  it('follows the registry order (openai, deepgram, gemini, vosk) without PROVIDERS_PRIORITY', async () => {
    proxy = await startProviderServer(KEYS);
    expect(await info(proxy, 'sendBack=true')).toMatchObject({ provider: 'deepgram', providersAvailable: ['deepgram', 'gemini', 'local'] });
  });

  it('refuses an unknown or unconfigured provider with 400 before the upgrade, naming the known or the configured ones', async () => {
    proxy = await startProviderServer(KEYS);
    expect(await refusal(proxy, 'sendBack=true&provider=openai')).toEqual({
      status: 400,
      body: 'provider "openai" is not configured: set OPENAI_API_KEY (configured: deepgram, gemini, local)',
    });
    expect(await refusal(proxy, 'sendBack=true&provider=whisper')).toEqual({
      status: 400,
      body: 'provider "whisper" is unknown; known providers: openai, deepgram, gemini, vosk, local',
    });
  });
});

describe('environment', () => {
  it('lists every bad Deepgram and Gemini variable at start-up', async () => {
    const error = await startNodeServer({
      env: {
        PORT: '0',
        ...KEYS,
        DEEPGRAM_ENCODING: 'mp3',
        DEEPGRAM_SAMPLE_RATE: '44100',
        DEEPGRAM_KEEPALIVE_MS: '20000',
        DEEPGRAM_LANGUAGE: 'english please',
        GEMINI_BASE_URL: 'ftp://example.com',
      },
      log: createLogger('error', () => undefined),
    }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(ConfigError);
    const errors = (error as ConfigError).errors.join('\n');
    expect(errors).toContain('DEEPGRAM_ENCODING: must be opus (Opus passed through) or linear16 (decoded PCM)');
    expect(errors).toContain('DEEPGRAM_SAMPLE_RATE: must be 16000 or 24000');
    expect(errors).toContain('DEEPGRAM_KEEPALIVE_MS: must be at most 8000');
    expect(errors).toContain('DEEPGRAM_LANGUAGE: must be a language code');
    expect(errors).toContain('GEMINI_BASE_URL: must be a URL starting with ws:// or wss:// or http:// or https://');
    // Keys are not echoed in configuration errors.
    expect(errors).not.toContain('dg-key');
    expect(errors).not.toContain('gm-key');
  });
});
