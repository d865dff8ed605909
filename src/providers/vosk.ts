import * as v from 'valibot';
import { PCM_RATES, type PcmRate } from '../codec/pcm.ts';
import { toWebSocketScheme, type HandshakeRefusal, type OutboundSocket } from '../net.ts';
import type { Base64Codec } from '../util/base64.ts';
import { urlString } from '../util/env-schema.ts';
import { secretRedactor } from '../util/redact.ts';
import { withDeadline } from '../util/timers.ts';
import {
  ProviderError,
  defineProvider,
  handshakeError,
  openSocket,
  type ConnectionListener,
  type Provider,
  type ProviderConnection,
  type ProviderDeps,
  type SocketReader,
  type Transcript,
} from './provider.ts';
import { arr, asObject, clipDetail, num, parseObject, str, type JsonObject } from './wire.ts';

/**
 * A self-hosted Vosk server, spoken to as Jitsi's Jigasi does. The protocol, as read in
 * alphacep/vosk-server `websocket/asr_server.py` (the server of the `alphacep/kaldi-*`
 * images) and jitsi/jigasi `VoskTranscriptionService.java`:
 *
 * - One WebSocket is one recognizer. Any path; no authentication of its own (a reverse proxy
 *   in front may want some: user info in `VOSK_URL` is sent as `Authorization: Basic`).
 * - A text frame `{"config" : {"sample_rate" : 16000}}` first: the server reads any text
 *   frame containing "config" as one (`sample_rate`, `words`, `max_alternatives`,
 *   `phrase_list`); without it the server's own rate applies (8000 by default).
 * - Binary frames of 16-bit little-endian mono PCM at that rate. Every frame is answered by
 *   exactly one text frame: `{"partial" : "…"}`, the hypothesis so far (repeated while it
 *   does not change, `""` in silence), or, when Vosk's endpointer ends an utterance,
 *   `{"result" : [{"conf", "end", "start", "word"}…], "text" : "…"}` (word times in seconds
 *   of this socket's audio; `{"text" : ""}` for an utterance of no words). With
 *   `max_alternatives` set on the server, results are `{"alternatives" : [{"text",
 *   "confidence", "result"}…]}` instead.
 * - The text frame `{"eof" : 1}`, which the server compares as that exact string (spaces
 *   included): answered by the final result of what is left, after which the handler
 *   returns and the server closes the socket (1000).
 *
 * Vosk cannot finalise an utterance and go on: `eof` ends the recognizer. So a flush (the
 * session's idle commit, `stop`) sends `eof` on the current socket, which delivers its final
 * and closes, and the stream goes on on a new socket opened at once. The session sees one
 * connection spanning those sockets; its audio offsets count across them.
 */

export interface VoskConfig {
  /** ws(s) URL, user info included when given. */
  url: string;
  sampleRate: PcmRate;
}

const RATES = PCM_RATES.map(String);

const Env = v.object({
  VOSK_URL: v.pipe(
    urlString(['ws:', 'wss:', 'http:', 'https:'], 'must be a URL starting with ws://, wss://, http:// or https:// (e.g. ws://localhost:2700)'),
    v.transform(toWebSocketScheme),
  ),
  VOSK_SAMPLE_RATE: v.optional(
    v.pipe(
      v.picklist(RATES, `must be one of ${RATES.join(', ')} (the model's rate: 16000 for most, 8000 for telephony models)`),
      v.transform((s) => Number(s) as PcmRate),
    ),
    '16000',
  ),
});

/** The exact text the server compares against; JSON with other spacing is not recognised. */
const EOF = '{"eof" : 1}';
/**
 * How long a socket given `eof` may take to answer it and close. Vosk decodes whatever it
 * still holds first, which for audio sent faster than real time (a replay) takes a while.
 */
const EOF_ANSWER_MS = 15_000;
/** Query parameters whose values are treated as credentials in `VOSK_URL`. */
const CREDENTIAL_KEY = /key|token|secret|auth|password|signature/i;

/** One recognizer on the server: one socket, from its config to its `eof`. */
class Recognizer {
  socket: OutboundSocket | undefined;
  /** Audio given while the handshake runs, sent once it is open. */
  waiting: Uint8Array[] = [];
  /** Audio given to it (ms). */
  sentMs = 0;
  /** `eof` is (or will be, once open) sent: only its final is still to come. */
  ending = false;
  /** Dropped without `eof` (nothing to finalise): its socket is closed as soon as it opens. */
  dropped = false;
  gone = false;
  endTimer: unknown;
  /** The utterance in progress: its item id and the last partial told. */
  itemId: string | undefined;
  partial = '';

  /** `startMs`: where its audio begins in the connection's audio. */
  constructor(readonly startMs: number) {}
}

interface Word {
  startMs: number;
  endMs: number;
  confidence?: number;
}

class VoskConnection implements ProviderConnection {
  private current: Recognizer | undefined;
  /** Recognizers given `eof` whose final has not come yet. */
  private readonly ending = new Set<Recognizer>();
  private sentMs = 0;
  private sequence = 0;
  private closing = false;
  /** Set while `finish` waits for the ending recognizers. */
  private onDrained: (() => void) | undefined;

  constructor(
    private readonly deps: ProviderDeps,
    private readonly listener: ConnectionListener,
    private readonly openSocketFor: (reader: SocketReader) => Promise<OutboundSocket>,
    private readonly configMessage: string,
    private readonly mask: (text: string) => string,
  ) {}

  /** Opens the first recognizer; its refusal is the connection's (thrown). */
  async start(): Promise<void> {
    const r = new Recognizer(0);
    this.current = r;
    this.attach(r, await this.openSocketFor(this.reader(r)));
  }

  send(audio: Uint8Array, durationMs: number): void {
    const r = this.current;
    if (this.closing || !r) return;
    // The socket may queue the bytes; `audio` can be a view into WASM memory that the next decode reuses.
    const copy = audio.slice();
    if (r.socket) r.socket.send(copy);
    else r.waiting.push(copy);
    r.sentMs += durationMs;
    this.sentMs += durationMs;
  }

  flush(): void {
    const r = this.current;
    if (this.closing || !r || r.sentMs === 0) return;
    this.end(r);
    // Opened now rather than at the next audio, so that the next utterance does not wait for a handshake.
    const next = new Recognizer(this.sentMs);
    this.current = next;
    this.openSocketFor(this.reader(next)).then(
      (socket) => this.attach(next, socket),
      (err: unknown) => this.fail(err instanceof ProviderError ? err : new ProviderError(this.mask(String(err)), 'handshake')),
    );
  }

  async finish(timeoutMs: number): Promise<void> {
    if (this.closing) return;
    const r = this.current;
    this.current = undefined;
    if (r && r.sentMs > 0) this.end(r);
    else if (r) this.drop(r);
    if (this.ending.size > 0) {
      const drained = new Promise<void>((resolve) => (this.onDrained = resolve));
      await withDeadline(drained, timeoutMs, this.deps.timers);
      this.onDrained = undefined;
    }
    this.close();
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    for (const r of [this.current, ...this.ending]) if (r) this.drop(r);
    this.ending.clear();
    this.current = undefined;
  }

  private reader(r: Recognizer): SocketReader {
    return { onMessage: (data) => this.onMessage(r, data), onClose: (code, reason) => this.onClose(r, code, reason) };
  }

  private attach(r: Recognizer, socket: OutboundSocket): void {
    r.socket = socket;
    if (this.closing || r.dropped) {
      socket.close(1000, 'done');
      return;
    }
    socket.send(this.configMessage);
    for (const audio of r.waiting) socket.send(audio);
    r.waiting = [];
    if (r.ending) socket.send(EOF);
  }

  /** Asks `r` for its final: it answers, then the server closes it. */
  private end(r: Recognizer): void {
    r.ending = true;
    this.ending.add(r);
    r.socket?.send(EOF);
    r.endTimer = this.deps.timers.setTimeout(() => {
      if (!r.gone) this.fail(new ProviderError(`Vosk did not answer the end of a stream within ${EOF_ANSWER_MS} ms`, 'closed'));
    }, EOF_ANSWER_MS);
  }

  private drop(r: Recognizer): void {
    r.dropped = true;
    r.waiting = [];
    this.deps.timers.clearTimeout(r.endTimer);
    if (r.socket && !r.gone) r.socket.close(1000, 'done');
  }

  /** The connection is lost: every recognizer goes, and the session replays what was not finalised. */
  private fail(err: ProviderError): void {
    if (this.closing) return;
    this.close();
    this.onDrained?.();
    this.listener.closed(err);
  }

  private onClose(r: Recognizer, code: number, reason: string): void {
    r.gone = true;
    this.deps.timers.clearTimeout(r.endTimer);
    if (this.closing || r.dropped) return;
    if (this.ending.delete(r)) {
      // After `eof` the server answers and ends the handler: 1000. Anything else lost the final.
      if (code !== 1000) return this.fail(this.closeError(code, reason));
      if (this.ending.size === 0) this.onDrained?.();
      return;
    }
    this.fail(this.closeError(code, reason));
  }

  private onMessage(r: Recognizer, data: string | Uint8Array): void {
    if (this.closing || r.dropped || typeof data !== 'string') return;
    const msg = parseObject(data);
    if (!msg) {
      this.listener.error(new ProviderError('Vosk sent a frame that is not a JSON object', 'protocol'));
      return;
    }
    const partial = str(msg, 'partial');
    if (partial !== undefined) return this.onPartial(r, partial.trim());
    const alternative = asObject(arr(msg, 'alternatives')[0]);
    const result = alternative ?? msg;
    const text = str(result, 'text');
    if (text !== undefined) this.onResult(r, text.trim(), words(result), alternative === undefined);
  }

  /** Vosk repeats the partial with every frame it answers: only a change is told. */
  private onPartial(r: Recognizer, text: string): void {
    if (!text || text === r.partial) return;
    r.partial = text;
    r.itemId ??= `u${++this.sequence}`;
    this.listener.transcript({ kind: 'interim', itemId: r.itemId, text });
  }

  /** `wordConfidence`: word `conf` is 0–1; an alternative's `confidence` is a lattice score, not reported. */
  private onResult(r: Recognizer, text: string, list: Word[], wordConfidence: boolean): void {
    const itemId = r.itemId;
    r.itemId = undefined;
    r.partial = '';
    // An utterance of no words: whatever its partials said, there is nothing final to tell.
    if (!text) return;
    const t: Transcript = { kind: 'final', itemId: itemId ?? `u${++this.sequence}`, text };
    if (wordConfidence) t.confidence = mean(list.map((w) => w.confidence));
    if (list.length > 0) {
      // Word times are in the recognizer's audio; the session wants the connection's.
      t.audioStartMs = r.startMs + list[0]!.startMs;
      t.audioEndMs = r.startMs + list.at(-1)!.endMs;
    }
    this.listener.transcript(t);
  }

  private closeError(code: number, reason: string): ProviderError {
    const detail = this.mask(`${code}${reason ? ` ${clipDetail(reason)}` : ''}`);
    // 1011: the server's handler raised (the Python server's answer to a config it cannot read).
    if (code === 1011) return new ProviderError(`Vosk failed (${detail})`, 'provider');
    return new ProviderError(`Vosk closed the connection (${detail})`, 'closed');
  }
}

function words(result: JsonObject | undefined): Word[] {
  const out: Word[] = [];
  for (const raw of arr(result, 'result')) {
    const w = asObject(raw);
    const start = num(w, 'start');
    const end = num(w, 'end');
    if (start === undefined || end === undefined) continue;
    out.push({ startMs: start * 1000, endMs: end * 1000, confidence: num(w, 'conf') });
  }
  return out;
}

function mean(values: readonly (number | undefined)[]): number | undefined {
  const known = values.filter((x): x is number => x !== undefined);
  return known.length ? known.reduce((a, b) => a + b, 0) / known.length : undefined;
}

/** A reverse proxy in front of Vosk explains a refusal in its body, if anywhere. */
function refusalDetail(refusal: HandshakeRefusal): string | undefined {
  return refusal.body.trim() || undefined;
}

/**
 * `VOSK_URL` split for the handshake: user info becomes a Basic `Authorization` header (the
 * same on every runtime, whatever its WebSocket makes of user info), and what could be a
 * credential (user info, credential-like query values) is listed for masking.
 */
export function voskEndpoint(raw: string, base64: Base64Codec): { url: string; headers: Record<string, string>; secrets: string[] } {
  const url = new URL(raw);
  const headers: Record<string, string> = {};
  const secrets: string[] = [];
  if (url.username || url.password) {
    const user = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    const basic = base64.encode(new TextEncoder().encode(`${user}:${password}`));
    headers.Authorization = `Basic ${basic}`;
    secrets.push(url.password, password, basic);
    url.username = '';
    url.password = '';
  }
  for (const [key, value] of url.searchParams) if (CREDENTIAL_KEY.test(key)) secrets.push(value, encodeURIComponent(value));
  return { url: url.toString(), headers, secrets: secrets.filter(Boolean) };
}

export function createVosk(config: VoskConfig, deps: ProviderDeps): Provider {
  const target = voskEndpoint(config.url, deps.base64);
  const mask = secretRedactor(target.secrets);
  const auth = Object.keys(target.headers).length > 0 ? { headers: target.headers } : {};
  const failure = (err: unknown): ProviderError => {
    const e = handshakeError('Vosk', err, '', refusalDetail);
    return new ProviderError(mask(e.message), e.kind, e.retryable);
  };
  // `words`: the results' word times are what tells where an utterance's audio ends.
  const configMessage = JSON.stringify({ config: { sample_rate: config.sampleRate, words: true } });

  return {
    name: 'vosk',
    // A Vosk model is of one language and one rate: `lang` only labels the results.
    formatFor: () => ({ kind: 'pcm16', sampleRate: config.sampleRate }),
    async connect(_request, listener) {
      const conn = new VoskConnection(deps, listener, (reader) => openSocket(deps, target.url, auth, reader, failure), configMessage, mask);
      await conn.start();
      return conn;
    },
  };
}

export const vosk = defineProvider({
  name: 'vosk',
  keyVariable: 'VOSK_URL',
  env: Env,
  config: (output): VoskConfig => ({ url: output.VOSK_URL, sampleRate: output.VOSK_SAMPLE_RATE }),
  create: createVosk,
});
