import * as v from 'valibot';
import { BOOLEAN_VALUES, booleanString, parseBoolean } from '../util/bool.ts';
import type { InputEncoding } from './inbound.ts';

export interface TranscribeParams {
  sessionId: string | undefined;
  sendBack: boolean;
  sendBackInterim: boolean;
  /** Undefined when absent: the environment's USE_DISPATCHER decides. */
  useDispatcher: boolean | undefined;
  lang: string | undefined;
  provider: string;
  encoding: InputEncoding;
}

export type ParamsResult = { ok: true; params: TranscribeParams } | { ok: false; problems: string[]; reason: string };

export interface ProviderChoice {
  /** The configured providers in priority order: the first serves sessions that name none. */
  configured: readonly string[];
  /** Every provider the proxy knows (the registry), with the variable that switches it on. */
  known: readonly { name: string; keyVariable: string }[];
}

export interface DispatcherChoice {
  /** USE_DISPATCHER: where finals go when the query does not say. */
  byDefault: boolean;
  available: boolean;
}

const LANG = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/;
const SESSION_ID = /^[\w.:@-]{1,256}$/;
const ENCODINGS: Record<string, InputEncoding> = { opus: 'opus', 'ogg-opus': 'ogg-opus', ogg: 'ogg-opus' };

const got = (input: unknown) => `got "${clip(String(input))}"`;

/** Read as environment booleans are (`parseBoolean`), so `sendBack=1` means what USE_DISPATCHER=1 does. */
const flag = (name: string) => v.optional(booleanString((input) => `${name} must be ${BOOLEAN_VALUES}, ${got(input)}`));

/**
 * The `/transcribe` query, checked before the upgrade. Every problem is reported at once,
 * each naming the parameter and what it accepts; a rule that relates parameters is checked
 * only once those it reads are valid, so one mistake is never reported twice.
 */
function querySchema(providers: ProviderChoice, dispatcher: DispatcherChoice) {
  const configured = (name: string) => providers.configured.includes(name);
  const unavailable = (name: string) => {
    const known = providers.known.find((p) => p.name === name);
    if (!known) return `provider "${clip(name)}" is unknown; known providers: ${providers.known.map((p) => p.name).join(', ')}`;
    return `provider "${name}" is not configured: set ${known.keyVariable} (configured: ${providers.configured.join(', ') || 'none'})`;
  };
  const toDispatcher = (useDispatcher: boolean | undefined) => useDispatcher ?? dispatcher.byDefault;
  return v.pipe(
    v.object({
      transcribe: v.optional(v.pipe(v.string(), v.check((s) => parseBoolean(s) === true, (i) => `transcribe must be "true" (${got(i.input)})`))),
      sessionId: v.optional(v.pipe(v.string(), v.regex(SESSION_ID, 'sessionId must be 1-256 characters of letters, digits, and . _ : @ -'))),
      lang: v.optional(
        v.pipe(v.string(), v.regex(LANG, (i) => `lang must be a BCP-47 or ISO 639-1 code such as en or pt-BR (${got(i.input)})`)),
      ),
      provider: v.optional(v.pipe(v.string(), v.check(configured, (i) => unavailable(String(i.input))))),
      encoding: v.optional(
        v.pipe(
          v.string(),
          v.check((s) => Object.hasOwn(ENCODINGS, s), (i) => `encoding must be opus or ogg-opus (${got(i.input)})`),
          v.transform((s) => ENCODINGS[s]!),
        ),
        'opus',
      ),
      sendBack: flag('sendBack'),
      sendBackInterim: flag('sendBackInterim'),
      useDispatcher: flag('useDispatcher'),
    }),
    v.partialCheck(
      [['useDispatcher']],
      (q) => !(q.useDispatcher === true && !dispatcher.available),
      'useDispatcher=true but this server has no dispatcher configured',
    ),
    v.partialCheck(
      [['sendBack'], ['sendBackInterim'], ['useDispatcher']],
      // Interims go back only with finals: sendBackInterim alone would be a silent socket.
      (q) => q.sendBack === true || toDispatcher(q.useDispatcher),
      'no output: set sendBack=true (and sendBackInterim=true for interims) or useDispatcher=true',
    ),
    // The dispatcher routes by session: without an id its finals would have nowhere to go.
    v.partialCheck(
      [['sessionId'], ['useDispatcher']],
      (q) => !(toDispatcher(q.useDispatcher) && dispatcher.available && q.sessionId === undefined),
      'sessionId is required when transcripts go to the dispatcher (useDispatcher=true or USE_DISPATCHER)',
    ),
  );
}

/**
 * A validator of `/transcribe` queries for this server's providers and dispatcher. A refusal
 * lists every problem, `; `-joined on one line for a client like wscat or curl to print.
 */
export function transcribeParamsParser(providers: ProviderChoice, dispatcher: DispatcherChoice): (query: URLSearchParams) => ParamsResult {
  const schema = querySchema(providers, dispatcher);
  return (query) => {
    // The first value of a repeated parameter, as URLSearchParams.get reads it.
    const input: Record<string, string> = {};
    for (const [name, value] of query) if (!Object.hasOwn(input, name)) input[name] = value;
    const result = v.safeParse(schema, input);
    if (!result.success) {
      const problems = result.issues.map((i) => i.message);
      return { ok: false, problems, reason: problems.join('; ') };
    }
    const q = result.output;
    return {
      ok: true,
      params: {
        sessionId: q.sessionId,
        sendBack: q.sendBack ?? false,
        sendBackInterim: q.sendBackInterim ?? false,
        useDispatcher: q.useDispatcher,
        lang: q.lang,
        provider: q.provider ?? providers.configured[0]!,
        encoding: q.encoding,
      },
    };
  };
}

function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}
