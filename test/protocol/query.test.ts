/**
 * The `/transcribe` query as the server reads it: every problem reported at once, each
 * naming the parameter and what it accepts, and booleans read exactly as the environment's.
 */
import { describe, expect, it } from 'vitest';
import { PROVIDERS } from '../../src/providers/registry.ts';
import { loadConfig } from '../../src/config.ts';
import { transcribeParamsParser, type ParamsResult } from '../../src/protocol/query.ts';

const known = PROVIDERS.map((p) => ({ name: p.name, keyVariable: p.keyVariable }));
const parse = (query: string, options: { configured?: string[]; byDefault?: boolean; available?: boolean } = {}): ParamsResult =>
  transcribeParamsParser(
    { configured: options.configured ?? ['openai'], known },
    { byDefault: options.byDefault ?? false, available: options.available ?? false },
  )(new URLSearchParams(query));

const problems = (result: ParamsResult) => (result.ok ? [] : result.problems);

describe('booleans', () => {
  it.each([
    ['true', true],
    ['TRUE', true],
    ['1', true],
    ['yes', true],
    ['On', true],
    ['false', false],
    ['0', false],
    ['No', false],
    ['off', false],
  ])('sendBack=%s reads as %s, in the query and in the environment alike', (word, value) => {
    const result = parse(`sendBack=${word}&useDispatcher=false&sendBackInterim=true`);
    expect(result.ok && result.params.sendBack).toBe(value);
    const env = loadConfig({ OPENAI_API_KEY: 'sk-x', USE_DISPATCHER: word, DISPATCHER_WS_URL: 'ws://127.0.0.1:1' }, PROVIDERS);
    expect(env.ok && env.config.useDispatcher).toBe(value);
  });

  it.each(['maybe', '2', 'y', ''])('refuses sendBackInterim=%j naming the parameter and the accepted values, as the environment does', (word) => {
    expect(problems(parse(`sendBack=true&sendBackInterim=${word}`))).toEqual([
      `sendBackInterim must be true or false (or 1, 0, yes, no, on, off), got "${word}"`,
    ]);
    if (word === '') return; // an empty variable is an unset one
    const env = loadConfig({ OPENAI_API_KEY: 'sk-x', USE_DISPATCHER: word }, PROVIDERS);
    expect(env.ok ? [] : env.errors).toEqual(['USE_DISPATCHER: must be true or false (or 1, 0, yes, no, on, off)']);
  });
});

describe('refusals', () => {
  it('lists every problem at once, in parameter order, on one line', () => {
    const result = parse('transcribe=no&sessionId=a%20b&lang=english!&provider=whisper&encoding=mp3&sendBack=maybe&useDispatcher=perhaps');
    expect(problems(result)).toEqual([
      'transcribe must be "true" (got "no")',
      'sessionId must be 1-256 characters of letters, digits, and . _ : @ -',
      'lang must be a BCP-47 or ISO 639-1 code such as en or pt-BR (got "english!")',
      'provider "whisper" is unknown; known providers: openai, deepgram, gemini, vosk',
      'encoding must be opus or ogg-opus (got "mp3")',
      'sendBack must be true or false (or 1, 0, yes, no, on, off), got "maybe"',
      'useDispatcher must be true or false (or 1, 0, yes, no, on, off), got "perhaps"',
    ]);
    expect(result.ok ? '' : result.reason).toBe(problems(result).join('; '));
    expect(result.ok ? '' : result.reason).not.toContain('\n');
  });

  it('names the parameters when nothing would receive the transcripts', () => {
    expect(problems(parse('sessionId=x'))).toEqual(['no output: set sendBack=true (and sendBackInterim=true for interims) or useDispatcher=true']);
    expect(problems(parse('sessionId=x&sendBack=0&useDispatcher=no'))).toEqual([
      'no output: set sendBack=true (and sendBackInterim=true for interims) or useDispatcher=true',
    ]);
    // USE_DISPATCHER=true is an output; an unreadable flag is reported as itself, not as "no output".
    expect(parse('sessionId=x', { byDefault: true, available: true }).ok).toBe(true);
    expect(problems(parse('sessionId=x&sendBack=maybe'))).toEqual(['sendBack must be true or false (or 1, 0, yes, no, on, off), got "maybe"']);
  });

  it('tells an unknown provider from a known one this server has no key for', () => {
    expect(problems(parse('sendBack=true&provider=gemini'))).toEqual(['provider "gemini" is not configured: set GEMINI_API_KEY (configured: openai)']);
    expect(problems(parse('sendBack=true&provider=whisper', { configured: ['deepgram', 'gemini'] }))).toEqual([
      'provider "whisper" is unknown; known providers: openai, deepgram, gemini, vosk',
    ]);
    const chosen = parse('sendBack=true&provider=gemini', { configured: ['openai', 'gemini'] });
    expect(chosen.ok && chosen.params.provider).toBe('gemini');
  });

  it('checks the dispatcher rules once the flags they read are valid', () => {
    expect(problems(parse('sessionId=x&useDispatcher=true'))).toEqual(['useDispatcher=true but this server has no dispatcher configured']);
    expect(problems(parse('useDispatcher=on', { available: true }))).toEqual([
      'sessionId is required when transcripts go to the dispatcher (useDispatcher=true or USE_DISPATCHER)',
    ]);
    expect(problems(parse('sendBack=true', { byDefault: true, available: true }))).toEqual([
      'sessionId is required when transcripts go to the dispatcher (useDispatcher=true or USE_DISPATCHER)',
    ]);
    expect(problems(parse('sendBack=true&useDispatcher=off', { byDefault: true, available: true }))).toEqual([]);
  });
});

it('accepts a well-formed query with its defaults', () => {
  expect(parse('sessionId=conf-1&sendBack=yes&lang=pt-BR&encoding=ogg')).toEqual({
    ok: true,
    params: {
      sessionId: 'conf-1',
      sendBack: true,
      sendBackInterim: false,
      useDispatcher: undefined,
      lang: 'pt-BR',
      provider: 'openai',
      encoding: 'ogg-opus',
    },
  });
});

describe('edges of the query', () => {
  it('reads the first value of a repeated parameter, as URLSearchParams.get does', () => {
    const result = parse('sessionId=first&sessionId=second&sendBack=true&sendBack=false');
    expect(result.ok && [result.params.sessionId, result.params.sendBack]).toEqual(['first', true]);
  });

  it('accepts transcribe=true, and leaves the unset flags false', () => {
    expect(parse('transcribe=true&sendBack=1').ok).toBe(true);
    const toDispatcher = parse('sessionId=x&useDispatcher=true', { available: true });
    expect(toDispatcher.ok && toDispatcher.params).toMatchObject({ sendBack: false, sendBackInterim: false, useDispatcher: true });
  });

  it('says when no provider is configured at all', () => {
    expect(problems(parse('sendBack=true&provider=gemini', { configured: [] }))).toEqual([
      'provider "gemini" is not configured: set GEMINI_API_KEY (configured: none)',
    ]);
  });

  it('quotes an unknown provider up to 40 characters, then clips it', () => {
    const at40 = 'p'.repeat(40);
    expect(problems(parse(`sendBack=true&provider=${at40}`))[0]).toBe(`provider "${at40}" is unknown; known providers: openai, deepgram, gemini, vosk`);
    expect(problems(parse(`sendBack=true&provider=${at40}q`))[0]).toBe(`provider "${at40}…" is unknown; known providers: openai, deepgram, gemini, vosk`);
  });
});

describe('each rule across parameters runs once the flags it reads are valid, whatever else is wrong', () => {
  const LANG = 'lang must be a BCP-47 or ISO 639-1 code such as en or pt-BR (got "english!")';
  it('still reports the rule beside an unrelated mistake', () => {
    expect(problems(parse('sessionId=a%20b&useDispatcher=true'))).toEqual([
      'sessionId must be 1-256 characters of letters, digits, and . _ : @ -',
      'useDispatcher=true but this server has no dispatcher configured',
    ]);
    expect(problems(parse('sessionId=x&lang=english!'))).toEqual([LANG, 'no output: set sendBack=true (and sendBackInterim=true for interims) or useDispatcher=true']);
    expect(problems(parse('lang=english!&useDispatcher=on', { available: true }))).toEqual([
      LANG,
      'sessionId is required when transcripts go to the dispatcher (useDispatcher=true or USE_DISPATCHER)',
    ]);
  });

  it('does not report it twice when a flag it reads is the mistake', () => {
    expect(problems(parse('sessionId=x&sendBackInterim=maybe'))).toEqual([
      'sendBackInterim must be true or false (or 1, 0, yes, no, on, off), got "maybe"',
    ]);
    expect(problems(parse('sendBack=true&useDispatcher=perhaps', { available: true }))).toEqual([
      'useDispatcher must be true or false (or 1, 0, yes, no, on, off), got "perhaps"',
    ]);
    expect(problems(parse('sessionId=x&useDispatcher='))).toEqual(['useDispatcher must be true or false (or 1, 0, yes, no, on, off), got ""']);
  });

  it('lists every configured provider when the one asked for is not', () => {
    expect(problems(parse('sendBack=true&provider=gemini', { configured: ['openai', 'deepgram'] }))).toEqual([
      'provider "gemini" is not configured: set GEMINI_API_KEY (configured: openai, deepgram)',
    ]);
  });
});
