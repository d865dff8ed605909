/**
 * What /health learns of a provider from the sessions' own connection attempts: the real
 * OpenAI provider against the real-protocol fake, refused or unreachable, then accepted again.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { ProviderHealth } from '../../src/providers/health.ts';
import { openai } from '../../src/providers/openai.ts';
import type { ConnectionListener, Provider, ProviderError } from '../../src/providers/provider.ts';
import { nodeBase64 } from '../../src/runtime/node/base64.ts';
import { nodeConnector } from '../../src/runtime/node/connector.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { ManualClock } from '../helpers/clock.ts';

let fake: FakeOpenAI | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

const closedErrors: ProviderError[] = [];
const listener: ConnectionListener = {
  transcript: () => undefined,
  error: () => undefined,
  closed: (err) => void closedErrors.push(err),
  expiring: () => undefined,
};

function provider(baseUrl: string, key: string): Provider {
  return openai.load({ OPENAI_API_KEY: key, OPENAI_BASE_URL: baseUrl }).create!({ connector: nodeConnector, base64: nodeBase64, timers: new ManualClock() });
}

/** One connection attempt: the error it was refused with, or undefined once the provider accepted it (then closed). */
async function attempt(p: Provider): Promise<ProviderError | undefined> {
  try {
    const conn = await p.connect({ format: { kind: 'pcm16', sampleRate: 24000 }, log: createLogger('error') }, listener);
    conn.close();
    return undefined;
  } catch (err) {
    return err as ProviderError;
  }
}

describe('ProviderHealth', () => {
  it('presumes a provider nobody has tried usable', () => {
    expect(new ProviderHealth().problems(['openai', 'deepgram'])).toEqual([]);
  });

  it('a refused key blocks the provider until a connection is accepted again', async () => {
    fake = await FakeOpenAI.start();
    const health = new ProviderHealth();
    const watched = health.watch(provider(fake.baseUrl, fake.apiKey));
    expect(watched.name).toBe('openai');
    fake.faults.refuseHandshake = 401;
    const err = await attempt(watched);
    expect(err?.kind).toBe('auth');
    expect(health.problems(['openai'])).toEqual([`openai: the API key was refused (${err!.message})`]);
    expect(health.problems(['openai'])[0]).toContain('HTTP 401');
    fake.faults.refuseHandshake = undefined;
    expect(await attempt(watched)).toBeUndefined();
    expect(health.problems(['openai'])).toEqual([]);
  });

  it('a wrong key the service answers with an error event blocks it too', async () => {
    fake = await FakeOpenAI.start();
    const health = new ProviderHealth();
    const watched = health.watch(provider(fake.baseUrl, 'sk-wrong'));
    const err = await attempt(watched);
    expect(err?.kind).toBe('auth');
    expect(health.problems(['openai'])).toEqual([`openai: the API key was refused (${err!.message})`]);
  });

  it('a provider that does not answer is unreachable; rate limits and other refusals pass', async () => {
    fake = await FakeOpenAI.start();
    const health = new ProviderHealth();
    const watched = health.watch(provider(fake.baseUrl, fake.apiKey));
    fake.faults.refuseHandshake = 429;
    expect((await attempt(watched))?.kind).toBe('rate_limited');
    expect(health.problems(['openai'])).toEqual([]);
    fake.faults.refuseHandshake = 500;
    expect((await attempt(watched))?.kind).toBe('handshake');
    expect(health.problems(['openai'])).toEqual([]);
    const baseUrl = fake.baseUrl;
    await fake.close();
    fake = undefined;
    const gone = health.watch(provider(baseUrl, 'sk-any'));
    const err = await attempt(gone);
    expect(err?.kind).toBe('unreachable');
    expect(health.problems(['openai'])).toEqual([`openai: unreachable (${err!.message})`]);
  });

  it('is healthy while one of the names is usable, and lists every one when none is', async () => {
    fake = await FakeOpenAI.start();
    const health = new ProviderHealth();
    fake.faults.refuseHandshake = 403;
    const err = await attempt(health.watch(provider(fake.baseUrl, fake.apiKey)));
    expect(health.problems(['openai', 'deepgram'])).toEqual([]);
    expect(health.problems(['deepgram', 'openai'])).toEqual([]);
    expect(health.problems(['openai'])).toEqual([`openai: the API key was refused (${err!.message})`]);
  });
});
