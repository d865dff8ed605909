/**
 * A fake Gemini Live API server (`BidiGenerateContent` over WebSocket) on 127.0.0.1, used
 * as a transcriber. Sources, read 2026-11-23 (the search tool's stored copies):
 * ai.google.dev "Live transcription with Gemini Live API" (live-api/live-transcribe:
 * the `gemini-3.5-transcribe-live` model), "Live API - WebSockets API reference"
 * (ai.google.dev/api/live), "Session management with Live API" (connections ~10 min,
 * `goAway` before the end, session resumption, context window compression), the js-genai
 * and kotlin-genai type references (`LiveClientRealtimeInput.audio`/`audioStreamEnd`, with
 * `mediaChunks` gone from the newest SDK; `AudioTranscriptionConfig.languageCodes`;
 * `Transcription {text, finished, languageCode}`; `interimInputTranscription`), and what
 * public clients measured against the live service in 2026 (a bad key is accepted at the
 * handshake and closed with 1007 "API key not valid" once the setup is read; every server
 * message arrives in a binary frame; `goAway {timeLeft: "50s"}` ~9 min in, then 1008).
 *
 * - `?key=` in the URL; the first message must be `{"setup": {"model": "models/…", …}}`,
 *   answered by `setupComplete`; audio before it is a violation.
 * - `realtimeInput.audio {data, mimeType: "audio/pcm;rate=16000"}`; `audioStreamEnd`
 *   ends the turn in progress.
 * - Mode `transcribe` (the dedicated model): `interimInputTranscription` with the whole
 *   turn so far every 200 ms, then one `inputTranscription` (with `languageCode`),
 *   `generationComplete` and `turnComplete`. Mode `conversational` (a Live model with
 *   input transcription): `inputTranscription` fragments (" word" deltas) and
 *   `turnComplete`, no interims.
 *
 * Turns are found by an energy VAD on the audio and transcribed by the OpenAI fake's
 * recogniser. Faults: refused handshakes, a close after N audio messages, `goAway`, a setup
 * refused with a chosen close reason, an `error` message after the setup.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { Segmenter, pcmFrom, recognize, to24k } from './speech.ts';
import { FakeServer, UpgradeListener } from './listener.ts';

export const LIVE_PATH = '/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent';
export const TRANSCRIBE_MODEL = 'models/gemini-3.5-transcribe-live';

export interface FakeGeminiOptions {
  apiKey?: string;
  mode?: 'transcribe' | 'conversational';
  speechDb?: number;
}

export interface GeminiFaults {
  /** Refuse every handshake with this HTTP status while set. */
  refuseHandshake?: number;
  /** Close each new connection with this code after this many audio messages. */
  closeAfterAudio?: { messages: number; code: number; reason: string };
  /** Refuse every setup by closing with this code and reason (a reason may quote what the client sent). */
  refuseSetup?: { code: number; reason: string };
  /** After each setupComplete, send an `error` message with this text. */
  errorAfterSetup?: string;
}

export interface Turn {
  text: string;
  /** Ended by `audioStreamEnd` (or the connection's end) rather than by silence. */
  forced: boolean;
}

type Json = Record<string, unknown>;

export class FakeGeminiConnection {
  readonly url: URL;
  readonly headers: IncomingMessage['headers'];
  setup: Json | undefined;
  setupCompleted = false;
  audioMessages = 0;
  /** PCM samples received, at 16 kHz. */
  samples = 0;
  audioStreamEnds = 0;
  /** Every client message's kind, in order: setup, audio, audioStreamEnd, other. */
  readonly received: string[] = [];
  readonly sent: Json[] = [];
  /** The transcript of each finished turn, in order. */
  readonly turns: Turn[] = [];
  readonly violations: string[] = [];
  goAwaySent = false;
  closedWith: { code: number; reason: string; by: 'client' | 'server' } | undefined;
  private readonly segmenter: Segmenter;
  private fragmentsSent = 0;
  private capTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly ws: WebSocket,
    req: IncomingMessage,
    private readonly fake: FakeGeminiLive,
  ) {
    this.url = new URL(req.url ?? '/', 'http://fake');
    this.headers = req.headers;
    this.segmenter = new Segmenter(
      {
        start: () => {
          this.fragmentsSent = 0;
        },
        progress: (pcm) => this.progress(pcm),
        end: (pcm, _start, forced) => this.endTurn(pcm, forced),
      },
      fake.options.speechDb ?? -42,
    );
  }

  /** A turn is in progress (speech heard, not yet ended). */
  get inTurn(): boolean {
    return this.segmenter.inSpeech;
  }

  get mode(): 'transcribe' | 'conversational' {
    return this.fake.options.mode ?? 'transcribe';
  }

  /** Sent in a binary frame, as the service does. */
  send(message: Json): void {
    this.sent.push(message);
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(Buffer.from(JSON.stringify(message)), { binary: true });
    this.fake.notify();
  }

  close(code: number, reason: string): void {
    this.closedWith ??= { code, reason, by: 'server' };
    clearTimeout(this.capTimer);
    this.ws.close(code, reason);
    this.fake.notify();
  }

  /** Announces the end of the connection, and ends it after `timeLeftMs` unless the client leaves first. */
  goAway(timeLeftMs: number): void {
    this.goAwaySent = true;
    this.send({ goAway: { timeLeft: `${timeLeftMs / 1000}s` } });
    this.capTimer = setTimeout(() => {
      if (!this.closedWith) this.close(1008, 'Connection lifetime limit reached.');
    }, timeLeftMs);
  }

  onClosed(code: number, reason: string): void {
    this.closedWith ??= { code, reason, by: 'client' };
    clearTimeout(this.capTimer);
  }

  onMessage(text: string): void {
    let msg: Json;
    try {
      msg = JSON.parse(text) as Json;
    } catch {
      this.violations.push('a frame that is not JSON');
      return this.close(1007, 'Request contains an invalid argument.');
    }
    if (msg.setup !== undefined) return this.onSetup(msg.setup as Json);
    if (!this.setup) {
      this.violations.push('a message before the setup');
      return this.close(1007, 'Request contains an invalid argument.');
    }
    const input = msg.realtimeInput as Json | undefined;
    if (!input) {
      this.received.push('other');
      this.violations.push(`unexpected message ${Object.keys(msg).join(',')}`);
      return;
    }
    if (!this.setupCompleted) this.violations.push('realtime input before setupComplete');
    if (input.mediaChunks !== undefined) this.violations.push('deprecated realtimeInput.mediaChunks');
    if (input.audio !== undefined) return this.onAudio(input.audio as Json);
    if (input.audioStreamEnd === true) {
      this.received.push('audioStreamEnd');
      this.audioStreamEnds++;
      return this.segmenter.forceEnd();
    }
    this.received.push('other');
  }

  private onSetup(setup: Json): void {
    this.received.push('setup');
    if (this.setup) this.violations.push('a second setup');
    this.setup = setup;
    const refusal = this.fake.faults.refuseSetup;
    if (refusal) return this.close(refusal.code, refusal.reason);
    if (this.url.searchParams.get('key') !== this.fake.apiKey) {
      return this.close(1007, 'API key not valid. Please pass a valid API key.');
    }
    const model = String(setup.model);
    if (model !== this.fake.model) {
      return this.close(1008, `${model} is not found for API version v1beta, or is not supported for bidiGenerateContent.`);
    }
    if (typeof setup.inputAudioTranscription !== 'object' || setup.inputAudioTranscription === null) {
      this.violations.push('no inputAudioTranscription in the setup');
    }
    this.setupCompleted = true;
    this.send({ setupComplete: {} });
    const error = this.fake.faults.errorAfterSetup;
    if (error !== undefined) this.send({ error: { code: 400, message: error, status: 'INVALID_ARGUMENT' } });
  }

  private onAudio(audio: Json): void {
    this.received.push('audio');
    this.audioMessages++;
    if (audio.mimeType !== 'audio/pcm;rate=16000') this.violations.push(`audio mimeType ${String(audio.mimeType)}`);
    const data = String(audio.data);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(data)) this.violations.push('audio that is not base64');
    const pcm = pcmFrom(new Uint8Array(Buffer.from(data, 'base64')));
    this.samples += pcm.length;
    const fault = this.fake.faults.closeAfterAudio;
    if (fault && this.audioMessages === fault.messages) return this.close(fault.code, fault.reason);
    this.segmenter.push(to24k(pcm, 16_000));
  }

  private progress(pcm: Int16Array): void {
    const words = recognize(pcm).split(' ').filter(Boolean);
    if (this.mode === 'transcribe') {
      if (words.length) this.send({ serverContent: { interimInputTranscription: { text: words.join(' ') } } });
      return;
    }
    // The last word may still change with more audio; the others are settled.
    this.sendFragments(words.slice(0, -1));
  }

  private sendFragments(words: string[]): void {
    for (const word of words.slice(this.fragmentsSent)) {
      this.send({ serverContent: { inputTranscription: { text: ` ${word}` } } });
    }
    this.fragmentsSent = Math.max(this.fragmentsSent, words.length);
  }

  private endTurn(pcm: Int16Array, forced: boolean): void {
    const text = recognize(pcm);
    if (this.mode === 'transcribe') {
      if (text) this.send({ serverContent: { inputTranscription: { text, languageCode: 'en' } } });
      this.send({ serverContent: { generationComplete: true } });
    } else {
      this.sendFragments(text.split(' ').filter(Boolean));
    }
    this.send({ serverContent: { turnComplete: true } });
    if (text) this.turns.push({ text, forced });
  }
}

export class FakeGeminiLive extends FakeServer {
  readonly connections: FakeGeminiConnection[] = [];
  /** Every upgrade request: when, and the status when refused. */
  readonly handshakes: { at: number; refused?: number }[] = [];
  faults: GeminiFaults = {};
  model = TRANSCRIBE_MODEL;

  private constructor(
    listener: UpgradeListener,
    readonly options: FakeGeminiOptions,
  ) {
    super(listener, 'fake Gemini');
  }

  static async start(options: FakeGeminiOptions = {}): Promise<FakeGeminiLive> {
    // The handler runs only once a client connects, after `fake` is assigned.
    let fake: FakeGeminiLive | undefined;
    const listener = await UpgradeListener.listen((req, socket, head) => fake!.onUpgrade(req, socket, head));
    fake = new FakeGeminiLive(listener, options);
    return fake;
  }

  get apiKey(): string {
    return this.options.apiKey ?? 'AIza-test-key-fedcba9876';
  }

  /** The value for GEMINI_BASE_URL. */
  get baseUrl(): string {
    return `ws://127.0.0.1:${this.listener.port}`;
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const handshake: { at: number; refused?: number } = { at: performance.now() };
    this.handshakes.push(handshake);
    const refuse = (status: number) => {
      handshake.refused = status;
      const body = JSON.stringify({ error: { code: status, message: 'refused by the fake', status: 'UNAVAILABLE' } });
      socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      this.notify();
    };
    if (this.faults.refuseHandshake) return refuse(this.faults.refuseHandshake);
    if (url.pathname !== LIVE_PATH) return refuse(404);
    this.listener.wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = new FakeGeminiConnection(ws, req, this);
      this.connections.push(conn);
      ws.on('message', (data, isBinary) => {
        if (isBinary) conn.violations.push('a binary frame');
        conn.onMessage((Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)).toString('utf8'));
        this.notify();
      });
      ws.on('close', (code, reason) => {
        conn.onClosed(code, reason.toString());
        this.notify();
      });
      this.notify();
    });
  }
}
