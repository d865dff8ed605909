/**
 * Usage accounting and the in-process monitor on every runtime: the `usage` request answered
 * with figures that reconcile with the audio the client sent and the PCM the fake OpenAI
 * received, with the defaults (PCM batching and the silence gate on) (Node, Deno, the Worker
 * transcribing in its isolate), and the MONITOR_INTERVAL_S probe passing through the server's
 * own port (Node and Deno: the Worker has no schedule). The probe streams samples/speech.ogg
 * in real time, so the wait is generous: two CPUs are shared by many test processes.
 */
import { describe, expect, it } from 'vitest';
import { replayJvb, TAG_A, TestClient } from '../helpers/client.ts';
import { readCapture } from '../helpers/fixtures.ts';
import { metricValue } from '../helpers/proxy.ts';
import { onlyTag } from '../helpers/provider-server.ts';
import { until } from '../helpers/wait.ts';
import { LAUNCHERS, appBehindFakeOpenAI } from './launchers.ts';

interface UsageMessage {
  event: 'usage';
  participants: { tag: string; provider: string; receivedSeconds: number; sentSeconds: number; finals: number }[];
}

describe.each(LAUNCHERS)('usage and the monitor on $runtime', ({ runtime, start }) => {
  const running = appBehindFakeOpenAI(start, {
    FORCE_COMMIT_TIMEOUT: '0.5',
    PROVIDER_QUEUE_MS: '60000',
    MONITOR_INTERVAL_S: '1',
    MONITOR_FILE: 'samples/speech.ogg',
  });

  it('answers a usage request with the seconds the provider received', async () => {
    const client = await TestClient.connect(`${running.app.origin.replace('http', 'ws')}/transcribe?sessionId=usage-conf&sendBack=true`);
    const from = running.fake.connections.length;
    const recordsA = onlyTag(readCapture(), TAG_A);
    const packetsA = recordsA.filter((r) => r.event === 'media').length;
    await replayJvb(client, { pace: 'fast', records: recordsA });
    client.send({ event: 'stop', stop: { tag: TAG_A } });
    client.send({ event: 'usage' });
    await client.waitFor(() => client.messages.some((m) => m.event === 'usage'), 'the usage message', 30_000);
    const usage = client.messages.find((m) => m.event === 'usage') as unknown as UsageMessage;
    const entry = usage.participants.find((p) => p.tag === TAG_A)!;
    expect(entry.provider).toBe('openai');
    // A final can still be on its way when the provider connection's finish has resolved (its
    // close frame sent), so the answer may be one short of what the client ends up with.
    expect(entry.finals).toBeGreaterThanOrEqual(1);
    expect(entry.finals).toBeLessThanOrEqual(client.finals(TAG_A).length);
    const pcm = running.fake.connections.slice(from).reduce((sum, c) => sum + c.pcm().length, 0);
    // Received: every packet of A's (20 ms each, none missing in the capture), counted before
    // the silence gate (SILENCE_GATE, on by default); sent: what passed the gate, so less,
    // since A's stream holds silence the gate keeps from the provider.
    expect(entry.receivedSeconds).toBeCloseTo(packetsA * 0.02, 3);
    expect(entry.sentSeconds).toBeGreaterThan(1);
    expect(entry.sentSeconds).toBeLessThan(entry.receivedSeconds);
    // The monitor's probe may run meanwhile on this fake: the session's own audio is at most what the fake got.
    expect(entry.sentSeconds).toBeLessThanOrEqual(pcm / 24_000 + 0.002);
    await client.close();
  });

  it.skipIf(runtime === 'workerd')('runs the in-process monitor and exposes its outcome', async () => {
    await until(
      async () => metricValue(await (await fetch(`${running.app.origin}/metrics`)).text(), 'transcriber_monitor_probes_total', { result: 'ok' }) >= 1,
      'a passing probe',
      60_000,
    );
    const text = await (await fetch(`${running.app.origin}/metrics`)).text();
    expect(metricValue(text, 'transcriber_monitor_up')).toBe(1);
    expect(metricValue(text, 'transcriber_monitor_last_success_timestamp_seconds')).toBeGreaterThan(0);
  }, 90_000);
});
