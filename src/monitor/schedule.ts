/**
 * The in-process synthetic monitor (MONITOR_INTERVAL_S): the server probes itself through
 * its own /transcribe every interval, like `npm run monitor` from outside, and exposes the
 * outcome as transcriber_monitor_* metrics for alerting (e.g. time() -
 * transcriber_monitor_last_success_timestamp_seconds > 3 * interval).
 */
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { SocketConnector } from '../net.ts';
import type { Timers } from '../util/timers.ts';
import type { TimedFrame } from './frames.ts';
import { probe } from './probe.ts';

export interface MonitorScheduleOptions {
  /** The proxy's own /transcribe URL (with sessionId and any query the probe needs). */
  url: string;
  frames: readonly TimedFrame[];
  intervalMs: number;
  timeoutMs: number;
  expect?: readonly string[];
  headers?: Record<string, string>;
  connector: SocketConnector;
  timers: Timers;
  log: Logger;
  metrics: Metrics;
}

/** Starts probing (the first probe after one interval); returns a stop that waits for a probe in flight. */
export function startMonitor(o: MonitorScheduleOptions): () => Promise<void> {
  let running: Promise<void> | undefined;
  let stopped = false;
  const once = async () => {
    const result = await probe(o);
    const m = o.metrics;
    m.monitorProbes.inc({ result: result.ok ? 'ok' : result.stage });
    m.monitorState.lastDurationSeconds = result.ms / 1000;
    if (result.ok) {
      m.monitorState.lastSuccessSeconds = o.timers.now() / 1000;
      m.monitorState.up = 1;
      o.log.debug('monitor probe passed', { ms: result.ms });
    } else {
      m.monitorState.up = 0;
      o.log.warn('monitor probe failed', { stage: result.stage, reason: result.reason, ms: result.ms });
    }
  };
  const timer = o.timers.setInterval(() => {
    if (stopped || running) return;
    running = once()
      .catch((error: unknown) => o.log.error('monitor probe crashed', { error: error instanceof Error ? error : String(error) }))
      .finally(() => (running = undefined));
  }, o.intervalMs);
  return async () => {
    stopped = true;
    o.timers.clearInterval(timer);
    await running;
  };
}
