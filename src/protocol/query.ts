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

export type ParamsResult = { ok: true; params: TranscribeParams } | { ok: false; reason: string };

const LANG = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/;
const SESSION_ID = /^[\w.:@-]{1,256}$/;
const ENCODINGS: Record<string, InputEncoding> = { opus: 'opus', 'ogg-opus': 'ogg-opus', ogg: 'ogg-opus' };

/**
 * Validates the `/transcribe` query before the upgrade. Each refusal is one line naming the
 * parameter and what is allowed, for a client like wscat to print.
 */
export function parseTranscribeParams(
  query: URLSearchParams,
  configured: readonly string[],
  dispatcher: { byDefault: boolean; available: boolean },
): ParamsResult {
  // Booleans are true only for the literal string "true".
  const flag = (name: string) => query.get(name) === 'true';

  const transcribe = query.get('transcribe');
  if (transcribe !== null && transcribe !== 'true') {
    return { ok: false, reason: `transcribe must be "true" (got "${clip(transcribe)}")` };
  }
  const sessionId = query.get('sessionId') ?? undefined;
  if (sessionId !== undefined && !SESSION_ID.test(sessionId)) {
    return { ok: false, reason: 'sessionId must be 1-256 characters of letters, digits, and . _ : @ -' };
  }
  const lang = query.get('lang') ?? undefined;
  if (lang !== undefined && !LANG.test(lang)) {
    return { ok: false, reason: `lang must be a BCP-47 or ISO 639-1 code such as en or pt-BR (got "${clip(lang)}")` };
  }
  const providerParam = query.get('provider');
  if (providerParam !== null && !configured.includes(providerParam)) {
    return { ok: false, reason: `provider "${clip(providerParam)}" is not configured; configured: ${configured.join(', ')}` };
  }
  const encodingParam = query.get('encoding') ?? 'opus';
  const encoding = ENCODINGS[encodingParam];
  if (!encoding) return { ok: false, reason: `encoding must be opus or ogg-opus (got "${clip(encodingParam)}")` };

  const dispatcherParam = query.get('useDispatcher');
  const useDispatcher = dispatcherParam === null ? undefined : dispatcherParam === 'true';
  const sendBack = flag('sendBack');
  const sendBackInterim = flag('sendBackInterim');
  if (useDispatcher && !dispatcher.available) {
    return { ok: false, reason: 'useDispatcher=true but this server has no dispatcher configured' };
  }
  const toDispatcher = useDispatcher ?? dispatcher.byDefault;
  if (!sendBack && !sendBackInterim && !toDispatcher) {
    return { ok: false, reason: 'No transcription output method specified' };
  }
  // The dispatcher routes by session: without an id its finals would have nowhere to go.
  if (toDispatcher && sessionId === undefined) {
    return { ok: false, reason: 'sessionId is required when transcripts go to the dispatcher (useDispatcher=true or USE_DISPATCHER)' };
  }
  return {
    ok: true,
    params: { sessionId, sendBack, sendBackInterim, useDispatcher, lang, provider: providerParam ?? configured[0]!, encoding },
  };
}

function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}
