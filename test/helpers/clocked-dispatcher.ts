/**
 * A session's dispatcher sink as production builds it (webSocketDispatcherSinks: the
 * DispatcherSink over the WebSocket transport), on a manual clock, reaching the fake
 * dispatcher over real WebSockets through a recording connector; its log lines captured.
 */
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import type { TranscriptionResult } from '../../src/protocol/outbound.ts';
import type { DispatcherConfig } from '../../src/config.ts';
import { webSocketDispatcherSinks } from '../../src/sinks/dispatcher/websocket.ts';
import { FakeDispatcher } from '../fakes/dispatcher.ts';
import { ManualClock } from './clock.ts';
import type { LogLine } from './provider-server.ts';
import { RecordingConnector } from './recording-connector.ts';

export interface ClockedDispatcher {
  clock: ManualClock;
  fake: FakeDispatcher;
  connector: RecordingConnector;
  sink: ReturnType<ReturnType<typeof webSocketDispatcherSinks>>[number];
  metrics: ReturnType<typeof createMetrics>;
  logs: LogLine[];
  /** Delivers final number `n` (messageId `m-<n>`). */
  deliver(n: number): void;
  /** Log lines with this message. */
  lines(msg: string): LogLine[];
  close(): Promise<void>;
}

export function final(n: number, text = `final number ${n}`): TranscriptionResult {
  return {
    event: 'transcription-result',
    type: 'transcription-result',
    transcript: [{ text }],
    is_interim: false,
    message_id: `m-${n}`,
    participant: { id: 'abc123', tag: 'abc123-a0' },
    timestamp: 1_700_000_000_000 + n,
  };
}

export async function startClockedDispatcher(config: Partial<DispatcherConfig> = {}, sessionId = 'conf-1'): Promise<ClockedDispatcher> {
  const clock = new ManualClock();
  const fake = await FakeDispatcher.start();
  const connector = new RecordingConnector(clock);
  const logs: LogLine[] = [];
  const log = createLogger('debug', (_level, line) => void logs.push(JSON.parse(line) as LogLine));
  const metrics = createMetrics();
  const sinks = webSocketDispatcherSinks({
    config: {
      wsUrl: fake.url(),
      headers: {},
      reconnectIntervalMs: 0,
      connectTimeoutMs: 10_000,
      queueLimit: 1_000,
      queueMaxBytes: 1 << 20,
      drainTimeoutMs: 5_000,
      ...config,
    },
    connector,
    log,
    metrics,
    timers: clock,
  })({ sessionId, useDispatcher: true });
  const sink = sinks[0]!;
  return {
    clock,
    fake,
    connector,
    sink,
    metrics,
    logs,
    deliver: (n) => sink.deliver(final(n)),
    lines: (msg) => logs.filter((l) => l.msg === msg),
    close: () => fake.close(),
  };
}
