/**
 * The Deepgram provider alone, over a real socket to the real-protocol fake
 * (test/fakes/deepgram.ts), its timers on a manual clock: the URL it asks for, the finals
 * it makes of Deepgram's Results (segments, speech_final, UtteranceEnd, Finalize,
 * diarization, languages), keep-alives, and how each error and close is reported.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { deepgram } from '../../src/providers/deepgram.ts';
import type { AudioFormat, ProviderError, Transcript } from '../../src/providers/provider.ts';
import { nodeBase64 } from '../../src/runtime/node/base64.ts';
import { nodeConnector } from '../../src/runtime/node/connector.ts';
import { FakeDeepgram } from '../fakes/deepgram.ts';
import { ManualClock, settle } from '../helpers/clock.ts';
import { FAST, recorder } from '../helpers/listener.ts';
import { until } from '../helpers/wait.ts';

let fake: FakeDeepgram | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

async function provider(env: Record<string, string> = {}) {
  fake ??= await FakeDeepgram.start();
  const clock = new ManualClock();
  const p = deepgram.load({ DEEPGRAM_API_KEY: fake.apiKey, DEEPGRAM_BASE_URL: fake.baseUrl, ...env }).create!({ connector: nodeConnector, base64: nodeBase64, timers: clock });
  return { fake, clock, provider: p };
}

async function open(env: Record<string, string> = {}, format: AudioFormat = { kind: 'pcm16', sampleRate: 16000 }, language?: string) {
  const s = await provider(env);
  const { seen, listener } = recorder();
  const conn = await s.provider.connect({ format, language, log: createLogger('error') }, listener);
  const server = s.fake.connections.at(-1)!;
  let markers = 0;
  /** Messages as Deepgram sends them; resolves once the provider has read them all (an Error marker after them is). */
  const say = async (...messages: Record<string, unknown>[]) => {
    const marker = `marker-${++markers}`;
    for (const m of messages) server.send(m);
    server.send({ type: 'Error', description: marker });
    await until(() => seen.errors.some((e) => e.message.includes(marker)), 'the messages read', FAST);
    seen.errors = seen.errors.filter((e) => !e.message.includes('marker-'));
  };
  return { ...s, seen, conn, server, say };
}

interface W {
  word: string;
  start: number;
  punctuated?: string;
  confidence?: number;
  speaker?: number;
  language?: string;
}

/** A Results message as Deepgram sends it. */
function results(o: {
  transcript: string;
  start: number;
  duration: number;
  isFinal: boolean;
  speechFinal?: boolean;
  fromFinalize?: boolean;
  confidence?: number;
  words?: W[];
  languages?: string[];
}): Record<string, unknown> {
  return {
    type: 'Results',
    channel_index: [0, 1],
    start: o.start,
    duration: o.duration,
    is_final: o.isFinal,
    speech_final: o.speechFinal ?? false,
    from_finalize: o.fromFinalize ?? false,
    channel: {
      alternatives: [
        {
          transcript: o.transcript,
          ...(o.confidence === undefined ? {} : { confidence: o.confidence }),
          ...(o.languages ? { languages: o.languages } : {}),
          words: (o.words ?? []).map((w) => ({
            word: w.word,
            start: w.start,
            end: w.start + 0.2,
            ...(w.punctuated === undefined ? {} : { punctuated_word: w.punctuated }),
            ...(w.confidence === undefined ? {} : { confidence: w.confidence }),
            ...(w.speaker === undefined ? {} : { speaker: w.speaker }),
            ...(w.language === undefined ? {} : { language: w.language }),
          })),
        },
      ],
    },
  };
}

/** Whether `p` settles within a second of real time (finish waits on the manual clock otherwise, which never moves here). */
const settled = (p: Promise<unknown>) => Promise.race([p.then(() => 'done'), new Promise((r) => setTimeout(() => r('still waiting'), 1_000))]);

const brief = (t: Transcript) => [t.kind, t.itemId, t.text];

describe('Deepgram provider: what it asks for', () => {
  it('raw Opus at 48 kHz, interims, punctuation, no diarization, utterance ends after 1 s, the key in a header', async () => {
    const { server, provider: p } = await open({}, { kind: 'opus' });
    expect(Object.fromEntries(server.params)).toEqual({
      model: 'nova-3',
      interim_results: 'true',
      punctuate: 'true',
      diarize: 'false',
      channels: '1',
      encoding: 'opus',
      sample_rate: '48000',
      utterance_end_ms: '1000',
    });
    expect(server.url.pathname).toBe('/v1/listen');
    expect(server.headers.authorization).toBe(`Token ${fake!.apiKey}`);
    expect(server.violations).toEqual([]);
    expect(p.name).toBe('deepgram');
    expect(p.detectsTurns).toBe(true);
    expect(p.maxConnectionMs).toBeUndefined();
  });

  it('Ogg pages with neither encoding nor rate; PCM with its rate; the language asked for, else the configured one', async () => {
    const env = { DEEPGRAM_LANGUAGE: 'de', DEEPGRAM_MODEL: 'nova-2', DEEPGRAM_PUNCTUATE: 'false', DEEPGRAM_DIARIZE: 'true' };
    const ogg = await open(env, { kind: 'ogg' });
    expect(Object.fromEntries(ogg.server.params)).toEqual({
      model: 'nova-2',
      language: 'de',
      interim_results: 'true',
      punctuate: 'false',
      diarize: 'true',
      channels: '1',
      utterance_end_ms: '1000',
    });
    const pcm = await open(env, { kind: 'pcm16', sampleRate: 24000 }, 'fr');
    expect(pcm.server.params.get('language')).toBe('fr');
    expect(pcm.server.params.get('encoding')).toBe('linear16');
    expect(pcm.server.params.get('sample_rate')).toBe('24000');
    const none = await open({}, { kind: 'pcm16', sampleRate: 16000 });
    expect(none.server.params.has('language')).toBe(false);
  });

  it('takes Opus and Ogg through undecoded by default, PCM at the configured rate when asked', async () => {
    const passthrough = (await provider()).provider;
    expect(passthrough.formatFor('opus')).toEqual({ kind: 'opus' });
    expect(passthrough.formatFor('ogg-opus')).toEqual({ kind: 'ogg' });
    expect(passthrough.formatFor('pcm' as never)).toEqual({ kind: 'pcm16', sampleRate: 16000 });
    const pcm = (await provider({ DEEPGRAM_ENCODING: 'linear16', DEEPGRAM_SAMPLE_RATE: '24000' })).provider;
    expect(pcm.formatFor('opus')).toEqual({ kind: 'pcm16', sampleRate: 24000 });
    expect(pcm.formatFor('ogg-opus')).toEqual({ kind: 'pcm16', sampleRate: 24000 });
  });
});

describe('Deepgram provider: transcripts', () => {
  it('interims show the finalised segments and the current partial; speech_final closes the utterance', async () => {
    const { seen, say } = await open();
    await say(
      results({ transcript: '', start: 0, duration: 0.5, isFinal: false }),
      results({ transcript: 'hello', start: 0.5, duration: 0.5, isFinal: false, confidence: 0.5 }),
      results({ transcript: ' hello there ', start: 0.5, duration: 1, isFinal: true, confidence: 0.8 }),
      results({ transcript: 'general', start: 1.5, duration: 0.5, isFinal: false }),
      results({ transcript: 'general kenobi', start: 1.5, duration: 1.25, isFinal: true, speechFinal: true, confidence: 0.6 }),
      results({ transcript: 'next', start: 4, duration: 0.5, isFinal: false }),
    );
    expect(seen.transcripts).toEqual([
      { kind: 'interim', itemId: 'u1', text: 'hello', language: undefined, speaker: undefined, audioStartMs: 500 },
      { kind: 'interim', itemId: 'u1', text: 'hello there', language: undefined, speaker: undefined, audioStartMs: 500 },
      { kind: 'interim', itemId: 'u1', text: 'hello there general', language: undefined, speaker: undefined, audioStartMs: 500 },
      { kind: 'final', itemId: 'u1', text: 'hello there general kenobi', confidence: 0.7, language: undefined, speaker: undefined, audioStartMs: 500, audioEndMs: 2_750 },
      { kind: 'interim', itemId: 'u2', text: 'next', language: undefined, speaker: undefined, audioStartMs: 4_000 },
    ]);
  });

  it('a Finalize answer closes the utterance too; UtteranceEnd closes one whose speech_final never came, partial included', async () => {
    const { seen, say } = await open();
    await say(
      results({ transcript: 'one', start: 0, duration: 1, isFinal: true }),
      results({ transcript: 'two', start: 1, duration: 1, isFinal: true, fromFinalize: true }),
      results({ transcript: 'three', start: 3, duration: 1, isFinal: true }),
      results({ transcript: 'four', start: 4, duration: 0.5, isFinal: false }),
      { type: 'UtteranceEnd', channel: [0, 1], last_word_end: 4.5 },
      { type: 'UtteranceEnd', channel: [0, 1], last_word_end: 4.5 },
    );
    const finals = seen.transcripts.filter((t) => t.kind === 'final');
    expect(finals.map((t) => [t.itemId, t.text, t.audioStartMs, t.audioEndMs, t.confidence])).toEqual([
      ['u1', 'one two', 0, 2_000, undefined],
      ['u2', 'three four', 3_000, 4_500, undefined],
    ]);
  });

  it('a partial that turns out to be no words leaves no final behind', async () => {
    const { seen, say } = await open();
    await say(
      { type: 'Results', is_final: false, start: 0, duration: 0.1, channel: { alternatives: [] } },
      { type: 'Results', is_final: false, start: 0, duration: 0.1 },
      results({ transcript: 'uh', start: 0, duration: 0.3, isFinal: false }),
      results({ transcript: '', start: 0, duration: 0.3, isFinal: true }),
      { type: 'UtteranceEnd' },
      results({ transcript: '', start: 1, duration: 0.3, isFinal: true, speechFinal: true }),
    );
    expect(seen.transcripts.map(brief)).toEqual([['interim', 'u1', 'uh']]);
  });

  it('words: the punctuated form when given; the language of the alternative, else of its first word that has one', async () => {
    const { seen, say } = await open({ DEEPGRAM_LANGUAGE: 'multi' });
    await say(
      results({
        transcript: 'Hola amigo',
        start: 0,
        duration: 1,
        isFinal: true,
        languages: ['es'],
        words: [{ word: 'hola', punctuated: 'Hola', start: 0 }, { word: 'amigo', start: 0.5 }],
      }),
      results({
        transcript: 'and you',
        start: 1,
        duration: 1,
        isFinal: true,
        speechFinal: true,
        words: [{ word: '', start: 1 }, { word: 'and', start: 1, language: 'en' }, { word: 'you', start: 1.5, language: 'fr' }],
      }),
      results({ transcript: 'ciao', start: 3, duration: 1, isFinal: true, speechFinal: true, languages: [7 as never], words: [{ word: 'ciao', start: 3 }] }),
      results({ transcript: 'bonjour', start: 5, duration: 1, isFinal: true, languages: ['fr'] }),
      results({ transcript: 'ok', start: 6, duration: 1, isFinal: true, speechFinal: true }),
    );
    expect(seen.transcripts.map((t) => [t.kind, t.text, t.language])).toEqual([
      ['interim', 'Hola amigo', 'es'],
      ['final', 'Hola amigo and you', 'en'],
      ['final', 'ciao', undefined],
      ['interim', 'bonjour', 'fr'],
      ['final', 'bonjour ok', 'fr'],
    ]);
  });

  it('with diarization: the speaker of an utterance one speaker said, one final per speaker turn otherwise', async () => {
    const { seen, say } = await open({ DEEPGRAM_DIARIZE: 'true' });
    await say(
      results({
        transcript: 'good morning',
        start: 0,
        duration: 1,
        isFinal: false,
        words: [{ word: 'good', start: 0, speaker: 1 }, { word: 'morning', start: 0.4, speaker: 1 }],
      }),
      results({
        transcript: 'good morning',
        start: 0,
        duration: 1,
        isFinal: true,
        speechFinal: true,
        confidence: 0.9,
        words: [{ word: 'good', start: 0, speaker: 1, confidence: 0.9 }, { word: 'morning', start: 0.4, speaker: 1, confidence: 0.7 }],
      }),
      results({
        transcript: 'hi there hello',
        start: 2,
        duration: 1.5,
        isFinal: true,
        words: [
          { word: 'hi', punctuated: 'Hi,', start: 2, speaker: 0, confidence: 0.5 },
          { word: '', start: 2.2, speaker: 0, confidence: 0.1 },
          { word: 'there', start: 2.4, speaker: 0, confidence: 0.7 },
          { word: 'hello', start: 2.8, speaker: 1, confidence: 0.9 },
        ],
      }),
      results({
        transcript: 'you',
        start: 3.5,
        duration: 0.5,
        isFinal: true,
        speechFinal: true,
        words: [{ word: 'you', start: 3.5, speaker: 0 }],
      }),
    );
    expect(seen.transcripts.map((t) => [t.kind, t.itemId, t.text, t.speaker, t.confidence, t.audioStartMs, t.audioEndMs])).toEqual([
      ['interim', 'u1', 'good morning', 1, undefined, 0, undefined],
      ['final', 'u1', 'good morning', 1, 0.9, 0, 1_000],
      ['interim', 'u2', 'hi there hello', undefined, undefined, 2_000, undefined],
      ['final', 'u2', 'Hi, there', 0, 0.6, 2_000, 4_000],
      ['final', 'u2.1', 'hello', 1, 0.9, 2_800, 4_000],
      ['final', 'u2.2', 'you', 0, undefined, 3_500, 4_000],
    ]);
  });

  it('with diarization, no speaker for a result without words', async () => {
    const { seen, say } = await open({ DEEPGRAM_DIARIZE: 'true' });
    await say(results({ transcript: 'no words', start: 0, duration: 1, isFinal: true, speechFinal: true }));
    expect(seen.transcripts.map((t) => [t.kind, t.text, t.speaker])).toEqual([['final', 'no words', undefined]]);
  });

  it('without diarization, no speaker even when Deepgram names one', async () => {
    const { seen, say } = await open();
    await say(
      results({
        transcript: 'a b',
        start: 0,
        duration: 1,
        isFinal: true,
        speechFinal: true,
        words: [{ word: 'a', start: 0, speaker: 0 }, { word: 'b', start: 0.5, speaker: 1 }],
      }),
    );
    expect(seen.transcripts.map((t) => [t.kind, t.itemId, t.text, t.speaker])).toEqual([['final', 'u1', 'a b', undefined]]);
  });
});

describe('Deepgram provider: Finalize, keep-alives and finish', () => {
  const silence = (ms: number) => new Uint8Array((16_000 * ms * 2) / 1000);

  it('a flush with audio sent asks for Finalize, and closes an utterance Deepgram does not answer for after 1 s on the clock', async () => {
    const { seen, say, conn, server, clock, fake: f } = await open();
    conn.flush();
    await say(results({ transcript: 'done words', start: 0, duration: 1, isFinal: true }));
    conn.send(silence(100), 100);
    conn.flush();
    await f.waitFor(() => server.controls.includes('Finalize'), 'the Finalize', FAST);
    expect(server.controls.filter((c) => c === 'Finalize')).toHaveLength(1);
    clock.advance(999);
    expect(seen.transcripts.filter((t) => t.kind === 'final')).toEqual([]);
    clock.advance(1);
    expect(seen.transcripts.filter((t) => t.kind === 'final').map(brief)).toEqual([['final', 'u1', 'done words']]);
  });

  it('a flush with audio but no utterance asks for Finalize and sets no grace timer', async () => {
    const { seen, conn, server, clock, fake: f } = await open();
    conn.send(silence(100), 100);
    conn.flush();
    await f.waitFor(() => server.controls.includes('Finalize'), 'the Finalize', FAST);
    expect(clock.pendingTimeouts()).toEqual([]);
    clock.advance(1_000);
    expect(seen.transcripts).toEqual([]);
  });

  it('the Finalize grace does not close an utterance that has a partial, nor a newer utterance', async () => {
    const { seen, say, conn, server, clock, fake: f } = await open();
    await say(results({ transcript: 'first', start: 0, duration: 1, isFinal: true }), results({ transcript: 'sec', start: 1, duration: 0.3, isFinal: false }));
    conn.send(silence(100), 100);
    conn.flush();
    await f.waitFor(() => server.controls.includes('Finalize'), 'the Finalize', FAST);
    clock.advance(1_000);
    expect(seen.transcripts.filter((t) => t.kind === 'final')).toEqual([]);
    await say(results({ transcript: 'second', start: 1, duration: 0.5, isFinal: true, speechFinal: true }), results({ transcript: 'third', start: 2, duration: 0.5, isFinal: true }));
    conn.send(silence(100), 100);
    conn.flush();
    await f.waitFor(() => server.controls.filter((c) => c === 'Finalize').length === 2, 'the second Finalize', FAST);
    await say(results({ transcript: 'third', start: 2, duration: 0.5, isFinal: true, speechFinal: true }), results({ transcript: 'fourth', start: 3, duration: 0.5, isFinal: true }));
    clock.advance(1_000);
    expect(seen.transcripts.filter((t) => t.kind === 'final').map(brief)).toEqual([
      ['final', 'u1', 'first second'],
      ['final', 'u2', 'third third'],
    ]);
  });

  it('a flush with nothing new sent closes an utterance that is all final at once, without a Finalize', async () => {
    const { seen, say, conn, server } = await open();
    await say(results({ transcript: 'all final', start: 0, duration: 1, isFinal: true }), results({ transcript: 'partial', start: 1, duration: 0.2, isFinal: false }));
    conn.flush();
    expect(seen.transcripts.filter((t) => t.kind === 'final')).toEqual([]);
    await say(results({ transcript: 'partial', start: 1, duration: 0.2, isFinal: true }));
    conn.flush();
    expect(seen.transcripts.filter((t) => t.kind === 'final').map(brief)).toEqual([['final', 'u1', 'all final partial']]);
    await settle();
    expect(server.controls).toEqual([]);
  });

  it('sends a KeepAlive whenever nothing went out for half the period', async () => {
    const { conn, server, clock, fake: f } = await open({ DEEPGRAM_KEEPALIVE_MS: '1000' });
    clock.advance(499);
    await settle();
    clock.advance(1);
    await f.waitFor(() => server.keepAlives === 1, 'the first KeepAlive', FAST);
    clock.advance(200);
    conn.send(silence(20), 20);
    await f.waitFor(() => server.frames.length === 1, 'the audio', FAST);
    clock.advance(300);
    await settle();
    // At 1000: 300 ms since the audio, less than half the period: no KeepAlive.
    clock.advance(500);
    await f.waitFor(() => server.keepAlives === 2, 'the second KeepAlive', FAST);
    expect(server.controls).toEqual(['KeepAlive', 'KeepAlive']);
    conn.close();
    clock.advance(5_000);
    await settle();
    expect(server.keepAlives).toBe(2);
    expect(clock.pending()).toEqual([]);
  });

  it('finish: Finalize, CloseStream, the last results, then the close; what was said is final', async () => {
    const { seen, say, conn, server, fake: f } = await open();
    await say(results({ transcript: 'last words', start: 0, duration: 1, isFinal: false }));
    conn.send(silence(100), 100);
    await conn.finish(5_000);
    await f.waitFor(() => server.closedWith !== undefined, 'the close', FAST);
    expect(server.controls).toEqual(['Finalize', 'CloseStream']);
    expect(seen.transcripts.filter((t) => t.kind === 'final').map(brief)).toEqual([['final', 'u1', 'last words']]);
    expect(seen.closed).toEqual([]);
    // Closed: audio goes nowhere.
    conn.send(silence(20), 20);
    conn.flush();
    await settle();
    expect(server.frames).toHaveLength(1);
  });

  it('finish after Deepgram closed the stream returns at once', async () => {
    const { conn, server, seen } = await open();
    server.close(1011, 'gone');
    await until(() => seen.closed.length === 1, 'the close', FAST);
    expect(await settled(conn.finish(60_000))).toBe('done');
    expect(server.controls).toEqual([]);
  });

  it('finish ends at the Metadata that follows the last results, or at a close, whichever comes first', async () => {
    const first = await open();
    (first.server as unknown as { onText(text: string): void }).onText = () => undefined;
    const ended = first.conn.finish(60_000);
    await settle();
    first.server.send({ type: 'Metadata', request_id: 'r' });
    expect(await settled(ended)).toBe('done');
    await first.fake.waitFor(() => first.server.closedWith !== undefined, 'the close', FAST);
    expect(first.server.closedWith).toMatchObject({ code: 1000, by: 'client' });
    const second = await open();
    (second.server as unknown as { onText(text: string): void }).onText = () => undefined;
    await second.say(results({ transcript: 'said before', start: 0, duration: 1, isFinal: true }));
    const done = second.conn.finish(60_000);
    await settle();
    second.server.close(1011, 'bye');
    expect(await settled(done)).toBe('done');
    expect(second.seen.closed).toEqual([]);
    expect(second.seen.transcripts.filter((t) => t.kind === 'final').map(brief)).toEqual([['final', 'u1', 'said before']]);
  });

  it('finish gives up waiting after its timeout on the clock', async () => {
    const { conn, server, clock, fake: f } = await open();
    // No answer to CloseStream: the socket is taken over by a close the fake never finishes.
    (server as unknown as { onText(text: string): void }).onText = () => undefined;
    let done = false;
    const finished = conn.finish(3_000).then(() => (done = true));
    await settle();
    clock.advance(2_999);
    await settle();
    expect(done).toBe(false);
    clock.advance(1);
    await finished;
    await f.waitFor(() => server.closedWith !== undefined, 'the close', FAST);
    expect(server.closedWith).toMatchObject({ code: 1000, reason: 'done', by: 'client' });
  });
});

describe('Deepgram provider: errors and closes', () => {
  it('reports Error messages, frames that are not JSON objects, and goes on', async () => {
    const { seen, say, server } = await open();
    const ws = (server as unknown as { ws: { send(d: unknown): void } }).ws;
    ws.send('not json');
    ws.send('[1,2]');
    ws.send(Buffer.from('{"type":"Error","description":"binary"}'));
    await say(
      { type: 'Error', variant: 'warning', description: 'slow down' },
      { type: 'Error', message: 'only a message' },
      { type: 'Error', err_msg: 'only err_msg', description: 7 },
      { type: 'Error', description: 'x'.repeat(300) },
      { type: 'Error' },
      { type: 'Metadata' },
      { type: 'SpeechStarted' },
    );
    expect(seen.errors.map((e) => [e.kind, e.message])).toEqual([
      ['protocol', 'Deepgram sent a frame that is not a JSON object'],
      ['protocol', 'Deepgram sent a frame that is not a JSON object'],
      ['provider', 'Deepgram error: warning: slow down'],
      ['provider', 'Deepgram error: only a message'],
      ['provider', 'Deepgram error: only err_msg'],
      ['provider', `Deepgram error: ${'x'.repeat(200)}…`],
      ['provider', 'Deepgram error: unknown error'],
    ]);
    expect(seen.closed).toEqual([]);
  });

  it('a close by Deepgram ends the utterance, then says why: bad audio, nothing received, or otherwise', async () => {
    const cases: [number, string, string, string][] = [
      [1008, 'DATA-0000: The payload cannot be decoded as audio.', 'protocol', 'Deepgram could not decode the audio (1008 DATA-0000: The payload cannot be decoded as audio.)'],
      [1008, '', 'protocol', 'Deepgram could not decode the audio (1008)'],
      [1011, 'DATA-0000', 'protocol', 'Deepgram could not decode the audio (1011 DATA-0000)'],
      [1011, 'NET-0001: no audio', 'closed', 'Deepgram received no audio or KeepAlive in time (1011 NET-0001: no audio)'],
      [4000, 'bye', 'closed', 'Deepgram closed the connection (4000 bye)'],
      [1011, '', 'closed', 'Deepgram closed the connection (1011)'],
    ];
    for (const [code, reason, kind, message] of cases) {
      const { seen, say, server, clock } = await open();
      await say(results({ transcript: 'cut short', start: 0, duration: 1, isFinal: false }));
      server.close(code, reason);
      await until(() => seen.closed.length === 1, 'the close', FAST);
      expect(seen.transcripts.filter((t) => t.kind === 'final').map(brief)).toEqual([['final', 'u1', 'cut short']]);
      expect([seen.closed[0]!.kind, seen.closed[0]!.message]).toEqual([kind, message]);
      expect(clock.pending()).toEqual([]);
    }
  });

  it('after our own close, the socket closing is not reported, and what was pending is dropped', async () => {
    const { seen, say, conn, server, fake: f } = await open();
    await say(results({ transcript: 'dropped', start: 0, duration: 1, isFinal: true }));
    conn.close();
    conn.close();
    conn.flush();
    await f.waitFor(() => server.closedWith !== undefined, 'the close', FAST);
    await new Promise((r) => setTimeout(r, 50));
    expect(server.closedWith).toMatchObject({ code: 1000, reason: 'done', by: 'client' });
    expect(seen.closed).toEqual([]);
    expect(seen.transcripts.filter((t) => t.kind === 'final')).toEqual([]);
  });

  it('a refused handshake quotes the dg-error header, else the body', async () => {
    const { provider: p, fake: f } = await provider();
    f.faults.refuseHandshake = { status: 403, dgError: 'Insufficient permissions.' };
    const err = (await p.connect({ format: { kind: 'opus' }, log: createLogger('error') }, recorder().listener).catch((e: unknown) => e)) as ProviderError;
    expect([err.kind, err.retryable, err.message]).toEqual(['auth', false, 'Deepgram refused the connection: HTTP 403 (Insufficient permissions.)']);
    f.faults.refuseHandshake = { status: 400, dgError: '', errCode: 'BAD' };
    const e2 = (await p.connect({ format: { kind: 'opus' }, log: createLogger('error') }, recorder().listener).catch((e: unknown) => e)) as ProviderError;
    expect([e2.kind, e2.retryable, e2.message]).toEqual(['handshake', false, 'Deepgram refused the connection: HTTP 400 ({"err_code":"BAD","err_msg":"","request_id":"req-refused"})']);
    // The header says it when both do; the body's err_msg when the header is missing.
    f.faults.refuseHandshake = { status: 400, dgError: 'From the header.', errMsg: 'From the body.' };
    const e3 = (await p.connect({ format: { kind: 'opus' }, log: createLogger('error') }, recorder().listener).catch((e: unknown) => e)) as ProviderError;
    expect(e3.message).toBe('Deepgram refused the connection: HTTP 400 (From the header.)');
    f.faults.refuseHandshake = { status: 400, dgError: 'unused', errMsg: 'From the body.', noHeader: true };
    const e4 = (await p.connect({ format: { kind: 'opus' }, log: createLogger('error') }, recorder().listener).catch((e: unknown) => e)) as ProviderError;
    expect(e4.message).toBe('Deepgram refused the connection: HTTP 400 (From the body.)');
  });
});
