/**
 * A fake Deepgram live-streaming server (`/v1/listen` over WebSocket) on 127.0.0.1, for
 * tests. It follows Deepgram's documentation as read on 2026-11-23 (developers.deepgram.com:
 * "Encoding", "Sample Rate", "Finalize", "Close Stream", "STT Troubleshooting WebSocket,
 * NET, and DATA Errors", the live-streaming API reference) and what users saw of the
 * service (GitHub issues: `dg-error` among the exposed headers, `sec-websocket-protocol:
 * token` echoed):
 *
 * - Auth: `Authorization: Token <key>`, or the subprotocols `token`, `<key>`. A bad or
 *   missing key is refused at the handshake: HTTP 401 with a `dg-error` header and a
 *   JSON body `{err_code, err_msg, request_id}`.
 * - Query: `encoding` + `sample_rate` for raw audio (`opus` at 48000 for raw Opus packets,
 *   `linear16` at the PCM rate), neither for a container (Ogg).
 * - Binary frames are audio; text frames are control messages: `KeepAlive`, `Finalize`
 *   (answered with `from_finalize: true` results), `CloseStream` (last results, `Metadata`,
 *   close 1000).
 * - `Results` with `is_final` segments (one per second of speech) accumulating until
 *   `speech_final` (300 ms of silence), then `UtteranceEnd` when `utterance_end_ms` is set.
 *   Interims (`is_final: false`) cover the current segment only, as Deepgram's do.
 * - Undecodable audio closes with 1008 `DATA-0000`; nothing received for `idleTimeoutMs`
 *   (Deepgram: ~10 s) closes with 1011 `NET-0001`.
 *
 * Audio is decoded with the project's own codec (raw Opus packets, or Ogg pages through
 * the project's demuxer) and transcribed by the OpenAI fake's energy recogniser, so lost,
 * reordered or mangled audio changes the words. Every binary frame is recorded as received.
 *
 * Faults: refused handshakes (a status, a number of them), a close after N frames,
 * `Error` messages, the idle timeout.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { OpusCodec, type OpusDecoder } from '../../src/codec/opus.ts';
import { OggOpusDemuxer, isOggStart } from '../../src/codec/ogg.ts';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { SAMPLE_RATE, Segmenter, pcmFrom, recognize, to24k } from './speech.ts';
import { FakeServer, UpgradeListener } from './listener.ts';

export interface FakeDeepgramOptions {
  apiKey?: string;
  /** Energy VAD threshold, dBFS. */
  speechDb?: number;
}

export interface DeepgramFaults {
  /** Refuse every handshake with this status while set. */
  refuseHandshake?: {
    status: number;
    dgError: string;
    errCode?: string;
    /** The body's `err_msg` when it says something else than the header. */
    errMsg?: string;
    /** No `dg-error` header at all (a proxy in front of Deepgram may strip it). */
    noHeader?: boolean;
  };
  /** Refuse this many of the next handshakes (counted down). */
  refuseNext?: { count: number; status: number; dgError: string };
  /** Close each new connection after this many binary frames. */
  closeAfterFrames?: { frames: number; code: number; reason: string };
  /** Send an `Error` message after this many binary frames on each connection. */
  errorAfterFrames?: { frames: number; description: string };
  /** Close with 1011 NET-0001 when nothing arrives for this long (Deepgram: ~10 s). */
  idleTimeoutMs?: number;
  /** Quote the key the client presented when refusing it, as a careless service might. */
  echoKey?: boolean;
}

export interface Handshake {
  url: string;
  at: number;
  refused?: number;
}

const SPEECH_FINAL_FRAMES = 15; // 300 ms of silence
const SEGMENT_SAMPLES = SAMPLE_RATE; // an is_final segment per second of speech
const NET_0001 = 'NET-0001: Deepgram did not receive audio data or a text message within the timeout window.';
const DATA_0000 = 'DATA-0000: The payload cannot be decoded as audio.';

type Json = Record<string, unknown>;

export class FakeDeepgramConnection {
  readonly url: URL;
  readonly headers: IncomingMessage['headers'];
  readonly protocols: string[];
  /** Every binary frame, as received. */
  readonly frames: Uint8Array[] = [];
  /** The Opus packets those frames carried, in order: raw (`encoding=opus`, one per frame) or read from Ogg pages. */
  readonly packets: Uint8Array[] = [];
  /** Every text frame's `type`, in order. */
  readonly controls: string[] = [];
  readonly sent: Json[] = [];
  readonly violations: string[] = [];
  closedWith: { code: number; reason: string; by: 'client' | 'server' } | undefined;
  private readonly segmenter: Segmenter;
  private decoder: OpusDecoder | undefined;
  private demuxer: OggOpusDemuxer | undefined;
  private segmentStart = 0;
  private segmentIndex = 0;
  private endingBy: 'finalize' | 'close' | undefined;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly requestId = `req-${Math.random().toString(36).slice(2, 10)}`;

  constructor(
    private readonly ws: WebSocket,
    req: IncomingMessage,
    private readonly fake: FakeDeepgram,
  ) {
    this.url = new URL(req.url ?? '/', 'http://fake');
    this.headers = req.headers;
    this.protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter(Boolean);
    this.segmenter = new Segmenter(
      {
        start: (at) => {
          this.segmentStart = at;
          this.segmentIndex = 0;
        },
        progress: (pcm, start) => this.progress(pcm, start),
        end: (pcm, start, forced) => this.end(pcm, start, forced),
      },
      fake.options.speechDb ?? -42,
      SPEECH_FINAL_FRAMES,
    );
    this.checkParams();
    this.touch();
  }

  get params(): URLSearchParams {
    return this.url.searchParams;
  }

  get keepAlives(): number {
    return this.controls.filter((c) => c === 'KeepAlive').length;
  }

  /** The Results and UtteranceEnd messages sent, in order. */
  results(): Json[] {
    return this.sent.filter((m) => m.type === 'Results' || m.type === 'UtteranceEnd');
  }

  send(message: Json): void {
    this.sent.push(message);
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(message));
    this.fake.notify();
  }

  close(code: number, reason: string): void {
    this.closedWith ??= { code, reason, by: 'server' };
    clearTimeout(this.idleTimer);
    this.ws.close(code, reason);
    this.fake.notify();
  }

  onBinary(bytes: Uint8Array): void {
    this.touch();
    if (this.closedWith) return;
    this.frames.push(bytes);
    const faults = this.fake.faults;
    if (faults.errorAfterFrames && this.frames.length === faults.errorAfterFrames.frames) {
      this.send({ type: 'Error', variant: 'error', description: faults.errorAfterFrames.description, message: '' });
    }
    if (faults.closeAfterFrames && this.frames.length === faults.closeAfterFrames.frames) {
      return this.close(faults.closeAfterFrames.code, faults.closeAfterFrames.reason);
    }
    const pcm = this.decode(bytes);
    if (pcm === undefined) return this.close(1008, DATA_0000);
    if (pcm.length) this.segmenter.push(pcm);
  }

  onText(text: string): void {
    this.touch();
    let msg: Json;
    try {
      msg = JSON.parse(text) as Json;
    } catch {
      this.violations.push('a text frame that is not JSON');
      return;
    }
    const type = String(msg.type);
    this.controls.push(type);
    switch (type) {
      case 'KeepAlive':
        return;
      case 'Finalize':
        this.endingBy = 'finalize';
        this.segmenter.forceEnd();
        this.endingBy = undefined;
        return;
      case 'CloseStream':
        this.endingBy = 'close';
        this.segmenter.forceEnd();
        this.endingBy = undefined;
        this.send({
          type: 'Metadata',
          transaction_key: 'deprecated',
          request_id: this.requestId,
          created: new Date().toISOString(),
          duration: this.segmenter.samples / SAMPLE_RATE,
          channels: 1,
        });
        return this.close(1000, '');
      default:
        this.violations.push(`unknown control message ${type}`);
    }
  }

  onClosed(code: number, reason: string): void {
    this.closedWith ??= { code, reason, by: 'client' };
    clearTimeout(this.idleTimer);
    this.decoder?.close();
  }

  private checkParams(): void {
    const p = this.params;
    if (p.get('interim_results') !== 'true') this.violations.push('interim_results is not true');
    if (p.get('channels') !== '1') this.violations.push(`channels=${p.get('channels')}`);
    if (!p.get('model')) this.violations.push('no model');
    const encoding = p.get('encoding');
    const rate = p.get('sample_rate');
    if (encoding === 'opus' && rate !== '48000') this.violations.push(`opus at sample_rate=${rate}`);
    else if (encoding === 'linear16' && rate !== '16000' && rate !== '24000') this.violations.push(`linear16 at sample_rate=${rate}`);
    else if (encoding !== null && encoding !== 'opus' && encoding !== 'linear16') this.violations.push(`encoding=${encoding}`);
    if (encoding === null && rate !== null) this.violations.push('sample_rate without encoding');
  }

  /** The frame's audio at 24 kHz; undefined when it cannot be decoded (DATA-0000). */
  private decode(bytes: Uint8Array): Int16Array | undefined {
    const encoding = this.params.get('encoding');
    if (encoding === 'linear16') return to24k(pcmFrom(bytes), Number(this.params.get('sample_rate')));
    this.decoder ??= this.fake.codec.createDecoder(SAMPLE_RATE);
    try {
      if (encoding === 'opus') {
        this.packets.push(bytes);
        return this.decoder.decodeInt16(bytes).slice();
      }
      if (!this.demuxer) {
        if (!isOggStart(bytes)) return undefined;
        this.demuxer = new OggOpusDemuxer();
      }
      const packets = this.demuxer.push(bytes);
      this.packets.push(...packets);
      const out: Int16Array[] = packets.map((packet) => this.decoder!.decodeInt16(packet).slice());
      const all = new Int16Array(out.reduce((n, o) => n + o.length, 0));
      let at = 0;
      for (const o of out) {
        all.set(o, at);
        at += o.length;
      }
      return all;
    } catch {
      return undefined;
    }
  }

  private touch(): void {
    clearTimeout(this.idleTimer);
    const ms = this.fake.faults.idleTimeoutMs ?? 10_000;
    this.idleTimer = setTimeout(() => this.close(1011, NET_0001), ms);
  }

  private progress(pcm: Int16Array, start: number): void {
    const now = start + pcm.length;
    const segment = pcm.subarray(this.segmentStart - start);
    if (now - this.segmentStart >= SEGMENT_SAMPLES) {
      this.sendResults(segment, this.segmentStart, { isFinal: true, speechFinal: false, fromFinalize: false });
      this.segmentStart = now;
      this.segmentIndex++;
    } else {
      this.sendResults(segment, this.segmentStart, { isFinal: false, speechFinal: false, fromFinalize: false });
    }
  }

  private end(pcm: Int16Array, start: number, forced: boolean): void {
    const segment = pcm.subarray(this.segmentStart - start);
    const fromFinalize = forced && this.endingBy === 'finalize';
    this.sendResults(segment, this.segmentStart, { isFinal: true, speechFinal: !forced, fromFinalize });
    if (!forced && this.params.has('utterance_end_ms')) {
      this.send({ type: 'UtteranceEnd', channel: [0, 1], last_word_end: (start + pcm.length) / SAMPLE_RATE });
    }
  }

  private sendResults(pcm: Int16Array, startSample: number, flags: { isFinal: boolean; speechFinal: boolean; fromFinalize: boolean }): void {
    const text = recognize(pcm);
    const start = startSample / SAMPLE_RATE;
    const diarize = this.params.get('diarize') === 'true';
    const punctuate = this.params.get('punctuate') === 'true';
    const multi = this.params.get('language') === 'multi';
    const list = text.split(' ').filter(Boolean);
    const words = list.map((word, i) => ({
      word,
      start: start + i * 0.2,
      end: start + (i + 1) * 0.2,
      confidence: 0.9,
      ...(punctuate ? { punctuated_word: i === 0 ? word[0]!.toUpperCase() + word.slice(1) : word } : {}),
      // Segments alternate speakers, so a diarized utterance has several.
      ...(diarize ? { speaker: this.segmentIndex % 2, speaker_confidence: 0.8 } : {}),
      ...(multi ? { language: 'en' } : {}),
    }));
    const transcript = punctuate ? words.map((w) => w.punctuated_word ?? w.word).join(' ') : text;
    this.send({
      type: 'Results',
      channel_index: [0, 1],
      duration: pcm.length / SAMPLE_RATE,
      start,
      is_final: flags.isFinal,
      speech_final: flags.speechFinal,
      from_finalize: flags.fromFinalize,
      channel: { alternatives: [{ transcript, confidence: 0.9, words, ...(multi ? { languages: ['en'] } : {}) }] },
      metadata: { request_id: this.requestId, model_info: { name: this.params.get('model') } },
    });
  }
}

export class FakeDeepgram extends FakeServer {
  readonly connections: FakeDeepgramConnection[] = [];
  readonly handshakes: Handshake[] = [];
  faults: DeepgramFaults = {};

  private constructor(
    listener: UpgradeListener,
    readonly codec: OpusCodec,
    readonly options: FakeDeepgramOptions,
  ) {
    super(listener, 'fake Deepgram');
  }

  static async start(options: FakeDeepgramOptions = {}): Promise<FakeDeepgram> {
    const codec = await OpusCodec.instantiate(await loadOpusModule());
    // The handler runs only once a client connects, after `fake` is assigned.
    let fake: FakeDeepgram | undefined;
    const listener = await UpgradeListener.listen((req, socket, head) => fake!.onUpgrade(req, socket, head), { subprotocol: 'token' });
    fake = new FakeDeepgram(listener, codec, options);
    return fake;
  }

  get apiKey(): string {
    return this.options.apiKey ?? 'dg-test-key-0123456789';
  }

  /** The value for DEEPGRAM_BASE_URL (http, as operators paste it: the proxy maps it to ws). */
  get baseUrl(): string {
    return `http://127.0.0.1:${this.listener.port}/v1`;
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const handshake: Handshake = { url: url.toString(), at: performance.now() };
    this.handshakes.push(handshake);
    const refuse = (status: number, dgError: string, errCode: string, errMsg = dgError, header = true) => {
      handshake.refused = status;
      const body = JSON.stringify({ err_code: errCode, err_msg: errMsg, request_id: 'req-refused' });
      socket.end(
        `HTTP/1.1 ${status} Refused\r\n${header ? `dg-error: ${dgError}\r\n` : ''}dg-request-id: req-refused\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      this.notify();
    };
    const { refuseHandshake, refuseNext } = this.faults;
    if (refuseHandshake) {
      const { status, dgError, errCode, errMsg, noHeader } = refuseHandshake;
      return refuse(status, dgError, errCode ?? 'REFUSED', errMsg, !noHeader);
    }
    if (refuseNext && refuseNext.count > 0) {
      refuseNext.count--;
      return refuse(refuseNext.status, refuseNext.dgError, 'REFUSED');
    }
    if (url.pathname !== '/v1/listen') return refuse(404, 'Not found', 'NOT_FOUND');
    const header = req.headers.authorization;
    const headerKey = header?.startsWith('Token ') ? header.slice(6) : undefined;
    const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    const protocolKey = protocols[0] === 'token' ? protocols[1] : undefined;
    if ((headerKey ?? protocolKey) !== this.apiKey) {
      return refuse(401, this.faults.echoKey ? `Invalid credentials: ${headerKey ?? protocolKey}.` : 'Invalid credentials.', 'INVALID_AUTH');
    }
    this.listener.wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = new FakeDeepgramConnection(ws, req, this);
      if (headerKey !== undefined && protocolKey !== undefined) conn.violations.push('authenticated twice (header and subprotocol)');
      this.connections.push(conn);
      this.wire(ws, conn);
    });
  }
}
