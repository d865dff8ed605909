import type { AudioFormat, Provider, ProviderError } from '../providers/provider.ts';
import type { PcmRate } from '../codec/pcm.ts';
import type { InputEncoding } from '../protocol/inbound.ts';
import type { DecodeErrorCode } from '../protocol/outbound.ts';
import { OpusError, type OpusCodec, type OpusDecoder } from '../codec/opus.ts';
import { OggOpusDemuxer, isOggStart } from '../codec/ogg.ts';
import { OggOpusWriter } from '../codec/ogg-writer.ts';
import { L16Converter } from '../codec/l16.ts';
import { opusPacketDurationMs } from '../codec/toc.ts';
import type { SessionContext } from './ports.ts';
import { Sequencer } from './sequencer.ts';
import { ProviderStream, type Queued, type StreamResult } from './provider-stream.ts';
import { SilenceGate } from './silence-gate.ts';
import { DecodeHistory } from './decode-history.ts';
import type { StreamUsage } from './usage.ts';

/** Concealment never invents more than this much audio for one gap. */
const MAX_CONCEAL_MS = 120;
/** After a failover, the preferred provider is tried again at the first utterance boundary past this. */
const PROBE_BACK_MS = 60_000;

export interface ParticipantDeps {
  codec: OpusCodec;
  /** The provider the session asked for, then the others configured, in priority order (failover). */
  providers: readonly Provider[];
  language?: string;
  onResult(result: StreamResult): void;
  /** Counted and logged by the session (throttled). */
  onDecodeError(reason: DecodeErrorCode, detail: string): void;
  /** The provider stream's trouble, once per episode (see ProviderStreamOptions.onTrouble). */
  onProviderTrouble(err: ProviderError, provider: string): void;
  /** The participant moved from one provider to another (`reason`: the failure's kind, or `probe` going back). */
  onProviderSwitch(from: string, to: string, reason: string): void;
  /** This participant's usage meter with a provider (usage.ts). */
  usage?(provider: string): StreamUsage;
}

export interface InputFormat {
  encoding: InputEncoding;
  /** For l16 only. */
  sampleRate: PcmRate;
}

function sameFormat(a: AudioFormat, b: AudioFormat): boolean {
  return a.kind === b.kind && (a.kind !== 'pcm16' || (b.kind === 'pcm16' && a.sampleRate === b.sampleRate));
}

/**
 * One tag's audio: framing (Opus packets, an Ogg stream or L16), ordering and concealment,
 * decoding to the provider's format (or passing Opus through), and its provider stream.
 */
export class Participant {
  /** When audio last arrived; the session's sweep flushes the utterance after a silence. */
  lastAudioAt = 0;
  /** Whether the provider has been told the utterance ended since the last audio. */
  flushed = true;

  private input!: InputFormat;
  private format!: AudioFormat;
  private stream!: ProviderStream;
  private decoder: OpusDecoder | undefined;
  /**
   * The calls made on the decoder (at its rate), so that the provider stream's replay buffer
   * keeps positions into it instead of PCM; only when there is a replay buffer.
   */
  private history: DecodeHistory | undefined;
  private demuxer: OggOpusDemuxer | undefined;
  private l16: L16Converter | undefined;
  private readonly sequencer = new Sequencer();
  private frameSamples = 0;
  private sniffed = false;
  private readonly previous = new Set<Promise<void>>();
  /** Audio pages completed by the current Ogg slice, for pass-through. */
  private readonly pages: Uint8Array[] = [];
  /** Raw Opus packets passed through as Ogg pages (PASS_THROUGH_BATCH_MS), and when the page being gathered began. */
  private pager: OggOpusWriter | undefined;
  private pageArrival = 0;
  /** Which of `providers` serves now (0: the one asked for), and since when. */
  private providerIndex = 0;
  private switchedAt = 0;
  /** Voice only towards a PCM provider (SILENCE_GATE); undefined when every frame goes. */
  private gate: SilenceGate | undefined;

  constructor(
    readonly tag: string,
    readonly id: string,
    input: InputFormat,
    private readonly ctx: SessionContext,
    private readonly d: ParticipantDeps,
  ) {
    this.setInput(input);
  }

  private get provider(): Provider {
    return this.d.providers[this.providerIndex]!;
  }

  /** The provider's format, with raw Opus as Ogg pages where it takes them and batching is on. */
  private formatFor(input: InputEncoding): AudioFormat {
    const format = this.provider.formatFor(input);
    return format.kind === 'opus' && this.provider.takesOgg && (this.ctx.limits.passThroughBatchMs ?? 0) > 0 ? { kind: 'ogg' } : format;
  }

  /** A `start` for this tag: switch framing, decoder, and the provider stream if its format changes. */
  setInput(input: InputFormat): void {
    const format = this.formatFor(input.encoding);
    if (this.stream && sameFormat(format, this.format) && this.input.encoding === input.encoding && this.input.sampleRate === input.sampleRate) return;
    // Gathered under the old input: it goes before anything framed the new way.
    if (this.stream) this.sendPage();
    this.input = input;
    this.sniffed = input.encoding !== 'opus';
    this.releaseCodecs();
    if (!this.stream || !sameFormat(format, this.format)) {
      if (this.stream) this.retire(this.stream);
      this.history = undefined;
      this.format = format;
      this.stream = this.newStream(format);
    }
    this.gate = this.newGate();
    this.sequencer.reset();
  }

  /** One `media` payload, already base64-decoded. */
  media(payload: Uint8Array, chunk: number | undefined, arrival: number): void {
    if (!this.sniffed) {
      this.sniffed = true;
      // A client that labels an Ogg stream `opus` is common; the capture pattern tells.
      if (isOggStart(payload)) this.setInput({ encoding: 'ogg-opus', sampleRate: 48000 });
    }
    const lost = this.sequencer.accept(chunk);
    if (lost < 0) {
      this.ctx.metrics.inputErrors.inc({ reason: 'late_packet' });
      return;
    }
    if (!this.gate) {
      this.lastAudioAt = arrival;
      this.flushed = false;
    }
    switch (this.input.encoding) {
      case 'opus':
        this.opusPacket(payload, lost, arrival);
        break;
      case 'ogg-opus':
        this.oggSlice(payload, arrival);
        break;
      case 'l16': {
        const pcm = this.l16Converter().push(payload);
        if (pcm.length) this.pushPcm(pcm, arrival);
        break;
      }
    }
  }

  /** The session's sweep: audio gathered for one upstream message that has waited its period (and a frame) goes now. */
  sendStale(now: number): void {
    this.stream.sendStaleBatch(now);
    if (this.pager?.pending && this.pageArrival < now - (this.ctx.limits.passThroughBatchMs ?? 0) - 20) this.sendPage();
  }

  /** End of utterance after a silence. */
  flush(): void {
    this.flushed = true;
    this.sendPage();
    this.stream.flush();
    // An utterance boundary: the moment to see whether the preferred provider is back.
    if (this.providerIndex > 0 && this.ctx.timers.now() - this.switchedAt >= PROBE_BACK_MS) this.switchTo(0, 'probe');
  }

  /**
   * The provider keeps failing: move to the next one configured, with the audio the stream
   * still owed (converted to the new format where it can be: PCM between rates, Opus packets
   * decoded; PCM cannot become Opus again, and is then dropped, logged).
   */
  private failover(err: ProviderError): void {
    if (this.providerIndex + 1 >= this.d.providers.length) return;
    const from = this.format;
    this.sendPage();
    const pending = this.stream.handOver();
    this.switchTo(this.providerIndex + 1, err.kind);
    let carried = 0;
    let lost = 0;
    const convert = this.converter(from, this.format);
    for (const item of pending) {
      if (item === undefined) {
        this.stream.flush();
        continue;
      }
      const audio = convert?.(item);
      if (!audio) {
        lost += item.durationMs;
        continue;
      }
      for (const piece of audio) {
        this.stream.push(piece.audio, piece.durationMs, item.arrival);
        carried += piece.durationMs;
      }
    }
    convert?.close?.();
    this.ctx.log.warn('participant moved to the next provider', { to: this.provider.name, reason: err.kind, carriedMs: Math.round(carried), lostMs: Math.round(lost) });
  }

  private switchTo(index: number, reason: string): void {
    const from = this.provider.name;
    if (reason === 'probe') this.retire(this.stream);
    this.providerIndex = index;
    this.switchedAt = this.ctx.timers.now();
    this.format = this.formatFor(this.input.encoding);
    // Rates and framing follow the new format from the next audio on.
    this.l16 = undefined;
    this.pager = undefined;
    this.stream = this.newStream(this.format);
    this.gate = this.newGate();
    this.ctx.metrics.failovers.inc({ from, to: this.provider.name, reason });
    this.d.onProviderSwitch(from, this.provider.name, reason);
  }

  /** How audio held in `from` becomes `to`'s, or undefined where it cannot. */
  private converter(from: AudioFormat, to: AudioFormat): (((q: Queued) => Queued[]) & { close?: () => void }) | undefined {
    if (sameFormat(from, to)) return (q) => [q];
    if (to.kind !== 'pcm16') return undefined;
    const pcm = (samples: Int16Array): Queued[] =>
      samples.length ? [{ audio: new Uint8Array(samples.slice().buffer), durationMs: (samples.length * 1000) / to.sampleRate, arrival: 0 }] : [];
    if (from.kind === 'pcm16') {
      const resampler = new L16Converter(from.sampleRate, to.sampleRate);
      return (q) => pcm(resampler.push(q.audio));
    }
    if (from.kind === 'opus' || from.kind === 'ogg') {
      const decoder = this.d.codec.createDecoder(to.sampleRate);
      const decode = (packet: Uint8Array) => {
        try {
          return pcm(decoder.decodeInt16(packet));
        } catch {
          return [];
        }
      };
      const close = () => decoder.close();
      if (from.kind === 'opus') return Object.assign((q: Queued) => decode(q.audio), { close });
      // Pages (the stream's own, or ours): their packets, decoded in order.
      const demuxer = new OggOpusDemuxer();
      return Object.assign((q: Queued) => demuxer.push(q.audio).flatMap(decode), { close });
    }
    return undefined;
  }

  /**
   * A new client socket took the session over (docs/PROTOCOL.md §4.9): its `chunk`s may
   * start over, so the next one is accepted as is rather than dropped as late.
   */
  restartSequence(): void {
    this.sequencer.reset();
  }

  /** `stop`, or session end with a sink that still wants finals. */
  async finish(timeoutMs: number): Promise<void> {
    this.flushed = true;
    this.sendPage();
    await Promise.all([this.stream.finish(timeoutMs), ...this.previous]);
    this.releaseCodecs();
  }

  close(): void {
    this.stream.close();
    this.releaseCodecs();
  }

  private opusPacket(packet: Uint8Array, lost: number, arrival: number): void {
    if (this.format.kind !== 'pcm16') {
      // Pass-through: the provider decodes; a gap is its to conceal.
      const ms = opusPacketDurationMs(packet);
      this.stream.heard(ms);
      if (this.format.kind === 'opus') this.stream.push(packet, ms, arrival);
      else this.addToPage(packet, ms, arrival);
      return;
    }
    // A DTX packet while nothing passes: silence, known without decoding it.
    if (lost === 0 && packet.length <= 2 && this.gate && !this.gate.passing) {
      this.stream.heard(20);
      return this.gate.silence(20, arrival);
    }
    const decoder = this.opusDecoder(this.format.sampleRate);
    try {
      if (lost > 0) this.conceal(decoder, packet, lost, arrival);
      const history = this.history;
      const pcm = history ? history.decode(decoder, packet) : decoder.decodeInt16(packet);
      this.frameSamples = pcm.length;
      this.pushPcm(pcm, arrival, history && history.position - pcm.length);
    } catch (err) {
      if (!(err instanceof OpusError)) throw err;
      this.d.onDecodeError('corrupt_opus', err.message);
    }
  }

  /** PLC for all but the last lost frame, which in-band FEC in this packet may recover. */
  private conceal(decoder: OpusDecoder, next: Uint8Array, lost: number, arrival: number): void {
    const samples = this.frameSamples || decoder.sampleRate / 50;
    const frameMs = (samples * 1000) / decoder.sampleRate;
    const frames = Math.min(lost, Math.max(1, Math.floor(MAX_CONCEAL_MS / frameMs)));
    const history = this.history;
    for (let i = 0; i < frames - 1; i++) {
      if (history) this.pushPcm(history.conceal(decoder, samples), arrival, history.position - samples);
      else this.pushPcm(decoder.conceal(samples), arrival);
    }
    if (history) this.pushPcm(history.recover(decoder, next, samples), arrival, history.position - samples);
    else this.pushPcm(decoder.recover(next, samples), arrival);
    this.ctx.metrics.concealedFrames.inc({ method: 'plc' }, frames - 1);
    this.ctx.metrics.concealedFrames.inc({ method: 'fec' });
  }

  /** `position`: of the first sample in `this.history`, for decoded Opus. */
  private pushPcm(pcm: Int16Array, arrival: number, position?: number): void {
    this.stream.heard(this.durationMs(pcm));
    if (this.gate) this.gate.push(pcm, arrival, position);
    else this.send(pcm, arrival, position);
  }

  private send(pcm: Int16Array, arrival: number, position?: number): void {
    const source = position === undefined ? undefined : this.history;
    this.stream.push(new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength), this.durationMs(pcm), arrival, source, position);
  }

  private durationMs(pcm: Int16Array): number {
    return (pcm.length * 1000) / (this.format.kind === 'pcm16' ? this.format.sampleRate : 48000);
  }

  private oggSlice(slice: Uint8Array, arrival: number): void {
    const packets = this.ogg().push(slice);
    if (this.format.kind !== 'ogg') {
      for (const packet of packets) this.opusPacket(packet, 0, arrival);
      return;
    }
    // Pass-through: whole audio pages go on, their duration spread over them.
    const pages = this.pages.splice(0);
    if (!pages.length) return;
    let ms = 0;
    for (const packet of packets) ms += opusPacketDurationMs(packet);
    this.stream.heard(ms);
    for (const page of pages) this.stream.push(page, ms / pages.length, arrival);
  }

  /** A raw packet towards a provider that takes Ogg: gathered, and sent as one page once it holds PASS_THROUGH_BATCH_MS. */
  private addToPage(packet: Uint8Array, ms: number, arrival: number): void {
    // A random serial, as RFC 3533 asks: the page stream is new to the provider at each one.
    this.pager ??= new OggOpusWriter((Math.random() * 0x1_0000_0000) >>> 0);
    if (!this.pager.pending) this.pageArrival = arrival;
    this.pager.add(packet, ms * 48);
    if (this.pager.pending >= (this.ctx.limits.passThroughBatchMs ?? 0) * 48) this.sendPage();
  }

  private sendPage(): void {
    const pending = this.pager?.pending;
    const page = this.pager?.take();
    if (page) this.stream.push(page, pending! / 48, this.pageArrival);
  }

  private ogg(): OggOpusDemuxer {
    this.demuxer ??= new OggOpusDemuxer({
      onError: (reason) => this.d.onDecodeError(`ogg_${reason.replace(/-/g, '_')}`, `Ogg stream: ${reason}`),
      // Read at each page: a failover may change whether pages pass through.
      onPage: (page, kind) => {
        if (kind === 'audio' && this.format.kind === 'ogg') this.pages.push(page);
      },
    });
    return this.demuxer;
  }

  private opusDecoder(rate: PcmRate): OpusDecoder {
    if (this.decoder?.sampleRate !== rate) {
      this.decoder?.close();
      this.decoder = this.d.codec.createDecoder(rate);
      if (this.history?.sampleRate === rate) this.history.restart(this.decoder);
      else if (this.ctx.limits.providerReplayMs > 0) {
        const history: DecodeHistory = new DecodeHistory(this.d.codec, this.decoder, { oldestNeeded: () => this.oldestNeeded(history) });
        this.history = history;
      } else this.history = undefined;
    }
    return this.decoder;
  }

  /**
   * What of `history` may still be sent or replayed: the current stream's replay buffer and
   * batch, and the silence gate's pre-roll (the newest samples). Streams retired or handed
   * over no longer point into it (`ProviderStream.materialise`).
   */
  private oldestNeeded(history: DecodeHistory): number {
    const recent = history.position - (this.gate?.preRollSamples ?? 0);
    return Math.min(recent, this.stream.oldestPosition(history) ?? recent);
  }

  private l16Converter(): L16Converter {
    const to = this.format.kind === 'pcm16' ? this.format.sampleRate : 16000;
    this.l16 ??= new L16Converter(this.input.sampleRate, to);
    return this.l16;
  }

  private newGate(): SilenceGate | undefined {
    const settings = this.ctx.limits.silenceGate;
    if (!settings || this.format.kind !== 'pcm16') return undefined;
    return new SilenceGate(settings, this.format.sampleRate, {
      voice: (pcm, arrival) => {
        this.lastAudioAt = arrival;
        this.flushed = false;
        this.send(pcm, arrival);
      },
      ended: () => this.endOfSpeech(),
    });
  }

  /**
   * The gate closed after the hang-over: its tail goes now rather than with the next audio,
   * and where the provider does not detect turns itself, the utterance is committed here
   * (sooner than the idle timer, which silent packets would otherwise hold off).
   */
  private endOfSpeech(): void {
    if (this.provider.detectsTurns) this.stream.sendBatch();
    else this.flush();
  }

  private newStream(format: AudioFormat): ProviderStream {
    const provider = this.provider;
    return new ProviderStream(this.ctx, {
      provider,
      format,
      language: this.d.language,
      onResult: this.d.onResult,
      onTrouble: (err) => this.d.onProviderTrouble(err, provider.name),
      onGiveUp: (err) => this.failover(err),
      usage: this.d.usage?.(provider.name),
      // After a reconnect, a pass-through Ogg stream starts again with its header pages.
      preamble: format.kind === 'ogg' ? () => (this.input.encoding === 'opus' ? this.pager?.headerPages : this.demuxer?.headerPages) : undefined,
    });
  }

  /** A stream replaced by a format switch still delivers its last finals. */
  private retire(stream: ProviderStream): void {
    stream.materialise();
    const done = stream.finish(this.ctx.limits.finishTimeoutMs).finally(() => this.previous.delete(done));
    this.previous.add(done);
  }

  private releaseCodecs(): void {
    this.decoder?.close();
    this.decoder = undefined;
    this.demuxer = undefined;
    this.pager = undefined;
    this.l16 = undefined;
    this.frameSamples = 0;
  }
}
