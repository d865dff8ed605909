/**
 * A fake Vosk server (alphacep/vosk-server `websocket/asr_server.py`, as run by the
 * `alphacep/kaldi-*` images) on 127.0.0.1, for tests. What it follows, as read in that file
 * and in the client Jitsi's Jigasi has for it (`VoskTranscriptionService.java`):
 *
 * - Any path, no authentication (a test may ask for Basic auth, as a reverse proxy would).
 * - A text frame containing "config" is read as `{"config": {sample_rate, words, …}}`; audio
 *   before any config is taken at the server's default rate (8000), a violation here.
 * - Binary frames are 16-bit little-endian mono PCM at that rate. Each is answered with
 *   exactly one text frame: `{"partial": "…"}` (the hypothesis so far, repeated until it
 *   changes; `""` in silence) or, when the endpointer ends an utterance,
 *   `{"result": [{conf, end, start, word}…], "text": "…"}`.
 * - The text frame `{"eof" : 1}`, compared as that exact string: answered by the final
 *   result of what is left (`{"text": ""}` when nothing), then the socket is closed (1000).
 *   Any other text frame would reach the recogniser as audio: recorded as a violation.
 *
 * Recognition is the other fakes' energy recogniser on the audio brought to 24 kHz (one word
 * per 200 ms block, by its level), split into utterances by their energy VAD (300 ms of
 * silence ends one), so lost, reordered or mangled audio changes the words. Word times are
 * the blocks' positions in this socket's audio, as Vosk's are.
 *
 * Faults: refused handshakes (a status, or a number of them), a connection dropped after N
 * frames (a close code, or the TCP connection cut without a close frame), `eof` left
 * unanswered.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { SAMPLE_RATE, Segmenter, pcmFrom, recognize, to24k } from './speech.ts';
import { FakeServer, UpgradeListener } from './listener.ts';

export const VOSK_EOF = '{"eof" : 1}';
/** asr_server.py's rate when no config says otherwise (VOSK_SAMPLE_RATE on the server). */
const DEFAULT_RATE = 8000;
const BLOCK = SAMPLE_RATE / 5; // the recogniser's 200 ms

export interface VoskFaults {
  /** Refuse every handshake with this status while set. */
  refuseHandshake?: number;
  /** Refuse this many of the next handshakes (counted down). */
  refuseNext?: { count: number; status: number };
  /**
   * The next connection (one only) is dropped once it has received this many 20 ms frames of
   * audio (at the first binary message that reaches it: the proxy may batch frames,
   * PCM_BATCH_MS): closed with `code`, or cut (no close frame) without one.
   */
  dropNext?: { afterFrames: number; code?: number; reason?: string };
  /** Never answer `eof` (nor close). */
  ignoreEof?: boolean;
  /** Require `Authorization: Basic base64(user:password)`; 401 otherwise, the body quoting what came. */
  basicAuth?: { user: string; password: string };
}

export interface VoskHandshake {
  url: string;
  authorization?: string;
  refused?: number;
}

type Json = Record<string, unknown>;

export interface VoskWord {
  word: string;
  start: number;
  end: number;
  conf: number;
}

export class FakeVoskConnection {
  readonly url: URL;
  readonly headers: IncomingMessage['headers'];
  config: Json | undefined;
  /** Every binary frame, as received. */
  readonly frames: Uint8Array[] = [];
  /** Every text frame, verbatim. */
  readonly texts: string[] = [];
  /** Every answer sent, in order. */
  readonly sent: Json[] = [];
  readonly violations: string[] = [];
  eof = false;
  closedWith: { code: number; reason: string; by: 'client' | 'server' } | undefined;
  private readonly segmenter: Segmenter;
  private partial = '';
  private readonly results: Json[] = [];
  private drop: VoskFaults['dropNext'];
  /** Bytes of PCM received so far (what `dropNext` counts). */
  private received = 0;

  constructor(
    private readonly ws: WebSocket,
    req: IncomingMessage,
    private readonly fake: FakeVosk,
  ) {
    this.url = new URL(req.url ?? '/', 'http://fake');
    this.headers = req.headers;
    this.drop = fake.faults.dropNext;
    fake.faults.dropNext = undefined;
    this.segmenter = new Segmenter(
      {
        start: () => (this.partial = ''),
        progress: (pcm) => (this.partial = recognize(pcm)),
        end: (pcm, start) => {
          this.partial = '';
          this.results.push(result(pcm, start));
        },
      },
      fake.speechDb,
    );
  }

  get sampleRate(): number {
    const rate = this.config?.sample_rate;
    return typeof rate === 'number' ? rate : DEFAULT_RATE;
  }

  /** Bytes of PCM received. */
  get bytes(): number {
    return this.frames.reduce((n, f) => n + f.length, 0);
  }

  /** The non-empty texts of the results sent (the finals a client should see), in order. */
  finalTexts(): string[] {
    return this.sent.map((m) => m.text).filter((t): t is string => typeof t === 'string' && t !== '');
  }

  /** The partials sent, each change once, empty ones left out (the interims a client should see). */
  partialTexts(): string[] {
    const out: string[] = [];
    let last = '';
    for (const m of this.sent) {
      if (typeof m.partial !== 'string') {
        last = '';
        continue;
      }
      if (m.partial && m.partial !== last) out.push(m.partial);
      last = m.partial;
    }
    return out;
  }

  close(code: number, reason = ''): void {
    this.closedWith ??= { code, reason, by: 'server' };
    this.ws.close(code, reason);
    this.fake.notify();
  }

  onBinary(bytes: Uint8Array): void {
    if (this.closedWith) return;
    if (this.eof) this.violations.push('audio after eof');
    if (!this.config) this.violations.push('audio before any config');
    this.frames.push(bytes);
    this.received += bytes.length;
    // 20 ms of 16-bit samples at the socket's rate.
    const drop = this.drop;
    if (drop && this.received >= drop.afterFrames * (this.sampleRate / 50) * 2) {
      if (drop.code === undefined) {
        this.closedWith = { code: 1006, reason: 'cut', by: 'server' };
        this.ws.terminate();
        return this.fake.notify();
      }
      return this.close(drop.code, drop.reason);
    }
    this.segmenter.push(to24k(pcmFrom(bytes), this.sampleRate));
    const ended = this.results.shift();
    this.send(ended ?? { partial: this.partial });
    // The endpointer may end more than one utterance in a frame; each result is one answer.
    for (const more of this.results.splice(0)) this.send(more);
  }

  onText(text: string): void {
    this.texts.push(text);
    if (text.includes('config')) {
      if (this.frames.length) this.violations.push('config after audio');
      try {
        this.config = (JSON.parse(text) as { config: Json }).config;
      } catch {
        this.violations.push('a config that is not JSON');
      }
      return;
    }
    if (text !== VOSK_EOF) {
      this.violations.push(`a text frame that is neither config nor ${VOSK_EOF}: ${text.slice(0, 40)}`);
      return;
    }
    this.eof = true;
    if (this.fake.faults.ignoreEof) return;
    this.segmenter.forceEnd();
    this.send(this.results.splice(0).at(-1) ?? { text: '' });
    this.close(1000);
  }

  onClosed(code: number, reason: string): void {
    this.closedWith ??= { code, reason, by: 'client' };
  }

  private send(message: Json): void {
    this.sent.push(message);
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(message));
    this.fake.notify();
  }
}

/** Vosk's result for an utterance: a word per recognised 200 ms block, at the block's place. */
function result(pcm: Int16Array, startSample: number): Json {
  const words: VoskWord[] = [];
  for (let at = 0; at + BLOCK / 2 <= pcm.length; at += BLOCK) {
    const word = recognize(pcm.subarray(at, Math.min(at + BLOCK, pcm.length)));
    if (!word) continue;
    const start = (startSample + at) / SAMPLE_RATE;
    const end = (startSample + Math.min(at + BLOCK, pcm.length)) / SAMPLE_RATE;
    words.push({ word, start, end, conf: 0.8 });
  }
  if (!words.length) return { text: '' };
  return { result: words, text: words.map((w) => w.word).join(' ') };
}

export class FakeVosk extends FakeServer {
  readonly connections: FakeVoskConnection[] = [];
  readonly handshakes: VoskHandshake[] = [];
  faults: VoskFaults = {};

  private constructor(
    listener: UpgradeListener,
    readonly speechDb: number,
  ) {
    super(listener, 'fake Vosk');
  }

  static async start(options: { speechDb?: number } = {}): Promise<FakeVosk> {
    // The handler runs only once a client connects, after `fake` is assigned.
    let fake: FakeVosk | undefined;
    const listener = await UpgradeListener.listen((req, socket, head) => fake!.onUpgrade(req, socket, head));
    fake = new FakeVosk(listener, options.speechDb ?? -42);
    return fake;
  }

  get port(): number {
    return this.listener.port;
  }

  /** The value for VOSK_URL. */
  get url(): string {
    return `ws://127.0.0.1:${this.listener.port}`;
  }

  /** PCM bytes received on every connection. */
  get bytes(): number {
    return this.connections.reduce((n, c) => n + c.bytes, 0);
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const handshake: VoskHandshake = { url: req.url ?? '/', authorization: req.headers.authorization };
    this.handshakes.push(handshake);
    const refuse = (status: number, body: string) => {
      handshake.refused = status;
      socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      this.notify();
    };
    const { refuseHandshake, refuseNext, basicAuth } = this.faults;
    if (refuseHandshake) return refuse(refuseHandshake, 'refused by fault injection');
    if (refuseNext && refuseNext.count > 0) {
      refuseNext.count--;
      return refuse(refuseNext.status, 'refused by fault injection');
    }
    if (basicAuth) {
      const expected = `Basic ${Buffer.from(`${basicAuth.user}:${basicAuth.password}`).toString('base64')}`;
      // A careless proxy quoting what it was given, and where.
      if (req.headers.authorization !== expected) return refuse(401, `bad credentials ${req.headers.authorization ?? '(none)'} for ${req.url}`);
    }
    this.listener.wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = new FakeVoskConnection(ws, req, this);
      this.connections.push(conn);
      this.wire(ws, conn);
    });
  }
}
