/**
 * Bad input never ends anyone else's transcription: garbage is refused, logged with its
 * session and tag, counted, and both participants of the session (and another session)
 * still get their finals.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCapture, type JvbRecord } from '../helpers/fixtures.ts';
import { TAG_A, TAG_B, replayJvb, type TestClient } from '../helpers/client.ts';
import { metricValue, startProxy, type Proxy } from '../helpers/proxy.ts';

const capture = readCapture();
/** Garbage goes in before every EVERY-th frame: about 20 times over the capture. */
const EVERY = Math.max(1, Math.floor(capture.length / 20));
const FAST = { FORCE_COMMIT_TIMEOUT: '0.5', PROVIDER_QUEUE_MS: '60000' };

/** Frames a misbehaving media server might send, keyed by what the proxy should count. */
function garbage(tag: string, chunk: number): [reason: string, frame: string][] {
  const media = (payload: string, extra: object = {}) =>
    JSON.stringify({ event: 'media', media: { tag, chunk: String(chunk), timestamp: String(chunk * 960), payload, ...extra } });
  const noise = Buffer.from(Array.from({ length: 61 }, (_, i) => (i * 73 + 11) & 0xff)).toString('base64');
  return [
    ['invalid_json', '{"event":"media","media":'],
    ['invalid_json', 'hello'],
    ['bad_base64', media('!!!not base64!!!')],
    ['invalid_media', JSON.stringify({ event: 'media', media: { tag } })],
    ['too_large', media('A'.repeat(2 * 1024 * 1024))],
    ['invalid_start', JSON.stringify({ event: 'start', start: { tag: 'cccccccc-1', mediaFormat: { encoding: 'mp3' } } })],
    ['unknown_event', JSON.stringify({ event: 'dance', dance: { tag } })],
    // Not counted as an input error: corrupt Opus is a decode error.
    ['corrupt_opus', media(noise)],
  ];
}

describe('bad input in the middle of a replay', () => {
  let proxy: Proxy;
  let victim: TestClient;
  let bystander: TestClient;

  beforeAll(async () => {
    proxy = await startProxy(FAST);
    victim = await proxy.connect({ sessionId: 'victim' });
    bystander = await proxy.connect({ sessionId: 'bystander' });
    let injected = 0;
    const inject = (record: JvbRecord): string => {
      // Every EVERY-th frame, the garbage set for that frame's tag, just before it.
      if (record.event === 'media' && record.sequenceNumber % EVERY === 0) {
        for (const [, frame] of garbage(record.tag, record.chunk)) victim.send(frame);
        injected++;
      }
      return record.data;
    };
    await Promise.all([
      replayJvb(victim, { pace: 'fast', records: capture, map: inject }),
      replayJvb(bystander, { pace: 'fast', records: capture }),
    ]);
    expect(injected).toBeGreaterThan(10);
    // Frames are handled in order: once the pong is back, every frame before it was seen.
    victim.send({ event: 'ping', id: 'end' });
    await victim.waitFor(() => victim.messages.some((m) => m.event === 'pong'), 'pong');
    await victim.waitFor(() => victim.finals(TAG_A).length > 0 && victim.finals(TAG_B).length > 0, 'both participants\' finals');
    await bystander.waitFor(() => bystander.finals(TAG_A).length > 0 && bystander.finals(TAG_B).length > 0, 'the other session\'s finals');
  });

  afterAll(() => proxy.close());

  it('keeps the socket open and both participants transcribed', () => {
    expect(victim.closed).toBeUndefined();
    expect(victim.finals(TAG_A).length).toBeGreaterThan(0);
    expect(victim.finals(TAG_B).length).toBeGreaterThan(0);
  });

  it('counts every refusal by reason on /metrics', async () => {
    const text = await proxy.metrics();
    const injected = capture.filter((r) => r.event === 'media' && r.sequenceNumber % EVERY === 0).length;
    for (const reason of ['bad_base64', 'invalid_media', 'too_large', 'invalid_start', 'unknown_event']) {
      expect(metricValue(text, 'transcriber_input_errors_total', { reason }), reason).toBe(injected);
    }
    expect(metricValue(text, 'transcriber_input_errors_total', { reason: 'invalid_json' })).toBe(2 * injected);
    expect(metricValue(text, 'transcriber_decode_errors_total')).toBeGreaterThan(0);
  });

  it('logs each refusal with its session and tag', () => {
    const refusals = proxy.logs.filter((l) => l.msg === 'input refused');
    expect(refusals.length).toBeGreaterThan(0);
    expect(refusals.every((l) => l.session === 'victim')).toBe(true);
    const reasons = new Set(refusals.map((l) => l.reason));
    for (const reason of ['invalid_json', 'bad_base64', 'invalid_media', 'too_large', 'invalid_start']) expect(reasons).toContain(reason);
    for (const l of refusals.filter((r) => r.reason === 'bad_base64')) expect([TAG_A, TAG_B]).toContain(l.tag);
    // A garbage flood is throttled: the first few and then every power of ten.
    expect(refusals.filter((l) => l.reason === 'bad_base64').length).toBeLessThan(15);
  });

  it('answers the same garbage identically in a fresh session after the replay', async () => {
    const late = await proxy.connect({ sessionId: 'late' });
    for (const [, frame] of garbage(TAG_A, 1)) late.send(frame);
    late.send({ event: 'ping', id: 7 });
    await late.waitFor(() => late.messages.some((m) => m.event === 'pong'), 'pong');
    expect(late.messages.find((m) => m.event === 'pong')).toEqual({ event: 'pong', id: 7 });
    // Each frame answered with one error naming its reason, before the pong.
    expect(late.messages.filter((m) => m.event === 'error').map((m) => m.code)).toEqual(garbage(TAG_A, 1).map(([reason]) => reason));
    expect(late.closed).toBeUndefined();
  });
});
