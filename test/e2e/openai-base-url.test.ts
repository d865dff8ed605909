/**
 * OPENAI_BASE_URL pointed at a self-hosted OpenAI-compatible realtime server: the path is
 * joined before the base's own query parameters, which reach the server (speaches reads its
 * transcription model from `model`), and transcription works through them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { realtimeUrl } from '../../src/providers/openai.ts';
import { TAG_B, replayJvb } from '../helpers/client.ts';
import { readCapture } from '../helpers/fixtures.ts';
import { onlyTag } from '../helpers/provider-server.ts';
import { startProxy, type Proxy } from '../helpers/proxy.ts';

let proxy: Proxy | undefined;
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

describe('OPENAI_BASE_URL', () => {
  it('joins /realtime to the path, keeps the base’s query parameters, and maps http(s) to ws(s)', () => {
    expect(realtimeUrl('wss://api.openai.com/v1')).toBe('wss://api.openai.com/v1/realtime?intent=transcription');
    expect(realtimeUrl('https://api.openai.com/v1/')).toBe('wss://api.openai.com/v1/realtime?intent=transcription');
    expect(realtimeUrl('http://speaches:8000/v1?model=Systran/faster-distil-whisper-small.en&language=en')).toBe(
      'ws://speaches:8000/v1/realtime?model=Systran%2Ffaster-distil-whisper-small.en&language=en&intent=transcription',
    );
    expect(realtimeUrl('ws://localhost:8000')).toBe('ws://localhost:8000/realtime?intent=transcription');
  });

  it('reaches a server at a base URL with query parameters, which it receives, and transcribes through it', async () => {
    proxy = await startProxy((fake) => ({
      OPENAI_BASE_URL: `${fake.baseUrl}/?model=Systran/faster-distil-whisper-small.en`,
      FORCE_COMMIT_TIMEOUT: '0.5',
      PROVIDER_QUEUE_MS: '60000',
    }));
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: onlyTag(readCapture(), TAG_B) });
    await client.waitFor(() => client.finals(TAG_B).length > 0, 'a final');
    const conn = proxy.fake.connections[0]!;
    const url = new URL(conn.url, 'http://fake');
    expect(url.pathname).toBe('/v1/realtime');
    expect(Object.fromEntries(url.searchParams)).toEqual({ model: 'Systran/faster-distil-whisper-small.en', intent: 'transcription' });
    // The fake holds OpenAI's rule (a `model` parameter asks OpenAI for a conversation session);
    // speaches reads it as the transcription model instead. Nothing else is amiss.
    expect(conn.violations).toEqual(['a model query parameter selects a conversation session']);
  });
});
