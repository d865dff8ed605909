/**
 * Usage accounting (issue 19.2, docs/PROTOCOL.md §4.11, §5.7, §7.1): per participant and
 * provider, seconds received and sent, utterances, finals, reconnects, told to the client
 * that asks, sent to the dispatcher at session end, logged, and in /metrics. The seconds
 * sent reconcile with the PCM the fake OpenAI received (24 kHz, 16-bit mono).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeDispatcher } from '../fakes/dispatcher.ts';
import { replayJvb, TAG_A, ID_A, type TestClient } from '../helpers/client.ts';
import { readCapture } from '../helpers/fixtures.ts';
import { metricValue, startProxy, type Proxy } from '../helpers/proxy.ts';
import { onlyTag, stopTags } from '../helpers/provider-server.ts';

const OPENAI_RATE = 24_000;

interface UsageMessage {
  event: 'usage';
  sessionId: string | null;
  participants: { endpointId: string; tag: string; provider: string; receivedSeconds: number; sentSeconds: number; utterances: number; finals: number; reconnects: number }[];
  totals: Record<string, { receivedSeconds: number; sentSeconds: number; utterances: number; finals: number; reconnects: number }>;
}

let dispatcher: FakeDispatcher;
let proxy: Proxy;

beforeAll(async () => {
  dispatcher = await FakeDispatcher.start();
  proxy = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5', DISPATCHER_WS_URL: dispatcher.url(), PROVIDER_QUEUE_MS: '60000' });
});

afterAll(async () => {
  await proxy?.close();
  await dispatcher?.close();
});

/** Streams one speaker, stops the stream, asks for the usage and returns it with the client. */
async function session(sessionId: string): Promise<{ client: TestClient; usage: UsageMessage }> {
  const client = await proxy.connect({ sessionId, useDispatcher: 'true' });
  await replayJvb(client, { pace: 'fast', records: onlyTag(readCapture(), TAG_A) });
  stopTags(client, TAG_A);
  client.send({ event: 'usage' });
  await client.waitFor(() => client.messages.some((m) => m.event === 'usage'), 'the usage message', 30_000);
  return { client, usage: client.messages.find((m) => m.event === 'usage') as unknown as UsageMessage };
}

/** Seconds of PCM the fake received on the connections from `index` on. */
const pcmSeconds = (fromConnection: number) =>
  proxy.fake.connections.slice(fromConnection).reduce((sum, c) => sum + c.pcm().length, 0) / OPENAI_RATE;

describe('usage accounting', () => {
  it('tells the client what was sent, reconciled with the PCM the provider received, and the dispatcher the same at the end', async () => {
    const before = proxy.fake.connections.length;
    const metricsBefore = await proxy.metrics();
    const { client, usage } = await session('usage-1');
    const finals = client.finals(TAG_A);
    expect(finals.length).toBeGreaterThanOrEqual(1);

    expect(usage.sessionId).toBe('usage-1');
    expect(usage.participants).toHaveLength(1);
    const [entry] = usage.participants;
    expect(entry).toMatchObject({ endpointId: ID_A, tag: TAG_A, provider: 'openai', reconnects: 0 });
    // A final can still be on its way when the provider connection's finish has resolved (its
    // close frame sent): the answer counts what had arrived, at most what the client ends up with.
    expect(entry!.finals).toBeGreaterThanOrEqual(1);
    expect(entry!.finals).toBeLessThanOrEqual(finals.length);
    // Seconds from sample counts: what the fake received, to the millisecond.
    expect(entry!.sentSeconds).toBeGreaterThan(1);
    expect(Math.abs(entry!.sentSeconds - pcmSeconds(before))).toBeLessThanOrEqual(0.002);
    // Nothing dropped, nothing replayed: every second received was sent once.
    expect(entry!.receivedSeconds).toBeCloseTo(entry!.sentSeconds, 3);
    // Each utterance counted once, its interims and its final together: one whose final is still
    // on its way (above) is counted already, so at most one more utterance than finals here.
    expect(entry!.utterances - entry!.finals).toBeGreaterThanOrEqual(0);
    expect(entry!.utterances - entry!.finals).toBeLessThanOrEqual(1);
    expect(usage.totals).toEqual({
      openai: { receivedSeconds: entry!.receivedSeconds, sentSeconds: entry!.sentSeconds, utterances: entry!.utterances, finals: entry!.finals, reconnects: 0 },
    });

    // /metrics counts the same seconds, by provider.
    const metrics = await proxy.metrics();
    const delta = (name: string) => metricValue(metrics, name, { provider: 'openai' }) - metricValue(metricsBefore, name, { provider: 'openai' });
    expect(delta('transcriber_audio_sent_seconds_total')).toBeCloseTo(entry!.sentSeconds, 2);
    expect(delta('transcriber_audio_received_seconds_total')).toBeCloseTo(entry!.receivedSeconds, 2);
    // Read after the answer: the utterance whose final was on its way may have been counted since.
    expect(delta('transcriber_utterances_total') - entry!.utterances).toBeGreaterThanOrEqual(0);
    expect(delta('transcriber_utterances_total') - entry!.utterances).toBeLessThanOrEqual(1);

    await client.close();
    // At session end: one usage message to the dispatcher, after the session's finals, with the same figures.
    await dispatcher.waitFor(() => dispatcher.usages().some((u) => u.sessionId === 'usage-1'), 'the usage at the dispatcher');
    const sent = dispatcher.usages().filter((u) => u.sessionId === 'usage-1');
    expect(sent).toHaveLength(1);
    // The same seconds (nothing was sent after the stop); the finals as counted at the very end.
    expect(sent[0]).toMatchObject({ type: 'usage', sessionId: 'usage-1', totals: { openai: { sentSeconds: entry!.sentSeconds, receivedSeconds: entry!.receivedSeconds } } });
    expect(sent[0]!.participants[0]!.finals).toBeGreaterThanOrEqual(entry!.finals);
    expect(sent[0]!.messageId).toMatch(/^usage-/);
    const order = dispatcher.received.filter((r) => r.message.sessionId === 'usage-1').map((r) => ('type' in r.message ? 'usage' : 'final'));
    expect(order.at(-1)).toBe('usage');
    expect(order.filter((o) => o === 'final')).toHaveLength(finals.length);

    // And one log line.
    const logged = proxy.logs.filter((l) => l.msg === 'session usage' && l.session === 'usage-1');
    expect(logged).toHaveLength(1);
    expect(logged[0]!.participants).toEqual(sent[0]!.participants);
  });

  it('counts the audio replayed after a provider connection died as sent again, and the reconnect', async () => {
    proxy.fake.faults = { closeMidUtteranceAfterAppends: 50, closeMidUtteranceTimes: 1 };
    const before = proxy.fake.connections.length;
    const { client, usage } = await session('usage-2');
    proxy.fake.faults = {};
    const [entry] = usage.participants;
    expect(entry!.reconnects).toBe(1);
    // Billed twice: the audio heard by the dead connection went again on the new one.
    expect(entry!.sentSeconds).toBeGreaterThan(entry!.receivedSeconds + 0.5);
    expect(Math.abs(entry!.sentSeconds - pcmSeconds(before))).toBeLessThanOrEqual(0.002);
    await client.close();
  });

  it('answers a usage request before any audio with no participants', async () => {
    const client = await proxy.connect({ sessionId: 'usage-empty' });
    client.send({ event: 'usage' });
    await client.waitFor(() => client.messages.some((m) => m.event === 'usage'), 'the usage message');
    expect(client.messages.find((m) => m.event === 'usage')).toEqual({ event: 'usage', sessionId: 'usage-empty', participants: [], totals: {} });
    await client.close();
  });
});
