import type { SinkFactory, TranscriptSink } from '../session/ports.ts';
import { withDeadline, type Timers } from '../util/timers.ts';

export interface TrackedSinks {
  /** The factory for `AppDeps.sinks`, whose sinks are counted until their `close` settles. */
  factory: SinkFactory;
  /** Resolves once every sink made so far has closed, or after `timeoutMs`. */
  settled(timeoutMs: number): Promise<void>;
}

/**
 * Counts the live sinks of a factory, so that a shutdown can wait for their drains (the
 * dispatcher's queue) before the process exits, instead of dropping what they hold.
 */
export function trackSinks(make: SinkFactory, timers: Timers): TrackedSinks {
  const live = new Set<TranscriptSink>();
  const waiters = new Set<() => void>();
  const release = (sink: TranscriptSink) => {
    live.delete(sink);
    if (live.size === 0) for (const wake of [...waiters]) wake();
  };
  return {
    factory: (session) =>
      make(session).map((sink) => {
        const tracked: TranscriptSink = {
          outlivesClient: sink.outlivesClient,
          deliver: (result) => sink.deliver(result),
          usage: (report) => sink.usage?.(report),
          close: () => sink.close().finally(() => release(tracked)),
        };
        live.add(tracked);
        return tracked;
      }),
    async settled(timeoutMs) {
      if (live.size === 0) return;
      let wake = () => {};
      await withDeadline(new Promise<void>((resolve) => waiters.add((wake = resolve))), timeoutMs, timers);
      waiters.delete(wake);
    },
  };
}
