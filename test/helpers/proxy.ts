/**
 * The real Node server (in this process, on an ephemeral port) in front of the fake
 * OpenAI Realtime server, with its log lines captured for assertions.
 */
import { FakeOpenAI, type FakeOpenAIOptions } from '../fakes/openai-realtime.ts';
import { startProviderServer, type ProviderServer } from './provider-server.ts';

export type { LogLine } from './provider-server.ts';

export interface Proxy extends ProviderServer {
  fake: FakeOpenAI;
}

export async function startProxy(
  env: Record<string, string> | ((fake: FakeOpenAI) => Record<string, string>) = {},
  fakeOptions: FakeOpenAIOptions = {},
): Promise<Proxy> {
  const fake = await FakeOpenAI.start(fakeOptions);
  const server = await startProviderServer({
    OPENAI_API_KEY: fake.apiKey,
    OPENAI_BASE_URL: fake.baseUrl,
    ...(typeof env === 'function' ? env(fake) : env),
  });
  return {
    ...server,
    fake,
    async close() {
      await server.close();
      await fake.close();
    },
  };
}

/** A counter's value in Prometheus text, summed over the series whose labels include `labels`. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const match = /^([a-z_:]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const series = match[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => series.includes(`${k}="${v}"`))) sum += Number(match[3]);
  }
  return sum;
}
