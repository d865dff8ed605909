/**
 * One session as its client sees it (the Node server on a manual clock, the real-protocol
 * OpenAI fake behind it): bad input refused with the error the protocol names, counted and
 * logged without flooding; the participant and provider-connection limits; pings, usage,
 * and the shape of the results.
 */
import { describe, expect, it } from 'vitest';
import type { TestClient } from '../helpers/client.ts';
import { clockedOpenAI } from '../helpers/clocked-server.ts';
import { until } from '../helpers/wait.ts';

const start = clockedOpenAI();

const EVENTS = 'start, media, stop, ping, info, usage';
const errors = (c: TestClient) => c.messages.filter((m) => m.event === 'error');

/** 20 ms of 16-bit PCM at `rate`, a tone loud enough to transcribe. */
function l16(rate: number, ms = 20): string {
  const n = (rate * ms) / 1000;
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  return b.toString('base64');
}

describe('Session: bad input', () => {
  it('answers each kind of bad message with its error, counts it, and goes on', async () => {
    const { server: s } = await start({ MAX_MESSAGE_BYTES: '1024' });
    const client = await s.connect();
    await client.waitFor(() => client.messages.length === 1, 'info');
    client.ws.send(Buffer.from([1, 2, 3]));
    client.send('x'.repeat(1025));
    client.send(`"${'x'.repeat(1022)}"`);
    client.send('{not json');
    client.send('3');
    client.send('null');
    client.send({ event: 'nope' });
    client.send({});
    client.send({ event: 5 });
    client.send({ event: 'y'.repeat(100) });
    client.send({ event: 'start' });
    client.send({ event: 'media', media: {} });
    client.send({ event: 'media', media: { tag: 'tag-1', payload: '!!!' } });
    client.send({ event: 'ping', id: 'p1' });
    await client.waitFor(() => client.messages.some((m) => m.event === 'pong'), 'the pong');
    const answers = client.messages.slice(1).map((m) => (m.event === 'error' ? [m.code, m.message, m.tag] : [m.event, m.id]));
    expect(answers.slice(0, 10)).toEqual([
      ['binary_frame', 'binary frames are not accepted; send JSON text frames', undefined],
      ['too_large', 'message of 1025 bytes exceeds the 1024-byte limit (MAX_MESSAGE_BYTES)', undefined],
      ['invalid_json', 'message is not a JSON object', undefined],
      ['invalid_json', 'message is not JSON', undefined],
      ['invalid_json', 'message is not a JSON object', undefined],
      ['invalid_json', 'message is not a JSON object', undefined],
      ['unknown_event', `unknown event "nope"; events are ${EVENTS}`, undefined],
      ['unknown_event', `message has no "event" string; events are ${EVENTS}`, undefined],
      ['unknown_event', `message has no "event" string; events are ${EVENTS}`, undefined],
      ['unknown_event', `unknown event "${'y'.repeat(64)}"; events are ${EVENTS}`, undefined],
    ]);
    expect(answers[10]![0]).toBe('invalid_start');
    expect(answers[10]![1]).toMatch(/^start: /);
    expect(answers[11]![0]).toBe('invalid_media');
    expect(answers[11]![1]).toMatch(/^media: /);
    expect(answers.slice(12)).toEqual([
      ['bad_base64', 'media payload is not valid base64', 'tag-1'],
      ['pong', 'p1'],
    ]);
    const counted = (reason: string) => s.metrics.inputErrors.get({ reason });
    expect([counted('binary_frame'), counted('too_large'), counted('invalid_json'), counted('unknown_event'), counted('invalid_start'), counted('invalid_media'), counted('bad_base64')]).toEqual([
      1, 1, 4, 4, 1, 1, 1,
    ]);
    expect(s.metrics.framesTotal.get()).toBe(0);
    expect(client.closed).toBeUndefined();
  });

  it('logs each unknown event name once (32 at most), then only the throttled refusals', async () => {
    const { server: s } = await start();
    const client = await s.connect();
    client.send({ event: 'nope' });
    client.send({ event: 'nope' });
    client.send({});
    client.send({ event: true });
    for (let i = 0; i < 96; i++) client.send({ event: `e${i}` });
    await until(() => s.metrics.inputErrors.get({ reason: 'unknown_event' }) === 100, 'the refusals');
    const warned = s.logs.filter((l) => l.msg === 'unknown event').map((l) => l.event);
    expect(warned).toEqual(['nope', '(none)', '(boolean)', ...Array.from({ length: 29 }, (_, i) => `e${i}`)]);
    expect(s.logs.filter((l) => l.msg === 'input refused' && l.reason === 'unknown_event').map((l) => [l.occurrences, l.detail])).toEqual([
      [100, `unknown event "e95"; events are ${EVENTS}`],
    ]);
    expect(errors(client).length).toBe(7);
  });
});

describe('Session: limits', () => {
  it('closes the session (1008) when a participant beyond MAX_PARTICIPANTS arrives, counting it once', async () => {
    const { server: s } = await start({ MAX_PARTICIPANTS: '1' });
    const client = await s.connect();
    client.send({ event: 'start', start: { tag: 'a', mediaFormat: { encoding: 'l16', sampleRate: 16000 } } });
    client.send({ event: 'media', media: { tag: 'a', payload: l16(16000) } });
    client.send({ event: 'start', start: { tag: 'b', mediaFormat: { encoding: 'l16' } } });
    client.send({ event: 'media', media: { tag: 'b', payload: l16(16000) } });
    await client.waitFor(() => client.closed !== undefined, 'the close');
    expect(client.closed).toEqual({ code: 1008, reason: 'participant limit of 1 reached' });
    expect(errors(client)[0]).toEqual({ event: 'error', code: 'too_many_participants', message: 'participant limit of 1 reached', tag: 'b' });
    expect(s.metrics.refused.get({ reason: 'max_participants' })).toBe(1);
  });

  it('refuses a stream beyond MAX_PROVIDER_CONNECTIONS, not the session, and starts it with its declared format once one frees', async () => {
    const { server: s, fake: f } = await start({ MAX_PROVIDER_CONNECTIONS: '1' });
    const client = await s.connect();
    client.send({ event: 'start', start: { tag: 'a', mediaFormat: { encoding: 'l16', sampleRate: 24000 } } });
    for (let i = 0; i < 5; i++) client.send({ event: 'media', media: { tag: 'a', payload: l16(24000) } });
    await f.waitFor(() => f.connections[0]?.audioMs === 100, 'a at the provider');
    client.send({ event: 'start', start: { tag: 'b', mediaFormat: { encoding: 'l16' } } });
    for (let i = 0; i < 2; i++) client.send({ event: 'media', media: { tag: 'b', payload: l16(16000) } });
    // Its start and each of its frames are refused.
    await client.waitFor(() => errors(client).length === 3, 'the refusals');
    expect(errors(client)).toEqual([
      {
        event: 'error',
        code: 'too_many_provider_connections',
        message: "provider connection limit of 1 reached on this server (MAX_PROVIDER_CONNECTIONS); this stream's audio is refused until one frees",
        tag: 'b',
      },
      expect.objectContaining({ code: 'too_many_provider_connections', tag: 'b' }),
      expect.objectContaining({ code: 'too_many_provider_connections', tag: 'b' }),
    ]);
    expect(s.metrics.refused.get({ reason: 'max_provider_connections' })).toBe(1);
    expect(client.closed).toBeUndefined();
    client.send({ event: 'stop', stop: { tag: 'a' } });
    await until(() => s.metrics.state.providerStreams === 0, 'a to end');
    // 20 ms of l16 at 16 kHz (its start said l16, the rate by default 16000): 20 ms at the provider.
    for (let i = 0; i < 5; i++) client.send({ event: 'media', media: { tag: 'b', payload: l16(16000) } });
    await f.waitFor(() => f.connections[1]?.audioMs === 100, 'b at the provider');
    expect(f.connections[1]!.violations).toEqual([]);
    expect(s.metrics.refused.get({ reason: 'max_provider_connections' })).toBe(1);
  });
});

describe('Session: what the client gets', () => {
  it('results carry the participant, the language asked for, and reach the client; usage answers with the figures so far', async () => {
    const { server: s, fake: f } = await start({ FORCE_COMMIT_TIMEOUT: '1' });
    const client = await s.connect({ lang: 'de', sessionId: 'sess-1' });
    client.send({ event: 'start', start: { tag: 'abc-123', mediaFormat: { encoding: 'l16', sampleRate: 24000 } } });
    client.send({ event: 'info', note: 'hello' });
    for (let i = 0; i < 50; i++) client.send({ event: 'media', media: { tag: 'abc-123', payload: l16(24000) } });
    await f.waitFor(() => f.connections[0]?.audioMs === 1000, 'the audio at the provider');
    s.clock.advance(1_000);
    await client.waitFor(() => client.finals().length === 1, 'the final');
    const final = client.finals()[0]!;
    expect(final.participant.tag).toBe('abc-123');
    expect(final.language).toBe('de');
    expect(final.transcript).toEqual([{ text: f.connections[0]!.completed()[0] }]);
    expect(f.connections[0]!.sessionUpdates[0]).toMatchObject({ audio: { input: { transcription: { language: 'de' } } } });
    client.send({ event: 'usage' });
    await client.waitFor(() => client.messages.some((m) => m.event === 'usage'), 'the usage');
    const usage = client.messages.find((m) => m.event === 'usage')!;
    expect(usage).toMatchObject({
      sessionId: 'sess-1',
      participants: [{ tag: 'abc-123', provider: 'openai', receivedSeconds: 1, sentSeconds: 1, utterances: 1, finals: 1 }],
      totals: { openai: { receivedSeconds: 1, finals: 1 } },
    });
    expect(s.logs).toContainEqual(expect.objectContaining({ msg: 'client info', info: '{"event":"info","note":"hello"}' }));
    expect(s.logs).toContainEqual(expect.objectContaining({ msg: 'stream started', tag: 'abc-123', encoding: 'l16' }));
    expect(s.metrics.framesTotal.get()).toBe(50);
  });
});
