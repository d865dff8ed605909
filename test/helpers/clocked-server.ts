/**
 * The Node server on a manual clock: startServer with Node's adapter, the injectable
 * `Timers` set to a ManualClock and the outbound connector recording each attempt. Clients,
 * providers and the dispatcher are real sockets on 127.0.0.1; only the product's timers
 * (idle commit, backoff, setup and drain deadlines) wait for the test.
 */
import { afterEach } from 'vitest';
import { createLogger } from '../../src/log.ts';
import type { Metrics } from '../../src/metrics.ts';
import { nodeAdapter } from '../../src/runtime/node/adapter.ts';
import { startServer } from '../../src/runtime/server.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TestClient } from './client.ts';
import { ManualClock } from './clock.ts';
import type { LogLine } from './provider-server.ts';
import { RecordingConnector } from './recording-connector.ts';

export interface ClockedServer {
  clock: ManualClock;
  connector: RecordingConnector;
  logs: LogLine[];
  metrics: Metrics;
  port: number;
  /** Opens /transcribe with these query parameters (sendBack=true and a fresh sessionId unless given). */
  connect(params?: Record<string, string>): Promise<TestClient>;
  close(): Promise<void>;
}

/**
 * These suites count frames at the provider on a manual clock: one message per frame
 * (batching would hold the last ones until the clock moves), every frame (no silence gate),
 * and no saturation limit (the clock does not measure the loop). test/e2e/silence.test.ts and
 * test/e2e/saturation.test.ts cover those.
 */
const FRAME_BY_FRAME = { PCM_BATCH_MS: '0', SILENCE_GATE: 'false', MAX_EVENT_LOOP_LAG_MS: '0', MAX_EVENT_LOOP_UTILIZATION: '0' };

export async function startClockedServer(env: Record<string, string>, clock = new ManualClock()): Promise<ClockedServer> {
  const logs: LogLine[] = [];
  const log = createLogger('debug', (_level, line) => void logs.push(JSON.parse(line) as LogLine));
  const connector = new RecordingConnector(clock);
  const server = await startServer({ ...nodeAdapter, connector }, { env: { PORT: '0', HOST: '127.0.0.1', ...FRAME_BY_FRAME, ...env }, log, timers: clock });
  const clients: TestClient[] = [];
  return {
    clock,
    connector,
    logs,
    metrics: server.metrics,
    port: server.port,
    async connect(params = {}) {
      const query = new URLSearchParams({ sessionId: `s-${Math.random().toString(36).slice(2, 8)}`, sendBack: 'true', ...params });
      const client = await TestClient.connect(`ws://127.0.0.1:${server.port}/transcribe?${query}`);
      clients.push(client);
      return client;
    },
    async close() {
      for (const c of clients) if (!c.closed) c.ws.terminate();
      await server.close();
    },
  };
}

/**
 * For a suite: each call starts a fake OpenAI (its turn detection off: the proxy's idle commit
 * decides) and a clocked server in front of it with `env`; every pair is closed after each test.
 */
export function clockedOpenAI(): (env?: Record<string, string>) => Promise<{ fake: FakeOpenAI; server: ClockedServer }> {
  const open: { fake: FakeOpenAI; server: ClockedServer }[] = [];
  afterEach(async () => {
    for (const { fake, server } of open.splice(0)) {
      await server.close();
      await fake.close();
    }
  });
  return async (env = {}) => {
    const fake = await FakeOpenAI.start();
    const started = await startClockedServer({ OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, OPENAI_TURN_DETECTION: 'null', ...env });
    // A test may close the server itself (a drain); closing it again after the test is a no-op.
    let closing: Promise<void> | undefined;
    const server: ClockedServer = { ...started, close: () => (closing ??= started.close()) };
    open.push({ fake, server });
    return { fake, server };
  };
}
