/**
 * What every provider shares (src/providers/provider.ts): switched on by its key variable,
 * its settings validated with every error listed, handshake refusals classified the same way
 * for all, and the key masked in every error a connection raises. Driven through the real
 * OpenAI and Deepgram providers against their real-protocol fakes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { deepgram } from '../../src/providers/deepgram.ts';
import { openai } from '../../src/providers/openai.ts';
import { ProviderError, handshakeFailure, type ConnectionListener } from '../../src/providers/provider.ts';
import { ConnectError } from '../../src/net.ts';
import { nodeBase64 } from '../../src/runtime/node/base64.ts';
import { nodeConnector } from '../../src/runtime/node/connector.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { ManualClock } from '../helpers/clock.ts';

let fake: FakeOpenAI | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

const listener: ConnectionListener = { transcript: () => undefined, error: () => undefined, closed: () => undefined, expiring: () => undefined };
const deps = () => ({ connector: nodeConnector, base64: nodeBase64, timers: new ManualClock() });

describe('defineProvider', () => {
  it('is off without its key (empty counts as unset), and names the key variable', () => {
    expect(openai.keyVariable).toBe('OPENAI_API_KEY');
    expect(deepgram.name).toBe('deepgram');
    expect(openai.load({})).toEqual({ errors: [] });
    expect(openai.load({ OPENAI_API_KEY: '' })).toEqual({ errors: [] });
    expect(openai.load({ DEEPGRAM_API_KEY: 'k' })).toEqual({ errors: [] });
  });

  it('lists every bad setting and builds nothing when one is bad', () => {
    const loaded = deepgram.load({ DEEPGRAM_API_KEY: 'k', DEEPGRAM_ENCODING: 'mp3', DEEPGRAM_SAMPLE_RATE: '8000' });
    expect(loaded.create).toBeUndefined();
    expect(loaded.errors).toEqual([
      'DEEPGRAM_ENCODING: must be opus (Opus passed through) or linear16 (decoded PCM)',
      'DEEPGRAM_SAMPLE_RATE: must be 16000 or 24000',
    ]);
  });

  it('builds the provider when its settings are good', () => {
    const loaded = openai.load({ OPENAI_API_KEY: 'k' });
    expect(loaded.errors).toEqual([]);
    expect(loaded.create!(deps()).name).toBe('openai');
  });

  it('masks the key in whatever error a connection raises, a server quoting it included', async () => {
    fake = await FakeOpenAI.start({ apiKey: 'sk-proj-supersecretkey0123456789' });
    fake.faults.refuseHandshake = 401;
    fake.faults.echoKey = true;
    const provider = openai.load({ OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl }).create!(deps());
    const err = (await provider.connect({ format: { kind: 'pcm16', sampleRate: 24000 }, log: createLogger('error') }, listener).catch((e: unknown) => e)) as ProviderError;
    expect(err).toBeInstanceOf(ProviderError);
    expect(err.kind).toBe('auth');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('HTTP 401');
    expect(err.message).not.toContain('supersecret');
  });
});

describe('handshakeFailure', () => {
  it('classifies a refusal by its status, and no answer as unreachable', () => {
    const refused = (status?: number) => handshakeFailure(new ConnectError('refused', status));
    expect(refused(401)).toEqual({ kind: 'auth', retryable: false });
    expect(refused(403)).toEqual({ kind: 'auth', retryable: false });
    expect(refused(429)).toEqual({ kind: 'rate_limited', retryable: true });
    expect(refused(400)).toEqual({ kind: 'handshake', retryable: false });
    expect(refused(404)).toEqual({ kind: 'handshake', retryable: true });
    expect(refused(503)).toEqual({ kind: 'handshake', retryable: true });
    expect(refused(undefined)).toEqual({ kind: 'unreachable', retryable: true });
    expect(handshakeFailure(new Error('odd'))).toEqual({ kind: 'handshake', retryable: true });
  });
});
