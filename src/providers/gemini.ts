import * as v from 'valibot';
import { toWebSocketUrl, type OutboundSocket } from '../net.ts';
import { envString, envUrl } from '../util/env-schema.ts';
import { maskSecret, redactUrl } from '../util/redact.ts';
import { withDeadline } from '../util/timers.ts';
import {
  ProviderError,
  defineProvider,
  handshakeFailure,
  openSocket,
  SetupWait,
  type ConnectionListener,
  type ConnectRequest,
  type Provider,
  type ProviderConnection,
  type ProviderDeps,
} from './provider.ts';
import { bool, clipDetail, obj, parseObject, str, type JsonObject } from './wire.ts';

/**
 * Gemini Live API (`BidiGenerateContent` over WebSocket) used as a transcriber: a `setup`
 * naming the model with `inputAudioTranscription`, base64 PCM16 16 kHz in
 * `realtimeInput.audio`, and the transcript from `serverContent.inputTranscription`
 * (never from a model answer). The dedicated `gemini-3.5-transcribe-live` model also
 * streams `interimInputTranscription`, each the whole turn so far. Connections last about
 * ten minutes and announce their end with `goAway`.
 */

export interface GeminiConfig {
  apiKey: string;
  baseUrl: string;
  model: string;
}

const Env = v.object({
  GEMINI_API_KEY: v.string(),
  GEMINI_BASE_URL: envUrl('wss://generativelanguage.googleapis.com', ['ws:', 'wss:', 'http:', 'https:']),
  GEMINI_MODEL: envString('gemini-3.5-transcribe-live'),
});

const LIVE_PATH = '/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent';
const SAMPLE_RATE = 16_000;
/** A bad key or model is only reported after the setup is read, by closing the socket. */
const SETUP_TIMEOUT_MS = 10_000;
/**
 * After `audioStreamEnd`, how long `finish` waits for a turn to show up: the service says
 * nothing at all when the tail held no speech, so waiting the full timeout would be waste.
 */
const SETTLE_MS = 1_500;

interface Turn {
  id: string;
  /** Settled text (`inputTranscription`), accumulated. */
  committed: string;
  /** The latest preview (`interimInputTranscription`). */
  partial: string;
  language?: string;
}

class GeminiConnection implements ProviderConnection {
  private socket!: OutboundSocket;
  private turn: Turn | undefined;
  private sequence = 0;
  private unflushedMs = 0;
  /** When `audioStreamEnd` went out with no transcription seen since. */
  private awaitingSince: number | undefined;
  private closing = false;
  private setup: SetupWait | undefined;
  /** While `finish` waits: re-checks whether anything is still in flight. */
  private idle: (() => void) | undefined;
  private finished: (() => void) | undefined;
  private readonly text = new TextDecoder();

  constructor(
    private readonly deps: ProviderDeps,
    private readonly listener: ConnectionListener,
    private readonly apiKey: string,
  ) {}

  /** Sends the setup; resolves on `setupComplete`, before which no audio may be sent. */
  start(socket: OutboundSocket, setup: object): Promise<void> {
    this.socket = socket;
    const timedOut = () => {
      socket.close(1000, 'setup timed out');
      return new ProviderError(`Gemini did not confirm the session setup within ${SETUP_TIMEOUT_MS} ms`, 'unreachable');
    };
    // A refusal is a close: the socket is gone already.
    this.setup = new SetupWait(this.deps.timers, SETUP_TIMEOUT_MS, timedOut, () => (this.closing = true));
    socket.send(JSON.stringify(setup));
    return this.setup.confirmed;
  }

  send(audio: Uint8Array, durationMs: number): void {
    if (this.closing) return;
    const data = this.deps.base64.encode(audio);
    this.socket.send(`{"realtimeInput":{"audio":{"data":"${data}","mimeType":"audio/pcm;rate=${SAMPLE_RATE}"}}}`);
    this.unflushedMs += durationMs;
  }

  flush(): void {
    if (this.closing || this.unflushedMs === 0) return;
    // Ends the turn server-side; sending audio again reopens the stream.
    this.socket.send('{"realtimeInput":{"audioStreamEnd":true}}');
    this.unflushedMs = 0;
    this.awaitingSince = this.deps.timers.now();
  }

  async finish(timeoutMs: number): Promise<void> {
    this.flush();
    if (!this.closing) {
      const { timers } = this.deps;
      const quiet = new Promise<void>((resolve) => {
        this.finished = resolve;
        this.idle = () => {
          if (this.turn) return;
          const since = this.awaitingSince;
          if (since === undefined || timers.now() - since >= SETTLE_MS) resolve();
        };
      });
      const since = this.awaitingSince;
      const settle = since === undefined ? undefined : timers.setTimeout(() => this.idle?.(), SETTLE_MS - (timers.now() - since));
      this.idle?.();
      await withDeadline(quiet, timeoutMs, timers);
      timers.clearTimeout(settle);
      this.idle = undefined;
      this.finished = undefined;
    }
    this.endTurn(false);
    this.close();
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.socket.close(1000, 'done');
  }

  onClose(code: number, reason: string): void {
    if (this.setup?.pending) return this.setup.refuse(setupError(code, reason, this.apiKey));
    if (this.finished) return this.finished();
    if (this.closing) return;
    this.closing = true;
    // The preview is the best transcript of that speech there will ever be.
    this.endTurn(false);
    this.listener.closed(closeError(code, reason, this.apiKey));
  }

  onMessage(data: string | Uint8Array): void {
    // The service sends its JSON in binary frames as often as in text frames.
    const msg = parseObject(typeof data === 'string' ? data : this.text.decode(data));
    if (!msg) {
      this.listener.error(new ProviderError('Gemini sent a frame that is not a JSON object', 'protocol'));
      return;
    }
    if (msg.setupComplete !== undefined) this.setup?.confirm();
    const content = obj(msg, 'serverContent');
    if (content) this.onContent(content);
    if (msg.goAway !== undefined) this.listener.expiring(durationMs(str(obj(msg, 'goAway'), 'timeLeft')) ?? 0);
    const error = obj(msg, 'error');
    if (error) {
      // Masked before clipping: a clip through the key would leave a piece of it unmasked.
      const detail = clipDetail(maskSecret(str(error, 'message') ?? JSON.stringify(error), this.apiKey));
      this.listener.error(new ProviderError(`Gemini error: ${detail}`, 'provider'));
    }
  }

  private onContent(content: JsonObject): void {
    const interim = obj(content, 'interimInputTranscription');
    const preview = str(interim, 'text')?.trim();
    if (preview) {
      const turn = this.current(interim);
      turn.partial = preview;
      this.emitInterim(turn);
    }
    const input = obj(content, 'inputTranscription');
    const settled = str(input, 'text');
    if (settled?.trim()) {
      const turn = this.current(input);
      turn.committed = appendSettled(turn.committed, settled);
      turn.partial = '';
      this.emitInterim(turn);
    }
    if (bool(input, 'finished') || bool(content, 'turnComplete') || bool(content, 'generationComplete')) this.endTurn(true);
  }

  private current(transcription: JsonObject | undefined): Turn {
    this.awaitingSince = undefined;
    this.turn ??= { id: `t${++this.sequence}`, committed: '', partial: '' };
    this.turn.language = str(transcription, 'languageCode') ?? this.turn.language;
    return this.turn;
  }

  private emitInterim(turn: Turn): void {
    const text = combine(turn.committed, turn.partial);
    if (text) this.listener.transcript({ kind: 'interim', itemId: turn.id, text, language: turn.language });
  }

  /**
   * `complete`: the service closed the turn, so its settled text is the transcript. Otherwise
   * the connection ended mid-turn and the preview counts too.
   */
  private endTurn(complete: boolean): void {
    const turn = this.turn;
    this.turn = undefined;
    if (turn) {
      const text = complete ? turn.committed.trim() || turn.partial : combine(turn.committed, turn.partial);
      if (text) this.listener.transcript({ kind: 'final', itemId: turn.id, text, language: turn.language });
    }
    this.idle?.();
  }
}

/**
 * Settled fragments continue each other (Live models send " word" deltas; the transcribe
 * model one text per turn). A fragment equal to the text so far is a repeated word, not a
 * restatement, so nothing is deduplicated.
 */
function appendSettled(committed: string, fragment: string): string {
  if (!committed.trim()) return fragment;
  const glued = /\s$/.test(committed) || /^\s/.test(fragment);
  return glued ? committed + fragment : `${committed} ${fragment}`;
}

/** The whole hypothesis: a preview may restate the settled text or only continue it. */
function combine(committed: string, partial: string): string {
  const settled = committed.trim();
  if (!settled) return partial;
  if (!partial || partial.toLowerCase().startsWith(settled.toLowerCase())) return partial || settled;
  return `${settled} ${partial}`;
}

/** A protobuf JSON Duration such as "50s" or "9.5s". */
function durationMs(value: string | undefined): number | undefined {
  const match = value ? /^(\d+(?:\.\d+)?)s$/.exec(value.trim()) : null;
  return match ? Math.round(Number(match[1]) * 1000) : undefined;
}

/**
 * Refusals arrive as a close right after the setup (1007 "API key not valid", 1008 for an
 * unknown model), not as an HTTP status.
 */
function setupError(code: number, reason: string, apiKey: string): ProviderError {
  const message = maskSecret(`Gemini refused the session (${code}${reason ? ` ${clipDetail(reason)}` : ''})`, apiKey);
  const lower = reason.toLowerCase();
  if (lower.includes('api key') || lower.includes('unauthenticated') || lower.includes('permission')) {
    return new ProviderError(message, 'auth', false);
  }
  if (exhausted(lower)) return new ProviderError(message, 'rate_limited');
  if (lower.includes('not found') || lower.includes('not supported')) return new ProviderError(message, 'handshake', false);
  return new ProviderError(message, 'handshake');
}

/** The service closes with 1011 "Resource has been exhausted (e.g. check quota)" when over its limits. */
const exhausted = (lowerReason: string) => lowerReason.includes('quota') || lowerReason.includes('exhausted') || lowerReason.includes('rate limit');

function closeError(code: number, reason: string, apiKey: string): ProviderError {
  const message = maskSecret(`Gemini closed the connection (${code}${reason ? ` ${clipDetail(reason)}` : ''})`, apiKey);
  if (exhausted(reason.toLowerCase())) return new ProviderError(message, 'rate_limited');
  return new ProviderError(message, code === 1007 ? 'protocol' : 'closed');
}

function handshakeFailed(err: unknown, apiKey: string): ProviderError {
  // The key travels in the URL, which an error message could quote.
  const what = redactUrl(maskSecret(err instanceof Error ? err.message : String(err), apiKey));
  const { kind, retryable } = handshakeFailure(err);
  return new ProviderError(`Gemini handshake failed: ${what}`, kind, retryable);
}

export function createGemini(config: GeminiConfig, deps: ProviderDeps): Provider {
  // The Live API takes the key as a query parameter; keep the URL out of logs (redactUrl).
  const url = `${toWebSocketUrl(config.baseUrl)}${LIVE_PATH}?key=${encodeURIComponent(config.apiKey)}`;
  const model = config.model.startsWith('models/') ? config.model : `models/${config.model}`;

  return {
    name: 'gemini',
    formatFor: () => ({ kind: 'pcm16', sampleRate: SAMPLE_RATE }),
    // Connections end after ~10 min (announced by goAway); rotate before that regardless.
    maxConnectionMs: 10 * 60_000,
    // Its automatic activity detection ends turns.
    detectsTurns: true,
    async connect(request: ConnectRequest, listener: ConnectionListener) {
      const conn = new GeminiConnection(deps, listener, config.apiKey);
      // The key is in the URL: no header or subprotocol carries it.
      const socket = await openSocket(deps, url, {}, conn, (err) => handshakeFailed(err, config.apiKey));
      const transcription: Record<string, unknown> = {};
      if (request.language) transcription.languageCodes = [request.language];
      await conn.start(socket, {
        setup: {
          model,
          generationConfig: { responseModalities: ['TEXT'] },
          inputAudioTranscription: transcription,
        },
      });
      return conn;
    },
  };
}

export const gemini = defineProvider({
  name: 'gemini',
  keyVariable: 'GEMINI_API_KEY',
  env: Env,
  config: (output): GeminiConfig => ({ apiKey: output.GEMINI_API_KEY, baseUrl: output.GEMINI_BASE_URL, model: output.GEMINI_MODEL }),
  create: createGemini,
});
