/**
 * A saturated event loop (MAX_EVENT_LOOP_LAG_MS): new sessions are refused with a clear 503
 * rather than left to stall, /health still answers and reports the lag, and the limit and the
 * refusals are in /metrics. The test blocks the loop it shares with the server (in-process),
 * as media would: no wall-clock bound is asserted, only what the client is answered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricValue, startProxy, type Proxy } from '../helpers/proxy.ts';

/** Keeps the event loop busy for `ms` at once: one stall, as a garbage collection would. */
function block(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy
  }
}

/**
 * Keeps the event loop busy for `ms`, as media would: 300 ms turns, with only a timer's turn
 * between them, so every look of the lag probe (one per 100 ms) comes late.
 */
async function saturate(ms: number): Promise<void> {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    block(300);
    await new Promise((r) => setTimeout(r, 0));
  }
}

describe('a saturated event loop', () => {
  let proxy: Proxy;
  beforeAll(async () => {
    proxy = await startProxy({ MAX_EVENT_LOOP_LAG_MS: '100' });
  });
  afterAll(() => proxy.close());

  it('refuses new sessions with 503 naming the setting, still answers /health, and counts it', async () => {
    // A live session: the lag is watched while sessions are open.
    const live = await proxy.connect({ sessionId: 'live' });
    await live.waitFor(() => live.messages.some((m) => m.event === 'info'), 'info');
    expect(metricValue(await proxy.metrics(), 'transcriber_event_loop_lag_limit_ms')).toBe(100);

    // One stall of 600 ms is not saturation: a session opening just after it is served.
    block(600);
    const afterStall = await proxy.connect({ sessionId: 'after-stall' });
    await afterStall.waitFor(() => afterStall.messages.some((m) => m.event === 'info'), 'info');

    // Every look ~200 ms late or more, for longer than the probe's half-second window: far over
    // the 100 ms limit (generous, so that a slow machine's own lag does not decide).
    await saturate(1_000);
    const refused = await proxy.connect({ sessionId: 'late' }).then(
      () => undefined,
      (e: { status?: number; body?: string }) => e,
    );
    expect(refused).toMatchObject({ status: 503, body: expect.stringContaining('MAX_EVENT_LOOP_LAG_MS') });
    expect(refused?.body).toMatch(/^server saturated: its event loop lags \d+ ms, over 100/);
    expect(metricValue(await proxy.metrics(), 'transcriber_refused_total', { reason: 'saturated' })).toBe(1);

    await saturate(1_000);
    const health = await fetch(proxy.url('/health'));
    expect(health.status).toBe(200);
    const body = (await health.json()) as { status: string; eventLoopLagMs: number };
    expect(body.status).toBe('ok');
    expect(body.eventLoopLagMs).toBeGreaterThan(100);

    // Once the loop has caught up (the probe's window is half a second), sessions open again.
    await new Promise((r) => setTimeout(r, 1_000));
    const later = await proxy.connect({ sessionId: 'later' });
    await later.waitFor(() => later.messages.some((m) => m.event === 'info'), 'info');
    expect(live.closed).toBeUndefined();
    await Promise.all([live.close(), afterStall.close(), later.close()]);
  });
});
