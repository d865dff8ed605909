/**
 * The OpenAI Realtime provider alone, over a real socket to the real-protocol fake
 * (test/fakes/openai-realtime.ts), its deadlines on a manual clock: the session it asks for,
 * the transcripts it makes of the service's events (deltas, completions in audio order,
 * failures), and how it reports each kind of error and close.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { openai, realtimeUrl } from '../../src/providers/openai.ts';
import type { ProviderConnection, ProviderError, Transcript } from '../../src/providers/provider.ts';
import { nodeBase64 } from '../../src/runtime/node/base64.ts';
import { nodeConnector } from '../../src/runtime/node/connector.ts';
import { FakeOpenAI, type FakeRealtimeConnection } from '../fakes/openai-realtime.ts';
import { ManualClock, settle } from '../helpers/clock.ts';
import { FAST, recorder } from '../helpers/listener.ts';
import { until } from '../helpers/wait.ts';

let fake: FakeOpenAI | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

async function start(env: Record<string, string> = {}, connector = nodeConnector) {
  fake ??= await FakeOpenAI.start();
  const clock = new ManualClock();
  const provider = openai.load({ OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, ...env }).create!({ connector, base64: nodeBase64, timers: clock });
  return { fake, clock, provider };
}

async function open(env: Record<string, string> = {}, language?: string) {
  const s = await start(env);
  const { seen, listener } = recorder();
  const conn = await s.provider.connect({ format: { kind: 'pcm16', sampleRate: 24000 }, language, log: createLogger('error') }, listener);
  const server = s.fake.connections.at(-1)!;
  /** Events as the service sends them; resolves once the provider has read them all (a marker error event after them is). */
  let markers = 0;
  const say = async (...events: Record<string, unknown>[]) => {
    const code = `marker_${++markers}`;
    for (const e of events) server.send(e);
    server.send({ type: 'error', error: { type: 'marker', code, message: 'marker' } });
    await until(() => seen.errors.some((e) => e.message.includes(code)), 'the events read', FAST);
    seen.errors = seen.errors.filter((e) => !e.message.includes('marker_'));
  };
  return { ...s, seen, conn, server, say };
}

/** `ms` of a 440 Hz tone at 24 kHz. */
function tone(ms: number, amplitude = 8000): Uint8Array {
  const n = (24_000 * ms) / 1000;
  const pcm = new Int16Array(n);
  for (let k = 0; k < n; k++) pcm[k] = Math.round(amplitude * Math.sin((2 * Math.PI * 440 * k) / 24_000));
  return new Uint8Array(pcm.buffer);
}

/** Whether `p` settles within a second of real time (finish waits on the manual clock otherwise, which never moves here). */
const settled = (p: Promise<unknown>) => Promise.race([p.then(() => 'done'), new Promise((r) => setTimeout(() => r('still waiting'), 1_000))]);

const brief = (t: Transcript) => [t.kind, t.itemId, t.text];

const DELTA = 'conversation.item.input_audio_transcription.delta';
const COMPLETED = 'conversation.item.input_audio_transcription.completed';
const FAILED = 'conversation.item.input_audio_transcription.failed';

describe('OpenAI provider: the session it asks for', () => {
  it('transcription mode, PCM 24 kHz, the model, language, prompt and noise reduction, server VAD by default, key in a header', async () => {
    const { server, provider } = await open({ OPENAI_MODEL: 'gpt-4o-mini-transcribe', OPENAI_TRANSCRIPTION_PROMPT: 'names: Ada', OPENAI_NOISE_REDUCTION: 'far_field' }, 'fr');
    expect(provider.name).toBe('openai');
    expect(provider.formatFor('opus')).toEqual({ kind: 'pcm16', sampleRate: 24000 });
    expect(provider.maxConnectionMs).toBe(28 * 60_000);
    expect(provider.detectsTurns).toBe(true);
    expect(server.sessionUpdates).toEqual([
      {
        type: 'transcription',
        audio: {
          input: {
            format: { type: 'audio/pcm', rate: 24000 },
            transcription: { model: 'gpt-4o-mini-transcribe', language: 'fr', prompt: 'names: Ada' },
            turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 300 },
            noise_reduction: { type: 'far_field' },
          },
        },
      },
    ]);
    expect(server.headers.authorization).toBe(`Bearer ${fake!.apiKey}`);
    expect(server.protocols).toEqual([]);
    expect(server.url).toBe('/v1/realtime?intent=transcription');
    expect(server.violations).toEqual([]);
  });

  it('no language, prompt or noise reduction unless asked; turn detection off when set to null', async () => {
    const { server, provider } = await open({ OPENAI_TURN_DETECTION: 'null' });
    expect(provider.detectsTurns).toBe(false);
    expect(server.sessionUpdates[0]).toEqual({
      type: 'transcription',
      audio: { input: { format: { type: 'audio/pcm', rate: 24000 }, transcription: { model: 'gpt-4o-transcribe' }, turn_detection: null } },
    });
  });

  it('OPENAI_TURN_DETECTION takes a JSON object or null, nothing else', async () => {
    const load = (value: string) => openai.load({ OPENAI_API_KEY: 'k', OPENAI_TURN_DETECTION: value });
    expect(load('[1]').create).toBeUndefined();
    expect(load('[1]').errors).toHaveLength(1);
    expect(load('5').create).toBeUndefined();
    expect(load('"server_vad"').create).toBeUndefined();
    expect(load('null').errors).toEqual([]);
    const { server } = await open({ OPENAI_TURN_DETECTION: '{"type":"semantic_vad"}' });
    expect(server.sessionUpdates[0]).toMatchObject({ audio: { input: { turn_detection: { type: 'semantic_vad' } } } });
  });

  it('the key in the subprotocols where the runtime cannot set headers', async () => {
    const { provider } = await start({}, { ...nodeConnector, supportsHeaders: false });
    await provider.connect({ format: { kind: 'pcm16', sampleRate: 24000 }, log: createLogger('error') }, recorder().listener);
    const server = fake!.connections[0]!;
    expect(server.protocols).toEqual(['realtime', `openai-insecure-api-key.${fake!.apiKey}`]);
    expect(server.headers.authorization).toBeUndefined();
  });

  it('the realtime URL keeps the base URL own path and query, whatever its scheme', () => {
    expect(realtimeUrl('https://api.openai.com/v1')).toBe('wss://api.openai.com/v1/realtime?intent=transcription');
    expect(realtimeUrl('http://local:8000/v1//?model=tiny')).toBe('ws://local:8000/v1/realtime?model=tiny&intent=transcription');
  });
});

describe('OpenAI provider: transcripts', () => {
  it('interims accumulate the deltas; the final carries where the speech began and ended', async () => {
    const { seen, say } = await open();
    await say(
      { type: 'input_audio_buffer.speech_started', audio_start_ms: 120, item_id: 'i1' },
      { type: DELTA, item_id: 'i1', delta: 'hello' },
      { type: DELTA, item_id: 'i1', delta: ' world' },
      { type: DELTA, item_id: 'i1', delta: 7 },
      { type: DELTA, delta: 'no item' },
      { type: 'input_audio_buffer.speech_stopped', audio_end_ms: 1_480, item_id: 'i1' },
      { type: 'input_audio_buffer.committed', item_id: 'i1' },
      { type: COMPLETED, item_id: 'i1', transcript: 'Hello world.' },
    );
    expect(seen.transcripts).toEqual([
      { kind: 'interim', itemId: 'i1', text: 'hello', audioStartMs: 120 },
      { kind: 'interim', itemId: 'i1', text: 'hello world', audioStartMs: 120 },
      { kind: 'final', itemId: 'i1', text: 'Hello world.', audioStartMs: 120, audioEndMs: 1_480 },
    ]);
    expect(seen.errors).toEqual([]);
  });

  it('releases finals in audio order: a later completion waits for the earlier item', async () => {
    const { seen, say } = await open();
    await say(
      { type: 'input_audio_buffer.committed', item_id: 'a' },
      { type: 'input_audio_buffer.committed', item_id: 'b' },
      { type: 'input_audio_buffer.committed', item_id: 'c' },
      { type: COMPLETED, item_id: 'c', transcript: 'third' },
      { type: COMPLETED, item_id: 'b', transcript: 'second' },
      // A delta for an item completed but still held behind another is old news.
      { type: DELTA, item_id: 'c', delta: ' late' },
    );
    expect(seen.transcripts).toEqual([]);
    await say({ type: COMPLETED, item_id: 'a', transcript: 'first' });
    expect(seen.transcripts.map((t) => [t.kind, t.itemId, t.text])).toEqual([
      ['final', 'a', 'first'],
      ['final', 'b', 'second'],
      ['final', 'c', 'third'],
    ]);
  });

  it('ignores item events without a string item_id: they hold nothing back', async () => {
    const { seen, say, conn, clock } = await open();
    await say(
      { type: 'input_audio_buffer.speech_started', audio_start_ms: 0 },
      { type: 'input_audio_buffer.speech_stopped', audio_end_ms: 500 },
      { type: 'input_audio_buffer.committed' },
      { type: DELTA, item_id: 7, delta: 'numeric id' },
      { type: 'input_audio_buffer.committed', item_id: 'a' },
      { type: COMPLETED, item_id: 'a', transcript: 'at once' },
    );
    expect(seen.transcripts.map(brief)).toEqual([['final', 'a', 'at once']]);
    expect(clock.pendingTimeouts()).toEqual([]);
    expect(await settled(conn.finish(60_000))).toBe('done');
  });

  it('releases the completion of an item it never saw committed', async () => {
    const { seen, say } = await open();
    await say({ type: COMPLETED, item_id: 'x', transcript: 'uncommitted' });
    expect(seen.transcripts.map(brief)).toEqual([['final', 'x', 'uncommitted']]);
  });

  it('sets no timer for a head nothing completed waits behind, and one timer however many wait', async () => {
    const { seen, say, clock } = await open();
    await say(
      { type: 'input_audio_buffer.committed', item_id: 'a' },
      { type: 'input_audio_buffer.committed', item_id: 'b' },
      { type: COMPLETED, item_id: 'a', transcript: 'one' },
    );
    expect(seen.transcripts.map(brief)).toEqual([['final', 'a', 'one']]);
    expect(clock.pendingTimeouts()).toEqual([]);
    await say({ type: 'input_audio_buffer.committed', item_id: 'c' }, { type: COMPLETED, item_id: 'c', transcript: 'three' });
    clock.advance(1_000);
    await say({ type: 'input_audio_buffer.committed', item_id: 'd' }, { type: COMPLETED, item_id: 'd', transcript: 'four' });
    expect(clock.pendingTimeouts()).toEqual([4_000]);
  });

  it('a failed item is reported, yields no final, and lets the ones behind it out; blank finals are not sent', async () => {
    const { seen, say } = await open();
    await say(
      { type: 'input_audio_buffer.committed', item_id: 'a' },
      { type: 'input_audio_buffer.committed', item_id: 'b' },
      { type: 'input_audio_buffer.committed', item_id: 'c' },
      { type: COMPLETED, item_id: 'b', transcript: '  ' },
      { type: COMPLETED, item_id: 'c', transcript: 'kept' },
      { type: FAILED, error: { message: 'no item' } },
      { type: FAILED, item_id: 'a', error: { message: 'audio unintelligible' } },
      { type: COMPLETED, transcript: 'no item' },
    );
    expect(seen.errors.map((e) => [e.kind, e.message])).toEqual([['provider', 'transcription failed: audio unintelligible']]);
    expect(seen.transcripts.map((t) => [t.kind, t.itemId, t.text])).toEqual([['final', 'c', 'kept']]);
    await say({ type: FAILED, item_id: 'd', error: 'not an object' }, { type: COMPLETED, item_id: 'e' });
    expect(seen.errors.map((e) => e.message).at(-1)).toBe('transcription failed: unknown error');
    expect(seen.transcripts).toHaveLength(1);
  });

  it(`releases what waits behind an item that never completes 5 s after that item was first seen`, async () => {
    const { seen, say, clock } = await open();
    await say({ type: 'input_audio_buffer.speech_started', audio_start_ms: 0, item_id: 'stuck' });
    clock.advance(2_000);
    await say({ type: 'input_audio_buffer.committed', item_id: 'stuck' }, { type: 'input_audio_buffer.committed', item_id: 'b' });
    clock.advance(1_000);
    await say({ type: COMPLETED, item_id: 'b', transcript: 'behind' });
    expect(clock.pendingTimeouts()).toEqual([2_000]);
    clock.advance(1_999);
    expect(seen.transcripts).toEqual([]);
    clock.advance(1);
    expect(seen.transcripts.map((t) => t.text)).toEqual(['behind']);
    expect(clock.pendingTimeouts()).toEqual([]);
  });

  it('a head with nothing completed behind it sets no timer', async () => {
    const { seen, say, clock } = await open();
    await say({ type: 'input_audio_buffer.committed', item_id: 'a' }, { type: 'input_audio_buffer.committed', item_id: 'b' });
    clock.advance(60_000);
    expect(clock.pendingTimeouts()).toEqual([]);
    await say({ type: COMPLETED, item_id: 'b', transcript: 'two' });
    // The head has waited over 5 s already: out at once.
    expect(seen.transcripts.map((t) => t.text)).toEqual(['two']);
  });
});

describe('OpenAI provider: audio, commits and finish', () => {
  it('appends base64 PCM, commits only when audio was sent since the last commit, and finishes once the final is in', async () => {
    const { conn, server, seen, fake: f, clock } = await open({ OPENAI_TURN_DETECTION: 'null' });
    conn.flush();
    await settle();
    expect(server.commits).toBe(0);
    conn.send(tone(500), 500);
    conn.send(tone(500), 500);
    await f.waitFor(() => server.appends === 2, 'the appends', FAST);
    expect(Array.from(server.pcm().subarray(0, 4))).toEqual(Array.from(new Int16Array(tone(500).buffer).subarray(0, 4)));
    const finished = conn.finish(3_000);
    await f.waitFor(() => server.closedWith !== undefined, 'the close after the final', FAST);
    await finished;
    expect(server.commits).toBe(1);
    expect(seen.transcripts.filter((t) => t.kind === 'final').map((t) => t.text)).toEqual(server.completed());
    expect(server.completed()[0]).not.toBe('');
    expect(server.closedWith).toEqual({ code: 1000, reason: 'done', by: 'client' });
    expect(clock.pendingTimeouts()).toEqual([]);
    expect(seen.closed).toEqual([]);
    expect(server.violations).toEqual([]);
  });

  it('finish waits for a final that comes late', async () => {
    const { conn, server, seen, fake: f } = await open({ OPENAI_TURN_DETECTION: 'null' });
    f.faults.answerDelayMs = 200;
    conn.send(tone(500), 500);
    const finished = conn.finish(3_000);
    await finished;
    expect(server.completed()).toHaveLength(1);
    expect(seen.transcripts.filter((t) => t.kind === 'final').map((t) => t.text)).toEqual(server.completed());
  });

  it('finish ends when the service closes the socket meanwhile', async () => {
    const { conn, server, seen, fake: f } = await open({ OPENAI_TURN_DETECTION: 'null' });
    f.faults.leaveUncompleted = 1;
    conn.send(tone(500), 500);
    const finished = conn.finish(60_000);
    await f.waitFor(() => server.sent.some((e) => e.type === 'input_audio_buffer.committed'), 'the commit', FAST);
    server.close(1011, 'server_error');
    expect(await settled(finished)).toBe('done');
    expect(seen.closed.map((e) => e.kind)).toEqual(['closed']);
  });

  it('an empty commit outside finish is no error either, and the connection goes on', async () => {
    const { conn, server, seen, say, fake: f } = await open({ OPENAI_TURN_DETECTION: 'null' });
    conn.send(tone(20), 20);
    conn.flush();
    await f.waitFor(() => server.sent.some((e) => (e.error as { code?: string } | undefined)?.code === 'input_audio_buffer_commit_empty'), 'the refusal', FAST);
    await say();
    expect(seen.errors).toEqual([]);
    expect(seen.closed).toEqual([]);
  });

  it('an empty commit the service refuses ends the wait at once, and is no error', async () => {
    const { conn, server, seen, fake: f } = await open({ OPENAI_TURN_DETECTION: 'null' });
    conn.send(tone(20), 20);
    const finished = conn.finish(3_000);
    await f.waitFor(() => server.closedWith !== undefined, 'the close', FAST);
    await finished;
    expect(server.sent.map((e) => (e.error as { code?: string } | undefined)?.code)).toContain('input_audio_buffer_commit_empty');
    expect(seen.errors).toEqual([]);
  });

  it('finish gives up after its timeout on the clock when the final never comes', async () => {
    const { conn, server, fake: f, clock } = await open({ OPENAI_TURN_DETECTION: 'null' });
    f.faults.leaveUncompleted = 1;
    conn.send(tone(500), 500);
    let done = false;
    const finished = conn.finish(2_000).then(() => (done = true));
    await f.waitFor(() => server.sent.some((e) => e.type === 'input_audio_buffer.committed'), 'the commit', FAST);
    await settle();
    clock.advance(1_999);
    await settle();
    expect(done).toBe(false);
    clock.advance(1);
    await finished;
    await f.waitFor(() => server.closedWith !== undefined, 'the close', FAST);
    expect(server.closedWith?.code).toBe(1000);
  });

  it('finish with nothing pending closes at once', async () => {
    const { conn, server, fake: f } = await open();
    await conn.finish(60_000);
    await f.waitFor(() => server.closedWith !== undefined, 'the close', FAST);
    expect(server.closedWith).toEqual({ code: 1000, reason: 'done', by: 'client' });
  });
});

describe('OpenAI provider: errors and closes', () => {
  it('reports a frame that is not JSON as a protocol error, ignores binary frames, and goes on', async () => {
    const { seen, say, server } = await open();
    (server as unknown as { ws: { send(d: unknown): void } }).ws.send('not json');
    (server as unknown as { ws: { send(d: unknown): void } }).ws.send(Buffer.from('{"type":"error"}'));
    await say({ type: 'input_audio_buffer.committed', item_id: 'x' }, { type: COMPLETED, item_id: 'x', transcript: 'still here' });
    expect(seen.errors.map((e) => [e.kind, e.message])).toEqual([['protocol', 'OpenAI sent a frame that is not JSON']]);
    expect(seen.transcripts.map((t) => t.text)).toEqual(['still here']);
  });

  it('classifies the service error events, by code or by type', async () => {
    const { seen, say } = await open();
    await say(
      { type: 'error', error: { type: 'invalid_request_error', code: 'weird_thing', message: 'Something odd.' } },
      { type: 'error', error: { type: 'server_error', code: null, message: 'Try again.' } },
      { type: 'error', error: { type: 'tokens', code: 'rate_limit_exceeded', message: 'Slow down.' } },
      { type: 'error', error: { type: 'invalid_model', code: 'other', message: 'By type.' } },
      { type: 'error', error: 'no detail' },
      { type: 'error' },
      { type: 'error', error: null },
    );
    expect(seen.errors.map((e) => [e.kind, e.retryable, e.message])).toEqual([
      ['provider', true, 'OpenAI error weird_thing: Something odd.'],
      ['provider', true, 'OpenAI error: Try again.'],
      ['rate_limited', true, 'OpenAI error rate_limit_exceeded: Slow down.'],
      ['handshake', false, 'OpenAI error other: By type.'],
      ['provider', true, 'OpenAI error: unknown error'],
      ['provider', true, 'OpenAI error: unknown error'],
      ['provider', true, 'OpenAI error: unknown error'],
    ]);
    expect(seen.closed).toEqual([]);
  });

  it('a fatal error is what the close that follows reports', async () => {
    const { seen, say, server, fake: f } = await open();
    await say({ type: 'error', error: { type: 'insufficient_quota', code: 'insufficient_quota', message: 'You exceeded your quota.' } });
    server.close(3000, 'invalid_request_error.insufficient_quota');
    await until(() => seen.closed.length === 1, 'the close', FAST);
    expect(seen.errors.map((e) => [e.kind, e.retryable])).toEqual([['rate_limited', false]]);
    expect(seen.closed[0]).toBe(seen.errors[0]);
    expect(f.connections).toHaveLength(1);
  });

  it('a close by the service, after a retryable error or none, says its code and reason', async () => {
    const first = await open();
    await first.say({ type: 'error', error: { type: 'x', code: 'rate_limit_exceeded', message: 'Slow down.' } });
    first.server.close(1011, 'server_error');
    await until(() => first.seen.closed.length === 1, 'the close', FAST);
    expect(first.seen.closed.map((e) => [e.kind, e.message])).toEqual([['closed', 'OpenAI closed the connection (1011 server_error)']]);
    const second = await open();
    second.server.close(1000, '');
    await until(() => second.seen.closed.length === 1, 'the close', FAST);
    expect(second.seen.closed[0]!.message).toBe('OpenAI closed the connection (1000)');
  });

  it('after our own close, the socket closing is not reported', async () => {
    const { conn, seen, server, fake: f } = await open();
    conn.close();
    conn.close();
    await f.waitFor(() => server.closedWith !== undefined, 'the close', FAST);
    await new Promise((r) => setTimeout(r, 50));
    expect(server.closedWith).toEqual({ code: 1000, reason: 'done', by: 'client' });
    expect(seen.closed).toEqual([]);
  });
});

describe('OpenAI provider: setup', () => {
  const connect = async (env: Record<string, string> = {}) => {
    const s = await start(env);
    const { seen, listener } = recorder();
    const attempt = s.provider.connect({ format: { kind: 'pcm16', sampleRate: 24000 }, log: createLogger('error') }, listener);
    const result = attempt.then(
      (conn: ProviderConnection) => ({ conn, err: undefined }),
      (err: ProviderError) => ({ conn: undefined, err }),
    );
    return { ...s, seen, result };
  };
  const held = async () => {
    fake = await FakeOpenAI.start();
    fake.faults.holdSessionUpdate = true;
    const c = await connect();
    await fake.waitFor(() => fake!.connections[0]?.sessionUpdates.length === 1, 'the session.update', FAST);
    return { ...c, server: fake.connections[0]! as FakeRealtimeConnection };
  };

  it('gives up on a session not confirmed within 10 s on the clock, and closes its socket', async () => {
    const { clock, result, server, fake: f } = await held();
    await settle();
    clock.advance(9_999);
    await settle();
    expect(server.closedWith).toBeUndefined();
    clock.advance(1);
    const { err } = await result;
    expect([err?.kind, err?.message]).toEqual(['unreachable', 'OpenAI did not confirm the session within 10000 ms']);
    await f.waitFor(() => server.closedWith !== undefined, 'the close', FAST);
    expect(server.closedWith?.by).toBe('client');
  });

  it('an error before the session is confirmed refuses it, not to be retried soon', async () => {
    const { result, server, seen } = await held();
    server.error('server_error', 'something', 'Unexpected.');
    const { err } = await result;
    expect([err?.kind, err?.retryable, err?.message]).toEqual(['handshake', false, 'OpenAI error something: Unexpected.']);
    expect(seen.errors).toEqual([]);
  });

  it('a close before the session is confirmed refuses it, with the close', async () => {
    const { result, server, seen } = await held();
    server.close(1011, 'boom');
    const { err } = await result;
    expect([err?.kind, err?.message]).toEqual(['closed', 'OpenAI closed the connection (1011 boom)']);
    expect(seen.closed).toEqual([]);
  });

  it('a model the service rejects is refused as a handshake error', async () => {
    const { result } = await connect({ OPENAI_MODEL: 'whisper-1' });
    const { err } = await result;
    expect([err?.kind, err?.retryable]).toEqual(['handshake', false]);
    expect(err?.message).toContain('invalid_model');
  });

  it('a refused handshake quotes the service explanation, from its JSON or its text', async () => {
    fake = await FakeOpenAI.start();
    fake.faults.refuseHandshake = 400;
    const { result } = await connect();
    const { err } = await result;
    expect([err?.kind, err?.retryable, err?.message]).toEqual(['handshake', false, 'OpenAI refused the connection: HTTP 400 (refused by fault injection)']);
    fake.faults.refuseHandshake = undefined;
    const s = await start({ OPENAI_BASE_URL: `${fake.baseUrl}/elsewhere` });
    const e2 = await s.provider.connect({ format: { kind: 'pcm16', sampleRate: 24000 }, log: createLogger('error') }, recorder().listener).catch((e: ProviderError) => e);
    expect((e2 as ProviderError).message).toBe('OpenAI refused the connection: HTTP 404 (Not found)');
  });
});
