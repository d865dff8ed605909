/**
 * What a session cost (docs/PROTOCOL.md §5.7): the usage report a session ends with, and the
 * same figures in /metrics.
 */
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics.ts';
import { SessionUsage } from '../../src/session/usage.ts';

describe('SessionUsage', () => {
  it('reports each participant with each provider it used, in seconds from milliseconds, and the sums by provider', () => {
    const metrics = createMetrics();
    const usage = new SessionUsage('conf-1', metrics);
    const a = usage.meter('ep-a', 'tag-a', 'openai');
    for (let i = 0; i < 3; i++) a.received(20);
    a.received(0.4);
    a.sent(40);
    a.sent(20.6);
    a.utterance();
    a.utterance();
    a.final();
    a.reconnect();
    a.reconnect();
    a.reconnect();
    const b = usage.meter('ep-b', 'tag-b', 'openai');
    b.received(1000.3);
    b.sent(999.7);
    b.utterance();
    b.final();
    b.final();
    const aOnDeepgram = usage.meter('ep-a', 'tag-a', 'deepgram');
    aOnDeepgram.received(5);
    // Back on a provider it used: the same meter goes on.
    usage.meter('ep-a2', 'tag-a', 'openai').received(20);

    expect(usage.report()).toEqual({
      sessionId: 'conf-1',
      participants: [
        { endpointId: 'ep-a', tag: 'tag-a', provider: 'openai', receivedSeconds: 0.08, sentSeconds: 0.061, utterances: 2, finals: 1, reconnects: 3 },
        { endpointId: 'ep-b', tag: 'tag-b', provider: 'openai', receivedSeconds: 1, sentSeconds: 1, utterances: 1, finals: 2, reconnects: 0 },
        { endpointId: 'ep-a', tag: 'tag-a', provider: 'deepgram', receivedSeconds: 0.005, sentSeconds: 0, utterances: 0, finals: 0, reconnects: 0 },
      ],
      totals: {
        openai: { receivedSeconds: 1.08, sentSeconds: 1.061, utterances: 3, finals: 3, reconnects: 3 },
        deepgram: { receivedSeconds: 0.005, sentSeconds: 0, utterances: 0, finals: 0, reconnects: 0 },
      },
    });
    expect(metrics.audioReceivedSeconds.get({ provider: 'openai' })).toBeCloseTo(1.0807, 9);
    expect(metrics.audioSentSeconds.get({ provider: 'openai' })).toBeCloseTo(1.0603, 9);
    expect(metrics.audioReceivedSeconds.get({ provider: 'deepgram' })).toBeCloseTo(0.005, 9);
    expect(metrics.utterances.get({ provider: 'openai' })).toBe(3);
    expect(metrics.utterances.get({ provider: 'deepgram' })).toBe(0);
  });

  it('tells participants apart by tag, not by an accidental join of tag and provider', () => {
    const usage = new SessionUsage(undefined, createMetrics());
    usage.meter('e1', 'ab', 'c').utterance();
    usage.meter('e2', 'a', 'bc').utterance();
    const report = usage.report();
    expect(report.sessionId).toBeNull();
    expect(report.participants.map((p) => [p.tag, p.provider, p.utterances])).toEqual([
      ['ab', 'c', 1],
      ['a', 'bc', 1],
    ]);
  });

  it('reports nothing for a session no participant spoke in', () => {
    expect(new SessionUsage('s', createMetrics()).report()).toEqual({ sessionId: 's', participants: [], totals: {} });
  });
});
