import * as v from 'valibot';
import { toWebSocketScheme, type HandshakeRefusal, type OutboundSocket } from '../net.ts';
import { envJson, envOptionalString, envString, envUrl } from '../util/env-schema.ts';
import { withDeadline } from '../util/timers.ts';
import {
  ProviderError,
  defineProvider,
  handshakeError,
  openSocket,
  SetupWait,
  type ConnectionListener,
  type ConnectRequest,
  type Provider,
  type ProviderConnection,
  type ProviderDeps,
  type ProviderErrorKind,
} from './provider.ts';
import { asObject, clipDetail, parseObject, str } from './wire.ts';

/**
 * OpenAI Realtime in transcription mode (GA interface): `session.update` with
 * `session.type: "transcription"`, base64 PCM16 24 kHz appends, server VAD, and
 * `conversation.item.input_audio_transcription.{delta,completed,failed}` back.
 */

export interface OpenAIConfig {
  apiKey: string;
  model: string;
  baseUrl: string;
  turnDetection: Record<string, unknown> | null;
  prompt?: string;
  noiseReduction?: 'near_field' | 'far_field';
}

const DEFAULT_TURN_DETECTION = { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 300 };

const isTurnDetection = (x: unknown): x is Record<string, unknown> | null =>
  x === null || (typeof x === 'object' && !Array.isArray(x));

const Env = v.object({
  OPENAI_API_KEY: v.string(),
  OPENAI_MODEL: envString('gpt-4o-transcribe'),
  OPENAI_BASE_URL: envUrl('wss://api.openai.com/v1', ['ws:', 'wss:', 'http:', 'https:']),
  OPENAI_TURN_DETECTION: envJson(isTurnDetection, 'a JSON object (turn_detection settings) or null'),
  OPENAI_TRANSCRIPTION_PROMPT: envOptionalString,
  OPENAI_NOISE_REDUCTION: v.optional(v.picklist(['near_field', 'far_field'], 'must be near_field or far_field')),
});

/** How long a completion may wait for an earlier item before it is released anyway. */
const ORDER_WAIT_MS = 5_000;
/**
 * A wrong key is accepted at the handshake and only refused by an `error` event after it;
 * the `session.updated` answer to our `session.update` is what says the session works.
 */
const SETUP_TIMEOUT_MS = 10_000;

/** Error codes (or types) that say the key or the account is the problem: trying again soon cannot help. */
const FATAL_CODES: Readonly<Record<string, { kind: ProviderErrorKind; retryable: boolean }>> = {
  invalid_api_key: { kind: 'auth', retryable: false },
  insufficient_quota: { kind: 'rate_limited', retryable: false },
  rate_limit_exceeded: { kind: 'rate_limited', retryable: true },
  model_not_found: { kind: 'handshake', retryable: false },
  invalid_model: { kind: 'handshake', retryable: false },
};

interface Item {
  id: string;
  text: string;
  audioStartMs?: number;
  /** Where server VAD heard the speech end (`speech_stopped`); absent for manual commits. */
  audioEndMs?: number;
  done: boolean;
  final?: string;
  since: number;
}

class OpenAIConnection implements ProviderConnection {
  private socket!: OutboundSocket;
  private readonly items = new Map<string, Item>();
  /** Committed items in audio order; completions are released in this order. */
  private readonly order: string[] = [];
  private uncommittedMs = 0;
  private awaitingCommit = false;
  private closing = false;
  /** An error after which the service closes the socket; the close reports it. */
  private fatal: ProviderError | undefined;
  private setup: SetupWait | undefined;
  /** Set while `finish` waits; `gone`: the socket closed, nothing more will come. */
  private idle: ((gone?: boolean) => void) | undefined;
  /** Looks again when a stalled head's wait is over: no other event may come to release what waits behind it. */
  private releaseTimer: unknown;

  constructor(
    private readonly deps: ProviderDeps,
    private readonly listener: ConnectionListener,
  ) {}

  /** Sends the session.update; resolves on `session.updated`, rejects on the error that refuses it. */
  start(socket: OutboundSocket, sessionUpdate: object): Promise<void> {
    this.socket = socket;
    const timedOut = () => new ProviderError(`OpenAI did not confirm the session within ${SETUP_TIMEOUT_MS} ms`, 'unreachable');
    this.setup = new SetupWait(this.deps.timers, SETUP_TIMEOUT_MS, timedOut, () => this.close());
    socket.send(JSON.stringify(sessionUpdate));
    return this.setup.confirmed;
  }

  send(audio: Uint8Array, durationMs: number): void {
    this.socket.send(`{"type":"input_audio_buffer.append","audio":"${this.deps.base64.encode(audio)}"}`);
    this.uncommittedMs += durationMs;
  }

  flush(): void {
    if (this.uncommittedMs === 0) return;
    this.socket.send('{"type":"input_audio_buffer.commit"}');
    this.uncommittedMs = 0;
    this.awaitingCommit = true;
  }

  async finish(timeoutMs: number): Promise<void> {
    this.flush();
    const drained = new Promise<void>((resolve) => {
      this.idle = (gone = false) => {
        if (gone || (!this.awaitingCommit && this.items.size === 0)) resolve();
      };
    });
    this.idle?.();
    await withDeadline(drained, timeoutMs, this.deps.timers);
    this.idle = undefined;
    this.close();
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.deps.timers.clearTimeout(this.releaseTimer);
    this.socket.close(1000, 'done');
  }

  onClose(code: number, reason: string): void {
    const closed = () => this.fatal ?? new ProviderError(`OpenAI closed the connection (${code}${reason ? ` ${clipDetail(reason)}` : ''})`, 'closed');
    if (this.setup?.pending) return this.setup.refuse(closed());
    if (this.closing) return;
    this.closing = true;
    this.idle?.(true);
    this.listener.closed(closed());
  }

  onMessage(data: string | Uint8Array): void {
    if (typeof data !== 'string') return;
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(data) as Record<string, unknown>;
    } catch {
      this.listener.error(new ProviderError('OpenAI sent a frame that is not JSON', 'protocol'));
      return;
    }
    const itemId = typeof msg.item_id === 'string' ? msg.item_id : undefined;
    switch (msg.type) {
      case 'session.updated':
        this.setup?.confirm();
        break;
      case 'input_audio_buffer.speech_started':
        if (itemId) this.item(itemId).audioStartMs = Number(msg.audio_start_ms);
        break;
      case 'input_audio_buffer.speech_stopped':
        if (itemId) this.item(itemId).audioEndMs = Number(msg.audio_end_ms);
        break;
      case 'input_audio_buffer.committed':
        // Not a reason to forget uncommitted audio: a server-VAD commit covers the audio up
        // to the end of speech, and whatever was sent after it still needs our idle commit
        // (an empty buffer only earns a harmless commit_empty).
        this.awaitingCommit = false;
        if (itemId) {
          this.item(itemId);
          this.order.push(itemId);
        }
        break;
      case 'conversation.item.input_audio_transcription.delta': {
        if (!itemId || typeof msg.delta !== 'string') break;
        const item = this.item(itemId);
        if (item.done) break;
        item.text += msg.delta;
        this.listener.transcript({ kind: 'interim', itemId, text: item.text, audioStartMs: item.audioStartMs });
        break;
      }
      case 'conversation.item.input_audio_transcription.completed':
        if (!itemId) break;
        this.complete(this.item(itemId), typeof msg.transcript === 'string' ? msg.transcript : '');
        break;
      case 'conversation.item.input_audio_transcription.failed':
        if (!itemId) break;
        this.listener.error(new ProviderError(`transcription failed: ${errorText(msg.error)}`, 'provider'));
        this.complete(this.item(itemId), undefined);
        break;
      case 'error':
        this.onError(msg.error);
        break;
      default:
        break;
    }
  }

  private onError(error: unknown): void {
    const fields = asObject(error);
    const code = str(fields, 'code');
    if (code === 'input_audio_buffer_commit_empty') {
      this.awaitingCommit = false;
      this.idle?.();
      return;
    }
    // The service closes the socket right after the ones retrying cannot fix (3000 / 4000).
    const known = FATAL_CODES[code ?? ''] ?? FATAL_CODES[str(fields, 'type') ?? ''];
    // Before `session.updated`, any error refuses our session.update, and the same one would be refused again.
    const classified = known ?? (this.setup?.pending ? { kind: 'handshake' as const, retryable: false } : undefined);
    const err = new ProviderError(`OpenAI error${code ? ` ${code}` : ''}: ${errorText(error)}`, classified?.kind ?? 'provider', classified?.retryable ?? true);
    if (this.setup?.pending) return this.setup.refuse(err);
    if (known && !known.retryable) this.fatal = err;
    this.listener.error(err);
  }

  private item(id: string): Item {
    let item = this.items.get(id);
    if (!item) {
      item = { id, text: '', done: false, since: this.deps.timers.now() };
      this.items.set(id, item);
    }
    return item;
  }

  /** `text` undefined: the item failed and yields no final, but stops holding later ones. */
  private complete(item: Item, text: string | undefined): void {
    item.done = true;
    item.final = text;
    if (!this.order.includes(item.id)) this.order.push(item.id);
    this.release();
  }

  /** Emits completed finals in audio order; a head that never completes is skipped after a while. */
  private release(): void {
    const now = this.deps.timers.now();
    while (this.order.length) {
      const head = this.items.get(this.order[0]!);
      if (head && !head.done) {
        const laterDone = this.order.some((id) => this.items.get(id)?.done);
        if (!laterDone) break;
        const waited = now - head.since;
        if (waited < ORDER_WAIT_MS) {
          if (this.releaseTimer === undefined) {
            this.releaseTimer = this.deps.timers.setTimeout(() => {
              this.releaseTimer = undefined;
              this.release();
            }, ORDER_WAIT_MS - waited);
          }
          break;
        }
      }
      this.order.shift();
      if (!head) continue;
      this.items.delete(head.id);
      if (head.done && head.final !== undefined && head.final.trim() !== '') {
        this.listener.transcript({ kind: 'final', itemId: head.id, text: head.final, audioStartMs: head.audioStartMs, audioEndMs: head.audioEndMs });
      }
    }
    this.idle?.();
  }
}

function errorText(error: unknown): string {
  if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message;
  }
  return 'unknown error';
}

/** OpenAI explains a refused handshake in its JSON body's `error.message`. */
function refusalDetail(refusal: HandshakeRefusal): string | undefined {
  const json = refusal.body ? parseObject(refusal.body) : undefined;
  return (json && str(asObject(json.error), 'message')) || refusal.body.trim();
}

/**
 * `${OPENAI_BASE_URL}/realtime?intent=transcription`, the base's own query parameters kept:
 * a self-hosted server may need some (speaches takes its transcription model as `model`).
 */
export function realtimeUrl(baseUrl: string): string {
  const url = new URL(toWebSocketScheme(baseUrl));
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/realtime`;
  url.searchParams.set('intent', 'transcription');
  return url.toString();
}

export function createOpenAI(config: OpenAIConfig, deps: ProviderDeps): Provider {
  const url = realtimeUrl(config.baseUrl);
  // One auth form only: a header where the runtime can set one, else the subprotocol pair.
  const auth = deps.connector.supportsHeaders
    ? { headers: { Authorization: `Bearer ${config.apiKey}` } }
    : { protocols: ['realtime', `openai-insecure-api-key.${config.apiKey}`] };

  return {
    name: 'openai',
    formatFor: () => ({ kind: 'pcm16', sampleRate: 24000 }),
    // Realtime sessions are capped at 60 min (was 15, then 30); rotate well before.
    maxConnectionMs: 28 * 60_000,
    detectsTurns: config.turnDetection !== null,
    async connect(request: ConnectRequest, listener: ConnectionListener) {
      const conn = new OpenAIConnection(deps, listener);
      const socket = await openSocket(deps, url, auth, conn, (err) => handshakeError('OpenAI', err, config.apiKey, refusalDetail));
      const transcription: Record<string, unknown> = { model: config.model };
      if (request.language) transcription.language = request.language;
      if (config.prompt) transcription.prompt = config.prompt;
      const input: Record<string, unknown> = {
        format: { type: 'audio/pcm', rate: 24000 },
        transcription,
        turn_detection: config.turnDetection,
      };
      if (config.noiseReduction) input.noise_reduction = { type: config.noiseReduction };
      await conn.start(socket, { type: 'session.update', session: { type: 'transcription', audio: { input } } });
      return conn;
    },
  };
}

export const openai = defineProvider({
  name: 'openai',
  keyVariable: 'OPENAI_API_KEY',
  env: Env,
  config: (output): OpenAIConfig => ({
    apiKey: output.OPENAI_API_KEY,
    model: output.OPENAI_MODEL,
    baseUrl: output.OPENAI_BASE_URL,
    turnDetection: output.OPENAI_TURN_DETECTION === undefined ? DEFAULT_TURN_DETECTION : output.OPENAI_TURN_DETECTION,
    prompt: output.OPENAI_TRANSCRIPTION_PROMPT,
    noiseReduction: output.OPENAI_NOISE_REDUCTION,
  }),
  create: createOpenAI,
});
