/**
 * The real Node server (in this process, on an ephemeral port) in front of the fake
 * OpenAI Realtime server, with its log lines captured for assertions.
 */
import { createLogger, type LogLevel } from '../../src/log.ts';
import { startNodeServer, type NodeServer } from '../../src/runtime/node/server.ts';
import { FakeOpenAI, type FakeOpenAIOptions } from '../fakes/openai-realtime.ts';
import { TestClient } from './client.ts';

export interface LogLine {
  level: LogLevel;
  msg: string;
  [field: string]: unknown;
}

export interface Proxy {
  fake: FakeOpenAI;
  server: NodeServer;
  logs: LogLine[];
  /** Opens /transcribe with these query parameters (sendBack=true unless given). */
  connect(params?: Record<string, string>): Promise<TestClient>;
  url(path: string): string;
  metrics(): Promise<string>;
  close(): Promise<void>;
}

export async function startProxy(
  env: Record<string, string> | ((fake: FakeOpenAI) => Record<string, string>) = {},
  fakeOptions: FakeOpenAIOptions = {},
): Promise<Proxy> {
  const fake = await FakeOpenAI.start(fakeOptions);
  const logs: LogLine[] = [];
  const log = createLogger('debug', (_level, line) => {
    logs.push(JSON.parse(line) as LogLine);
  });
  const server = await startNodeServer({
    env: { PORT: '0', HOST: '127.0.0.1', OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, ...(typeof env === 'function' ? env(fake) : env) },
    log,
  });
  const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;
  const clients: TestClient[] = [];
  return {
    fake,
    server,
    logs,
    url,
    async connect(params = {}) {
      const query = new URLSearchParams({ sessionId: `s-${Math.random().toString(36).slice(2, 8)}`, sendBack: 'true', ...params });
      const client = await TestClient.connect(`ws://127.0.0.1:${server.port}/transcribe?${query}`);
      clients.push(client);
      return client;
    },
    metrics: () => fetch(url('/metrics')).then((r) => r.text()),
    async close() {
      await Promise.all(clients.map((c) => c.close()));
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
