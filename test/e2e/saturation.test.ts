/**
 * A saturated event loop (MAX_EVENT_LOOP_LAG_MS, MAX_EVENT_LOOP_UTILIZATION): new sessions are refused with a clear 503
 * rather than left to stall, /health still answers and reports the lag, and the limit and the
 * refusals are in /metrics. The test blocks the loop it shares with the server (in-process),
 * as media would: no wall-clock bound is asserted, only what the client is answered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TAG_B } from '../helpers/client.ts';
import { packetsByTag } from '../helpers/fixtures.ts';
import { metricValue, startProxy, type Proxy } from '../helpers/proxy.ts';

/** Keeps the event loop busy for `ms` at once: one stall, as a garbage collection would. */
function block(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy
  }
}

/**
 * Keeps the event loop busy for `ms` in turns of `turnMs`, with only a timer's turn between
 * them: 300 ms turns make every look of the lag probe (one per 100 ms) late, as media
 * saturating the loop would; 90 ms turns keep it ~90 % busy without falling behind.
 */
async function busyFor(ms: number, turnMs: number): Promise<void> {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    block(turnMs);
    await new Promise((r) => setTimeout(r, 0));
  }
}

/**
 * `busyFor`, then `then()` while the loop stays that busy until it settles: the probe's
 * window must not see an idle loop while the request is on its way (on a slow machine that
 * takes more than one look).
 */
async function whileBusy<T>(ms: number, turnMs: number, then: () => Promise<T>): Promise<T> {
  await busyFor(ms, turnMs);
  let settled = false;
  const result = then().finally(() => (settled = true));
  while (!settled) {
    block(turnMs);
    await new Promise((r) => setTimeout(r, 0));
  }
  return result;
}

const refusal = (attempt: Promise<unknown>) =>
  attempt.then(
    () => undefined,
    (e: { status?: number; body?: string }) => e,
  );

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
    const refused = await whileBusy(1_000, 300, () => refusal(proxy.connect({ sessionId: 'late' })));
    expect(refused).toMatchObject({ status: 503, body: expect.stringContaining('MAX_EVENT_LOOP_LAG_MS') });
    expect(refused?.body).toMatch(/^server saturated: its event loop lags \d+ ms, over 100/);
    expect(metricValue(await proxy.metrics(), 'transcriber_refused_total', { reason: 'saturated' })).toBe(1);

    const health = await whileBusy(1_000, 300, () => fetch(proxy.url('/health')));
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

describe('a busy event loop (MAX_EVENT_LOOP_UTILIZATION, before it falls behind)', () => {
  let proxy: Proxy;
  beforeAll(async () => {
    // A lag limit the 90 ms turns never reach: only the busy fraction can refuse.
    proxy = await startProxy({ MAX_EVENT_LOOP_LAG_MS: '1000', MAX_EVENT_LOOP_UTILIZATION: '0.75' });
  });
  afterAll(() => proxy.close());

  it('refuses a new session (503) and a new participant’s stream (error, counted), both starting once the load falls', async () => {
    const live = await proxy.connect({ sessionId: 'busy-live' });
    await live.waitFor(() => live.messages.some((m) => m.event === 'info'), 'info');
    const metrics = await proxy.metrics();
    expect(metricValue(metrics, 'transcriber_event_loop_utilization_limit')).toBe(0.75);

    const refused = await whileBusy(1_000, 90, () => refusal(proxy.connect({ sessionId: 'busy-late' })));
    expect(refused).toMatchObject({ status: 503 });
    expect(refused?.body).toMatch(/^server saturated: its event loop is \d+ % busy, at or over 75 % \(MAX_EVENT_LOOP_UTILIZATION\)/);

    // A participant joining the live session while the loop is busy: its stream alone is refused.
    const packet = Buffer.from(packetsByTag().get(TAG_B)![0]!).toString('base64');
    const media = (chunk: number) => ({ event: 'media', media: { tag: TAG_B, chunk, timestamp: chunk * 960, payload: packet } });
    await whileBusy(1_000, 90, () => {
      live.send({ event: 'start', start: { tag: TAG_B, mediaFormat: { encoding: 'opus', sampleRate: 48000, channels: 2 } } });
      live.send(media(1));
      return live.waitFor(() => live.messages.some((m) => m.event === 'error' && m.code === 'server_saturated'), 'the stream refused');
    });
    const error = live.messages.find((m) => m.event === 'error' && m.code === 'server_saturated') as unknown as { message: string; tag: string };
    expect(error.tag).toBe(TAG_B);
    expect(error.message).toMatch(/MAX_EVENT_LOOP_UTILIZATION\); this stream's audio is refused until the load falls$/);
    const after = await proxy.metrics();
    expect(metricValue(after, 'transcriber_refused_total', { reason: 'saturated' })).toBe(2);
    expect(proxy.fake.connections).toHaveLength(0);

    // Idle again (the probe's window is half a second): the stream starts at its next frame, and sessions open.
    await new Promise((r) => setTimeout(r, 1_000));
    for (let chunk = 2; chunk < 30; chunk++) live.send(media(chunk));
    await proxy.fake.waitFor(() => proxy.fake.connections.some((c) => c.appends > 0), 'the stream at the provider');
    const later = await proxy.connect({ sessionId: 'busy-later' });
    await later.waitFor(() => later.messages.some((m) => m.event === 'info'), 'info');
    expect(live.closed).toBeUndefined();
    await Promise.all([live.close(), later.close()]);
  });
});
