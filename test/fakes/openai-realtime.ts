/**
 * A fake OpenAI Realtime server in transcription mode, on 127.0.0.1, for tests and the
 * load benchmark. It follows the GA Realtime API as documented on platform.openai.com
 * ("Realtime transcription" guide and the Realtime server/client events reference,
 * read 2026-11), plus what users observed of the live service (GitHub issues, 2025-26):
 *
 * - `GET /v1/realtime?intent=transcription`, upgraded; auth by `Authorization: Bearer`
 *   header or by the subprotocols `realtime` + `openai-insecure-api-key.<key>`.
 *   A wrong key is accepted (101), answered with an `error` event `invalid_api_key`, then
 *   closed with 3000 `invalid_request_error.invalid_api_key`, as the service does.
 * - `session.created` on open; `session.update` (session.type "transcription") answered
 *   with `session.updated`; bad session shapes get `invalid_request_error` errors.
 * - `input_audio_buffer.append` (base64 PCM16LE, 24 kHz mono), server VAD from the audio's
 *   energy (`speech_started` / `speech_stopped` / `committed`), manual `commit` (an empty
 *   buffer gives `input_audio_buffer_commit_empty`), then per item
 *   `conversation.item.input_audio_transcription.delta`s and `.completed`.
 *
 * The transcript is computed from the audio received (`recognize`): one word per 200 ms
 * of the utterance, chosen by its loudness. A broken decoder, a wrong rate or lost audio
 * changes the words, so tests that compare transcripts catch it.
 *
 * Faults: a handshake refused with an HTTP status (always, or the next N), the key echoed
 * back in refusals and errors, a connection closed mid-utterance,
 * error events, slow answers, completions out of order.
 */
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import { FakeServer, UpgradeListener } from './listener.ts';

export const SAMPLE_RATE = 24_000;
const FRAME = SAMPLE_RATE / 50; // 20 ms
const WORDS = ['ash', 'birch', 'cedar', 'dogwood', 'elm', 'fir', 'ginkgo', 'hazel', 'ivy', 'juniper', 'kapok', 'larch'];

/** The fake's speech recogniser: one word per 200 ms block, by the block's level in dBFS. */
export function recognize(pcm: Int16Array): string {
  const block = SAMPLE_RATE / 5;
  const words: string[] = [];
  for (let at = 0; at + block / 2 <= pcm.length; at += block) {
    const db = levelDb(pcm.subarray(at, Math.min(at + block, pcm.length)));
    if (db < -50) continue;
    words.push(WORDS[Math.min(WORDS.length - 1, Math.max(0, Math.floor((db + 50) / 4)))]!);
  }
  return words.join(' ');
}

function levelDb(samples: Int16Array): number {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return 10 * Math.log10(sum / Math.max(1, samples.length) / (32768 * 32768) + 1e-12);
}

export interface FakeOpenAIOptions {
  /** The key the fake accepts. */
  apiKey?: string;
  /** Energy VAD: frames louder than this (dBFS) are speech. */
  speechDb?: number;
  /**
   * Benchmark mode: record only when each append arrived; no audio kept, no VAD, no
   * transcripts (a load test's hundreds of streams would otherwise hold gigabytes).
   */
  timingOnly?: boolean;
}

export interface Faults {
  /** Refuse the next handshakes with this HTTP status. */
  refuseHandshake?: number;
  /** Refuse this many of the next handshakes with this status (counted down). */
  refuseNext?: { count: number; status: number };
  /** Quote the key the client presented in refusals and in the invalid_api_key error, as a careless service might. */
  echoKey?: boolean;
  /** Close (1011 server_error) a connection after this many appends inside an utterance. */
  closeMidUtteranceAfterAppends?: number;
  /** How many connections that fault may close (counted down; unlimited when absent). */
  closeMidUtteranceTimes?: number;
  /** Send this error event after each `session.update`. */
  errorAfterSessionUpdate?: { type: string; code: string; message: string };
  /** Delay every transcription event by this long (slow answers). */
  answerDelayMs?: number;
  /** Hold each completion until the next item has completed (out of order), except the last. */
  completeOutOfOrder?: boolean;
  /** Never answer `session.update` (a service that took the socket, then hangs). */
  holdSessionUpdate?: boolean;
  /** The n-th committed item of each connection (1-based) never gets a transcription event. */
  leaveUncompleted?: number;
}

interface Item {
  id: string;
  startSample: number;
  endSample?: number;
}

/** One client connection, as the fake saw it. */
export class FakeRealtimeConnection {
  readonly headers: IncomingMessage['headers'];
  readonly url: string;
  readonly protocols: string[];
  /** The `session` object of every `session.update`. */
  readonly sessionUpdates: Record<string, unknown>[] = [];
  /** Problems with what the client sent (tests assert this stays empty). */
  readonly violations: string[] = [];
  /** Every server event sent. */
  readonly sent: Record<string, unknown>[] = [];
  appends = 0;
  commits = 0;
  /** Audio appended so far (ms): what a test waits for, however the proxy batched it. */
  get audioMs(): number {
    return (this.samples * 1000) / SAMPLE_RATE;
  }
  closedWith: { code: number; reason: string; by: 'client' | 'server' } | undefined;
  /** timingOnly: arrival of each append on the system's monotonic clock (ns), comparable across processes. */
  readonly appendArrivals: bigint[] = [];
  private chunks: Int16Array[] = [];
  private samples = 0;
  private bufferStart = 0;
  private speech: Item | undefined;
  private silentFrames = 0;
  private pendingFrame = new Int16Array(FRAME);
  private pendingLength = 0;
  private itemSeq = 0;
  private heldCompletion: Record<string, unknown> | undefined;
  private appendsInUtterance = 0;
  private committedItems = 0;

  constructor(
    private readonly ws: WebSocket,
    req: IncomingMessage,
    private readonly fake: FakeOpenAI,
    readonly authorized: boolean,
  ) {
    this.headers = req.headers;
    this.url = req.url ?? '';
    this.protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter(Boolean);
  }

  /** All PCM appended on this connection. */
  pcm(): Int16Array {
    if (this.chunks.length !== 1) {
      const all = new Int16Array(this.samples);
      let at = 0;
      for (const c of this.chunks) {
        all.set(c, at);
        at += c.length;
      }
      this.chunks = [all];
    }
    return this.chunks[0] ?? new Int16Array(0);
  }

  /** Whether an utterance is open: speech started and neither silence nor a commit ended it. */
  get speaking(): boolean {
    return this.speech !== undefined;
  }

  /** The transcripts of the completed items, in the order they were sent. */
  completed(): string[] {
    return this.sent
      .filter((e) => e.type === 'conversation.item.input_audio_transcription.completed')
      .map((e) => e.transcript as string);
  }

  private get turnDetection(): Record<string, unknown> | null {
    const last = this.sessionUpdates.at(-1) as { audio?: { input?: { turn_detection?: Record<string, unknown> | null } } } | undefined;
    const td = last?.audio?.input?.turn_detection;
    return td === undefined ? { type: 'server_vad', prefix_padding_ms: 300, silence_duration_ms: 500 } : td;
  }

  send(event: Record<string, unknown>): void {
    const full = { event_id: `event_${++this.fake.eventSeq}`, ...event };
    this.sent.push(full);
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(full));
    this.fake.notify();
  }

  error(type: string, code: string | null, message: string): void {
    this.send({ type: 'error', error: { type, code, message, param: null, event_id: null } });
  }

  close(code: number, reason: string): void {
    this.closedWith ??= { code, reason, by: 'server' };
    this.ws.close(code, reason);
  }

  onMessage(text: string): void {
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(text) as Record<string, unknown>;
    } catch {
      this.violations.push('a frame that is not JSON');
      this.error('invalid_request_error', 'invalid_json', "The server couldn't parse the message as JSON.");
      return;
    }
    switch (event.type) {
      case 'session.update':
        return this.onSessionUpdate(event.session);
      case 'input_audio_buffer.append':
        return this.onAppend(event.audio);
      case 'input_audio_buffer.commit':
        return this.onCommit();
      case 'input_audio_buffer.clear':
        this.bufferStart = this.samples;
        this.send({ type: 'input_audio_buffer.cleared' });
        return;
      default:
        this.violations.push(`unknown client event ${String(event.type)}`);
        this.error('invalid_request_error', 'invalid_value', `Invalid value: '${String(event.type)}'.`);
    }
  }

  private onSessionUpdate(session: unknown): void {
    const s = session as { type?: unknown; audio?: { input?: { format?: { type?: unknown; rate?: unknown }; transcription?: { model?: unknown } } } };
    if (typeof session !== 'object' || session === null || s.type !== 'transcription') {
      this.violations.push('session.update without session.type "transcription"');
      this.error('invalid_request_error', 'missing_required_parameter', "Missing required parameter: 'session.type'.");
      return;
    }
    const format = s.audio?.input?.format;
    if (format?.type !== 'audio/pcm' || format.rate !== SAMPLE_RATE) {
      this.violations.push(`unexpected input format ${JSON.stringify(format)}`);
    }
    const model = s.audio?.input?.transcription?.model;
    if (typeof model !== 'string' || !model.includes('transcribe')) {
      this.error('invalid_request_error', 'invalid_model', `Model "${String(model)}" is not supported in transcription mode.`);
      this.close(4000, 'invalid_request_error.invalid_model');
      return;
    }
    this.sessionUpdates.push(session as Record<string, unknown>);
    if (this.fake.faults.holdSessionUpdate) return;
    this.send({ type: 'session.updated', session: { object: 'realtime.transcription_session', ...(session as object) } });
    const fault = this.fake.faults.errorAfterSessionUpdate;
    if (fault) this.error(fault.type, fault.code, fault.message);
  }

  private onAppend(audio: unknown): void {
    if (this.fake.options.timingOnly) {
      // One arrival per 20 ms frame the append carries (24 kHz int16: 960 bytes), so that a
      // proxy that gathers frames into fewer messages is timed frame by frame all the same.
      const at = process.hrtime.bigint();
      const bytes = typeof audio === 'string' ? (audio.length * 3) / 4 : 0;
      const frames = Math.max(1, Math.round(bytes / 960));
      for (let i = 0; i < frames; i++) this.appendArrivals.push(at);
      // Counted in frames too: the load benchmarks compare them with the frames they sent.
      this.appends += frames;
      return;
    }
    if (this.sessionUpdates.length === 0) this.violations.push('audio appended before session.update');
    if (typeof audio !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(audio)) {
      this.violations.push('append with invalid base64');
      this.error('invalid_request_error', 'invalid_value', 'Invalid base64 audio.');
      return;
    }
    const bytes = Buffer.from(audio, 'base64');
    if (bytes.length % 2 !== 0) this.violations.push('append of an odd number of bytes');
    const pcm = new Int16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + (bytes.length & ~1)));
    this.appends++;
    this.chunks.push(pcm);
    const base = this.samples;
    this.samples += pcm.length;
    const faults = this.fake.faults;
    if (this.speech && ++this.appendsInUtterance === faults.closeMidUtteranceAfterAppends && faults.closeMidUtteranceTimes !== 0) {
      if (faults.closeMidUtteranceTimes !== undefined) faults.closeMidUtteranceTimes--;
      this.close(1011, 'server_error');
      return;
    }
    if (this.turnDetection !== null) this.vad(pcm, base);
  }

  /** Server VAD on whole 20 ms frames of the stream. */
  private vad(pcm: Int16Array, base: number): void {
    const td = this.turnDetection!;
    const silenceFrames = Math.ceil(Number(td.silence_duration_ms ?? 500) / 20);
    const prefix = Math.round((Number(td.prefix_padding_ms ?? 300) * SAMPLE_RATE) / 1000);
    let at = 0;
    while (at < pcm.length) {
      const take = Math.min(FRAME - this.pendingLength, pcm.length - at);
      this.pendingFrame.set(pcm.subarray(at, at + take), this.pendingLength);
      this.pendingLength += take;
      at += take;
      if (this.pendingLength < FRAME) break;
      this.pendingLength = 0;
      const frameEnd = base + at;
      const loud = levelDb(this.pendingFrame) > (this.fake.options.speechDb ?? -42);
      if (!this.speech) {
        if (!loud) continue;
        const start = Math.max(this.bufferStart, frameEnd - FRAME - prefix);
        this.speech = { id: this.newItemId(), startSample: start };
        this.silentFrames = 0;
        this.appendsInUtterance = 0;
        this.send({ type: 'input_audio_buffer.speech_started', audio_start_ms: this.ms(start), item_id: this.speech.id });
      } else if (loud) {
        this.silentFrames = 0;
      } else if (++this.silentFrames >= silenceFrames) {
        const item = this.speech;
        item.endSample = frameEnd;
        this.speech = undefined;
        this.send({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: this.ms(frameEnd), item_id: item.id });
        this.commitItem(item);
      }
    }
  }

  private onCommit(): void {
    this.commits++;
    const end = this.samples;
    const start = this.speech?.startSample ?? this.bufferStart;
    if (end - start < SAMPLE_RATE / 10) {
      this.error(
        'invalid_request_error',
        'input_audio_buffer_commit_empty',
        `Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has ${this.ms(end - start).toFixed(2)}ms of audio.`,
      );
      return;
    }
    const item = this.speech ?? { id: this.newItemId(), startSample: start };
    item.endSample = end;
    this.speech = undefined;
    this.commitItem(item);
  }

  private commitItem(item: Item): void {
    const previous = this.sent.filter((e) => e.type === 'input_audio_buffer.committed').at(-1)?.item_id ?? null;
    this.bufferStart = item.endSample!;
    this.send({ type: 'input_audio_buffer.committed', previous_item_id: previous, item_id: item.id });
    this.send({
      type: 'conversation.item.added',
      previous_item_id: previous,
      item: { id: item.id, type: 'message', role: 'user', status: 'completed', content: [{ type: 'input_audio', transcript: null }] },
    });
    if (++this.committedItems === this.fake.faults.leaveUncompleted) return;
    const text = recognize(this.pcm().subarray(item.startSample, item.endSample));
    const answer = () => this.transcribe(item.id, text);
    const delay = this.fake.faults.answerDelayMs;
    if (delay) setTimeout(answer, delay);
    else answer();
  }

  private transcribe(itemId: string, text: string): void {
    let sofar = '';
    for (const word of text.split(' ').filter(Boolean)) {
      const delta = sofar ? ` ${word}` : word;
      sofar += delta;
      this.send({ type: 'conversation.item.input_audio_transcription.delta', item_id: itemId, content_index: 0, delta });
    }
    const completed = {
      type: 'conversation.item.input_audio_transcription.completed',
      item_id: itemId,
      content_index: 0,
      transcript: text,
      usage: { type: 'duration', seconds: 1 },
    };
    if (!this.fake.faults.completeOutOfOrder) return this.send(completed);
    // Out of order: this item's completion waits for the next one's.
    const held = this.heldCompletion;
    if (held) {
      this.send(completed);
      this.send(held);
      this.heldCompletion = undefined;
    } else {
      this.heldCompletion = completed;
      // The last item of a stream has no successor: release it after a while.
      setTimeout(() => {
        if (this.heldCompletion === completed) {
          this.heldCompletion = undefined;
          this.send(completed);
        }
      }, 300);
    }
  }

  private newItemId(): string {
    return `item_${this.fake.id}${(++this.itemSeq).toString().padStart(4, '0')}`;
  }

  private ms(samples: number): number {
    return Math.round((samples * 1000) / SAMPLE_RATE);
  }
}

export class FakeOpenAI extends FakeServer {
  readonly connections: FakeRealtimeConnection[] = [];
  /** Upgrade requests, refused or not, and how many of them were refused. */
  handshakes = 0;
  refused = 0;
  faults: Faults = {};
  eventSeq = 0;
  readonly id = Math.random().toString(36).slice(2, 8);

  private constructor(
    listener: UpgradeListener,
    readonly options: FakeOpenAIOptions,
  ) {
    super(listener, 'fake OpenAI');
  }

  static async start(options: FakeOpenAIOptions = {}): Promise<FakeOpenAI> {
    // The handler runs only once a client connects, after `fake` is assigned.
    let fake: FakeOpenAI | undefined;
    const listener = await UpgradeListener.listen((req, socket, head) => fake!.onUpgrade(req, socket, head), { subprotocol: 'realtime' });
    fake = new FakeOpenAI(listener, options);
    return fake;
  }

  get apiKey(): string {
    return this.options.apiKey ?? 'sk-test-key';
  }

  /** The value for OPENAI_BASE_URL. */
  get baseUrl(): string {
    return `ws://127.0.0.1:${this.listener.port}/v1`;
  }

  private onUpgrade(req: IncomingMessage, socket: import('node:stream').Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const refuse = (status: number, body: string) => {
      socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      this.refused++;
      this.notify();
    };
    const header = req.headers.authorization;
    const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    const protocolKey = protocols.find((p) => p.startsWith('openai-insecure-api-key.'))?.slice('openai-insecure-api-key.'.length);
    const headerKey = header?.startsWith('Bearer ') ? header.slice(7) : undefined;
    const presented = this.faults.echoKey ? ` (key ${headerKey ?? protocolKey})` : '';
    const injected = (status: number) => refuse(status, JSON.stringify({ error: { message: `refused by fault injection${presented}` } }));
    this.handshakes++;
    if (this.faults.refuseHandshake) return injected(this.faults.refuseHandshake);
    const next = this.faults.refuseNext;
    if (next && next.count > 0) {
      next.count--;
      return injected(next.status);
    }
    if (url.pathname !== '/v1/realtime') return refuse(404, '{"error":{"message":"Not found"}}');
    if (headerKey === undefined && protocolKey === undefined) {
      return refuse(401, '{"error":{"message":"Missing bearer or basic authentication in header","type":"invalid_request_error","code":null}}');
    }
    this.listener.wss.handleUpgrade(req, socket, head, (ws) => {
      const key = headerKey ?? protocolKey;
      const conn = new FakeRealtimeConnection(ws, req, this, key === this.apiKey);
      this.connections.push(conn);
      if (headerKey !== undefined && protocolKey !== undefined) conn.violations.push('authenticated twice (header and subprotocol)');
      if (url.searchParams.get('intent') !== 'transcription') conn.violations.push(`intent=${url.searchParams.get('intent')}`);
      if (url.searchParams.has('model')) conn.violations.push('a model query parameter selects a conversation session');
      ws.on('message', (data, isBinary) => {
        if (isBinary) conn.violations.push('a binary frame');
        else conn.onMessage(data.toString());
        this.notify();
      });
      ws.on('close', (code, reason) => {
        conn.closedWith ??= { code, reason: reason.toString(), by: 'client' };
        this.notify();
      });
      if (!conn.authorized) {
        const shown = this.faults.echoKey ? key : 'sk-***';
        conn.error('invalid_request_error', 'invalid_api_key', `Incorrect API key provided: ${shown}. You can find your API key at https://platform.openai.com/account/api-keys.`);
        conn.close(3000, 'invalid_request_error.invalid_api_key');
      } else {
        conn.send({ type: 'session.created', session: { object: 'realtime.transcription_session', type: 'transcription' } });
      }
      this.notify();
    });
  }
}
