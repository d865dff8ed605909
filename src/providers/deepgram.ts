import * as v from 'valibot';
import { toWebSocketUrl, type HandshakeRefusal, type OutboundSocket } from '../net.ts';
import { envBool, envInt, envString, envUrl } from '../util/env-schema.ts';
import { withDeadline } from '../util/timers.ts';
import {
  ProviderError,
  defineProvider,
  handshakeError,
  openSocket,
  type AudioFormat,
  type ConnectionListener,
  type ConnectRequest,
  type Provider,
  type ProviderConnection,
  type ProviderDeps,
  type Transcript,
} from './provider.ts';
import { arr, asObject, bool, clipDetail, num, obj, parseObject, str, type JsonObject } from './wire.ts';

/**
 * Deepgram live streaming (`/v1/listen` over WebSocket). Opus passes through undecoded by
 * default (raw packets, or Ogg pages as they came), which is ~16× less egress than PCM.
 * Deepgram finalises an utterance in `is_final` segments; they accumulate until
 * `speech_final`, `UtteranceEnd` or a `Finalize` answer closes the utterance.
 */

export interface DeepgramConfig {
  apiKey: string;
  baseUrl: string;
  model: string;
  language?: string;
  punctuate: boolean;
  diarize: boolean;
  /** `opus`: pass Opus through; `linear16`: decoded PCM at `sampleRate`. */
  encoding: 'opus' | 'linear16';
  sampleRate: 16000 | 24000;
  /** Longest stretch without any frame to Deepgram (it closes after ~10 s of nothing). */
  keepAliveMs: number;
}

const Env = v.object({
  DEEPGRAM_API_KEY: v.string(),
  DEEPGRAM_BASE_URL: envUrl('wss://api.deepgram.com/v1', ['ws:', 'wss:', 'http:', 'https:']),
  DEEPGRAM_MODEL: envString('nova-3'),
  DEEPGRAM_LANGUAGE: v.optional(
    v.pipe(v.string(), v.trim(), v.regex(/^(multi|[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*)$/, 'must be a language code such as en, en-US, or multi')),
  ),
  DEEPGRAM_PUNCTUATE: envBool(true),
  DEEPGRAM_DIARIZE: envBool(false),
  DEEPGRAM_ENCODING: v.optional(v.picklist(['opus', 'linear16'], 'must be opus (Opus passed through) or linear16 (decoded PCM)'), 'opus'),
  DEEPGRAM_SAMPLE_RATE: v.optional(
    v.pipe(
      v.picklist(['16000', '24000'], 'must be 16000 or 24000'),
      v.transform((s): 16000 | 24000 => (s === '24000' ? 24000 : 16000)),
    ),
    '16000',
  ),
  DEEPGRAM_KEEPALIVE_MS: envInt(4_000, 100, 8_000),
});

/**
 * Deepgram answers `Finalize` only when it still holds unprocessed audio; an utterance it
 * has already finalised word for word is closed after this long without an answer.
 */
const FINALIZE_GRACE_MS = 1_000;
/** Sent as `utterance_end_ms`: an `UtteranceEnd` after this much silence closes an utterance whose `speech_final` never came (noise). */
const UTTERANCE_END_MS = 1_000;

interface Word {
  text: string;
  startMs: number;
  confidence?: number;
  speaker?: number;
}

/** One Results message's alternative: a finalised segment, or the current partial. */
interface Segment {
  text: string;
  startMs: number;
  /** Where the segment's audio ends (start + duration). */
  endMs: number;
  confidence?: number;
  language?: string;
  words: Word[];
}

interface Utterance {
  id: string;
  segments: Segment[];
  partial?: Segment;
}

class DeepgramConnection implements ProviderConnection {
  private socket!: OutboundSocket;
  private keepAlive: unknown;
  private lastSentAt = 0;
  /** Audio sent since the last `Finalize`, in ms. */
  private unfinalizedMs = 0;
  private utterance: Utterance | undefined;
  private sequence = 0;
  private closing = false;
  private ended = false;
  private finalizeTimer: unknown;
  /** Set while `finish` waits for the end of the stream. */
  private onEnd: (() => void) | undefined;

  constructor(
    private readonly deps: ProviderDeps,
    private readonly listener: ConnectionListener,
    private readonly config: DeepgramConfig,
  ) {}

  attach(socket: OutboundSocket): void {
    this.socket = socket;
    this.lastSentAt = this.deps.timers.now();
    // Half the period, so no gap exceeds keepAliveMs whatever the phase of the last frame.
    const half = this.config.keepAliveMs / 2;
    this.keepAlive = this.deps.timers.setInterval(() => {
      if (this.deps.timers.now() - this.lastSentAt >= half) this.sendText('{"type":"KeepAlive"}');
    }, half);
  }

  send(audio: Uint8Array, durationMs: number): void {
    if (this.closing) return;
    // The socket may queue the bytes; `audio` can be a view into WASM memory that the next decode reuses.
    this.socket.send(audio.slice());
    this.lastSentAt = this.deps.timers.now();
    this.unfinalizedMs += durationMs;
  }

  flush(): void {
    if (this.closing) return;
    const u = this.utterance;
    if (this.unfinalizedMs === 0) {
      // Nothing Deepgram has not answered for: what is final is all there will be.
      if (u && !u.partial) this.endUtterance();
      return;
    }
    this.sendText('{"type":"Finalize"}');
    this.unfinalizedMs = 0;
    if (!u) return;
    this.deps.timers.clearTimeout(this.finalizeTimer);
    this.finalizeTimer = this.deps.timers.setTimeout(() => {
      if (this.utterance === u && !u.partial) this.endUtterance();
    }, FINALIZE_GRACE_MS);
  }

  async finish(timeoutMs: number): Promise<void> {
    this.flush();
    if (!this.ended && !this.closing) {
      const ended = new Promise<void>((resolve) => (this.onEnd = resolve));
      // Deepgram answers with the last results and Metadata, then closes.
      this.sendText('{"type":"CloseStream"}');
      await withDeadline(ended, timeoutMs, this.deps.timers);
      this.onEnd = undefined;
    }
    this.endUtterance();
    this.close();
  }

  close(): void {
    this.deps.timers.clearInterval(this.keepAlive);
    this.deps.timers.clearTimeout(this.finalizeTimer);
    if (this.closing) return;
    this.closing = true;
    this.socket.close(1000, 'done');
  }

  onClose(code: number, reason: string): void {
    this.deps.timers.clearInterval(this.keepAlive);
    this.deps.timers.clearTimeout(this.finalizeTimer);
    this.ended = true;
    if (this.onEnd) return this.onEnd();
    if (this.closing) return;
    this.closing = true;
    // What Deepgram already finalised is final; the partial is the best we will get of the rest.
    this.endUtterance();
    this.listener.closed(closeError(code, reason));
  }

  onMessage(data: string | Uint8Array): void {
    if (typeof data !== 'string') return;
    const msg = parseObject(data);
    if (!msg) {
      this.listener.error(new ProviderError('Deepgram sent a frame that is not a JSON object', 'protocol'));
      return;
    }
    switch (msg.type) {
      case 'Results':
        return this.onResults(msg);
      case 'UtteranceEnd':
        return this.endUtterance();
      case 'Metadata':
        // The summary that follows the last results of a closed stream.
        this.onEnd?.();
        return;
      case 'Error':
        this.listener.error(new ProviderError(`Deepgram error: ${errorText(msg)}`, 'provider'));
        return;
      default:
        return;
    }
  }

  private onResults(msg: JsonObject): void {
    const segment = toSegment(msg);
    const isFinal = bool(msg, 'is_final');
    const closes = bool(msg, 'speech_final') || bool(msg, 'from_finalize');
    if (!isFinal) {
      // An empty partial (silence) says nothing about the utterance.
      if (!segment.text) return;
      const u = this.current();
      u.partial = segment;
      this.emitInterim(u);
      return;
    }
    if (segment.text) {
      const u = this.current();
      u.segments.push(segment);
      u.partial = undefined;
      if (!closes) this.emitInterim(u);
    } else if (this.utterance) {
      // The partial turned out to be no words.
      this.utterance.partial = undefined;
    }
    if (closes) this.endUtterance();
  }

  private current(): Utterance {
    this.utterance ??= { id: `u${++this.sequence}`, segments: [] };
    return this.utterance;
  }

  private emitInterim(u: Utterance): void {
    const parts = u.partial ? [...u.segments, u.partial] : u.segments;
    this.listener.transcript({
      kind: 'interim',
      itemId: u.id,
      text: joinText(parts),
      language: lastLanguage(parts),
      speaker: this.config.diarize ? soleSpeaker(parts.flatMap((p) => p.words)) : undefined,
      audioStartMs: parts[0]?.startMs,
    });
  }

  private endUtterance(): void {
    const u = this.utterance;
    this.utterance = undefined;
    if (!u) return;
    const parts = u.partial ? [...u.segments, u.partial] : u.segments;
    if (!parts.length) return;
    for (const t of this.finals(u.id, parts)) this.listener.transcript(t);
  }

  /** One final, or one per speaker turn when diarization found several speakers. */
  private finals(id: string, parts: Segment[]): Transcript[] {
    const language = lastLanguage(parts);
    const audioEndMs = parts.at(-1)!.endMs;
    const words = parts.flatMap((p) => p.words);
    const runs = this.config.diarize ? speakerRuns(words) : [];
    if (runs.length > 1) {
      return runs.map((run, i) => ({
        kind: 'final',
        itemId: i === 0 ? id : `${id}.${i}`,
        text: run.map((w) => w.text).join(' '),
        confidence: mean(run.map((w) => w.confidence)),
        language,
        speaker: run[0]!.speaker,
        audioStartMs: run[0]!.startMs,
        audioEndMs,
      }));
    }
    const text = joinText(parts);
    if (!text) return [];
    return [
      {
        kind: 'final',
        itemId: id,
        text,
        confidence: mean(parts.map((p) => p.confidence)),
        language,
        speaker: this.config.diarize ? soleSpeaker(words) : undefined,
        audioStartMs: parts[0]!.startMs,
        audioEndMs,
      },
    ];
  }

  private sendText(text: string): void {
    if (this.closing) return;
    this.socket.send(text);
    this.lastSentAt = this.deps.timers.now();
  }
}

function toSegment(msg: JsonObject): Segment {
  const alternative = asObject(arr(obj(msg, 'channel'), 'alternatives')[0]);
  const words: Word[] = [];
  let wordLanguage: string | undefined;
  for (const raw of arr(alternative, 'words')) {
    const w = asObject(raw);
    const text = str(w, 'punctuated_word') ?? str(w, 'word');
    if (!text) continue;
    wordLanguage ??= str(w, 'language');
    words.push({ text, startMs: (num(w, 'start') ?? 0) * 1000, confidence: num(w, 'confidence'), speaker: num(w, 'speaker') });
  }
  const languages = arr(alternative, 'languages');
  return {
    text: (str(alternative, 'transcript') ?? '').trim(),
    startMs: (num(msg, 'start') ?? 0) * 1000,
    endMs: ((num(msg, 'start') ?? 0) + (num(msg, 'duration') ?? 0)) * 1000,
    confidence: num(alternative, 'confidence'),
    language: (typeof languages[0] === 'string' ? languages[0] : undefined) ?? wordLanguage,
    words,
  };
}

const joinText = (parts: readonly Segment[]) =>
  parts
    .map((p) => p.text)
    .filter(Boolean)
    .join(' ');

function lastLanguage(parts: readonly Segment[]): string | undefined {
  for (let i = parts.length - 1; i >= 0; i--) if (parts[i]!.language) return parts[i]!.language;
  return undefined;
}

function soleSpeaker(words: readonly Word[]): number | undefined {
  const first = words[0]?.speaker;
  return first !== undefined && words.every((w) => w.speaker === first) ? first : undefined;
}

/** Consecutive words of the same speaker. */
function speakerRuns(words: readonly Word[]): Word[][] {
  const runs: Word[][] = [];
  for (const w of words) {
    const run = runs.at(-1);
    if (run && run[0]!.speaker === w.speaker) run.push(w);
    else runs.push([w]);
  }
  return runs;
}

function mean(values: readonly (number | undefined)[]): number | undefined {
  const known = values.filter((x): x is number => x !== undefined);
  return known.length ? known.reduce((a, b) => a + b, 0) / known.length : undefined;
}

function errorText(msg: JsonObject): string {
  const parts = [str(msg, 'variant'), str(msg, 'description') ?? str(msg, 'message') ?? str(msg, 'err_msg')].filter(Boolean);
  return parts.length ? clipDetail(parts.join(': ')) : 'unknown error';
}

/** Deepgram explains a closed stream in the close reason: `DATA-0000` bad audio, `NET-0001` nothing received in time. */
function closeError(code: number, reason: string): ProviderError {
  const detail = `${code}${reason ? ` ${clipDetail(reason)}` : ''}`;
  if (reason.includes('DATA-0000') || code === 1008) {
    return new ProviderError(`Deepgram could not decode the audio (${detail})`, 'protocol');
  }
  if (reason.includes('NET-0001')) return new ProviderError(`Deepgram received no audio or KeepAlive in time (${detail})`, 'closed');
  return new ProviderError(`Deepgram closed the connection (${detail})`, 'closed');
}

/** Deepgram says why it refused in the `dg-error` header and the JSON body's `err_msg`. */
function refusalDetail(refusal: HandshakeRefusal): string | undefined {
  return refusal.headers['dg-error'] || bodyMessage(refusal.body);
}

function bodyMessage(body: string): string | undefined {
  const json = parseObject(body);
  return (json && (str(json, 'err_msg') ?? str(json, 'message'))) || body.trim() || undefined;
}

function listenUrl(config: DeepgramConfig, format: AudioFormat, language: string | undefined): string {
  const q = new URLSearchParams({ model: config.model });
  if (language) q.set('language', language);
  q.set('interim_results', 'true');
  q.set('punctuate', String(config.punctuate));
  q.set('diarize', String(config.diarize));
  q.set('channels', '1');
  // Raw audio needs its encoding and rate; a container (Ogg) describes itself and must not get them.
  if (format.kind === 'pcm16') {
    q.set('encoding', 'linear16');
    q.set('sample_rate', String(format.sampleRate));
  } else if (format.kind === 'opus') {
    q.set('encoding', 'opus');
    q.set('sample_rate', '48000');
  }
  q.set('utterance_end_ms', String(UTTERANCE_END_MS));
  return `${toWebSocketUrl(config.baseUrl)}/listen?${q}`;
}

export function createDeepgram(config: DeepgramConfig, deps: ProviderDeps): Provider {
  // One auth form only: a header where the runtime can set one, else the subprotocol pair.
  const auth = deps.connector.supportsHeaders
    ? { headers: { Authorization: `Token ${config.apiKey}` } }
    : { protocols: ['token', config.apiKey] };

  return {
    name: 'deepgram',
    // Its endpointing (on by default) finalises at pauses.
    detectsTurns: true,
    // A container it detects itself: Ogg pages of several packets each, instead of a message per raw packet.
    takesOgg: config.encoding === 'opus',
    formatFor(input) {
      if (config.encoding === 'opus' && input === 'opus') return { kind: 'opus' };
      if (config.encoding === 'opus' && input === 'ogg-opus') return { kind: 'ogg' };
      return { kind: 'pcm16', sampleRate: config.sampleRate };
    },
    async connect(request: ConnectRequest, listener: ConnectionListener) {
      const conn = new DeepgramConnection(deps, listener, config);
      const url = listenUrl(config, request.format, request.language ?? config.language);
      const socket = await openSocket(deps, url, auth, conn, (err) => handshakeError('Deepgram', err, config.apiKey, refusalDetail));
      conn.attach(socket);
      return conn;
    },
  };
}

export const deepgram = defineProvider({
  name: 'deepgram',
  keyVariable: 'DEEPGRAM_API_KEY',
  env: Env,
  config: (output): DeepgramConfig => ({
    apiKey: output.DEEPGRAM_API_KEY,
    baseUrl: output.DEEPGRAM_BASE_URL,
    model: output.DEEPGRAM_MODEL,
    language: output.DEEPGRAM_LANGUAGE || undefined,
    punctuate: output.DEEPGRAM_PUNCTUATE,
    diarize: output.DEEPGRAM_DIARIZE,
    encoding: output.DEEPGRAM_ENCODING,
    sampleRate: output.DEEPGRAM_SAMPLE_RATE,
    keepAliveMs: output.DEEPGRAM_KEEPALIVE_MS,
  }),
  create: createDeepgram,
});
