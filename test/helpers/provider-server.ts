/**
 * The real Node server (in this process, on an ephemeral port) with whatever provider
 * environment a test gives it, its log lines captured for assertions.
 */
import { createLogger, type LogLevel } from '../../src/log.ts';
import { startNodeServer, type NodeServer } from '../../src/runtime/node/server.ts';
import { TestClient, type TranscriptionMessage } from './client.ts';
import type { JvbRecord } from './fixtures.ts';

export interface LogLine {
  level: LogLevel;
  msg: string;
  [field: string]: unknown;
}

export interface ProviderServer {
  server: NodeServer;
  logs: LogLine[];
  /** Opens /transcribe with these query parameters (sendBack=true unless given). */
  connect(params?: Record<string, string>): Promise<TestClient>;
  url(path: string): string;
  metrics(): Promise<string>;
  close(): Promise<void>;
}

export async function startProviderServer(env: Record<string, string>): Promise<ProviderServer> {
  const logs: LogLine[] = [];
  const log = createLogger('debug', (_level, line) => {
    logs.push(JSON.parse(line) as LogLine);
  });
  // Sessions end when their client closes unless a test asks for resumption: these servers share
  // one process (and its Opus codec), where a session left waiting for its client would hold
  // its decoders and provider sockets into the next test.
  // The silence gate is off unless a test asks for it: these suites assert that every sample of
  // their recordings reaches the provider (test/e2e/silence.test.ts runs the default, gate on).
  // So is the saturation limit: the tests block the loop they share with the server when they
  // replay a capture at full speed, which must not refuse their next session
  // (test/e2e/saturation.test.ts sets it).
  const server = await startNodeServer({
    env: { PORT: '0', HOST: '127.0.0.1', RESUME_GRACE_MS: '0', SILENCE_GATE: 'false', MAX_EVENT_LOOP_LAG_MS: '0', MAX_EVENT_LOOP_UTILIZATION: '0', ...env },
    log,
  });
  const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;
  const clients: TestClient[] = [];
  return {
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
    },
  };
}

/** The transcription results for `tag`, in the order the client received them. */
export function resultsFor(client: TestClient, tag: string): TranscriptionMessage[] {
  return client.results().filter((m) => m.participant.tag === tag);
}

/** The capture's records for one tag only (its `start` and its `media`). */
export function onlyTag(records: JvbRecord[], tag: string): JvbRecord[] {
  return records.filter((r) => r.tag === tag);
}

/** `stop` events for the given tags: finalise and release their provider streams. */
export function stopTags(client: TestClient, ...tags: string[]): void {
  for (const tag of tags) client.send({ event: 'stop', stop: { tag } });
}
