/**
 * A session's participants as one 48 kHz mono track, each decoded with the proxy's own codec
 * (libopus in WASM, the Ogg demuxer, the L16 resampler) and placed on the session's timeline:
 * a stream starts where its first media frame arrived (the dump's timestamps), and its Opus
 * packets sit at their RTP timestamps from there, so gaps (DTX) land where the media server
 * meant them. Anchoring each stream at its arrival rather than at its first timestamp serves
 * senders whose streams have independent RTP bases (test/fixtures/two-speakers.jsonl) as
 * well as Videobridge, whose timestamps share one clock (docs/jitsi.md), at the cost of the
 * first packet's network jitter. Packets are decoded in arrival order (the proxy reorders by
 * `chunk`; captures seen so far arrive in order). Frames are read with the proxy's own
 * schemas (src/protocol/inbound.ts).
 */
import * as v from 'valibot';
import { L16Converter } from '../../src/codec/l16.ts';
import { OggOpusDemuxer } from '../../src/codec/ogg.ts';
import { OpusError, type OpusCodec, type OpusDecoder } from '../../src/codec/opus.ts';
import type { PcmRate } from '../../src/codec/pcm.ts';
import { InboundEvent, type InputEncoding } from '../../src/protocol/inbound.ts';
import type { CaptureRecord } from './capture.ts';

export const MIX_RATE = 48_000;
const RTP_WRAP = 2 ** 32;

interface Piece {
  at: number;
  pcm: Int16Array;
}

class Track {
  readonly pieces: Piece[] = [];
  /** Where audio without an RTP timestamp goes next (samples at MIX_RATE). */
  private cursor: number;
  private firstRtp: number | undefined;
  private readonly decoder: OpusDecoder | undefined;
  private readonly demuxer: OggOpusDemuxer | undefined;
  private readonly converter: L16Converter | undefined;
  errors = 0;

  constructor(
    codec: OpusCodec,
    readonly encoding: InputEncoding,
    rate: PcmRate,
    private readonly origin: number,
  ) {
    this.cursor = origin;
    if (encoding === 'l16') this.converter = new L16Converter(rate, MIX_RATE);
    else this.decoder = codec.createDecoder(MIX_RATE);
    if (encoding === 'ogg-opus') this.demuxer = new OggOpusDemuxer({ onError: () => this.errors++ });
  }

  push(payload: Uint8Array, rtp: number | undefined): void {
    if (this.converter) return this.place(this.converter.push(payload), undefined);
    const packets = this.demuxer ? this.demuxer.push(payload) : [payload];
    for (const packet of packets) {
      try {
        this.place(this.decoder!.decodeInt16(packet).slice(), this.demuxer ? undefined : rtp);
      } catch (error) {
        if (!(error instanceof OpusError)) throw error;
        this.errors++;
      }
    }
  }

  private place(pcm: Int16Array, rtp: number | undefined): void {
    let at = this.cursor;
    if (rtp !== undefined) {
      this.firstRtp ??= rtp;
      // RTP timestamps count 48 kHz samples for Opus (RFC 7587) and wrap at 2^32.
      at = this.origin + ((rtp - this.firstRtp + RTP_WRAP) % RTP_WRAP);
    }
    this.pieces.push({ at, pcm });
    this.cursor = at + pcm.length;
  }

  close(): void {
    this.decoder?.close();
  }
}

export interface Mixdown {
  /** The mix, 48 kHz mono. */
  samples: Int16Array;
  /** Per tag: its encoding, where it starts and ends on the timeline (samples), and the payloads that did not decode. */
  tracks: Map<string, { encoding: InputEncoding; start: number; end: number; errors: number }>;
}

/** Mixes the streams of `records` (only those whose tag is in `only`, when given). */
export function mixdown(records: CaptureRecord[], codec: OpusCodec, only?: ReadonlySet<string>): Mixdown {
  const epoch = records[0]?.timestamp ?? 0;
  const tracks = new Map<string, Track>();
  const formats = new Map<string, { encoding: InputEncoding; rate: PcmRate }>();
  for (const record of records) {
    if (record.direction !== 'incoming') continue;
    let json: unknown;
    try {
      json = JSON.parse(record.data);
    } catch {
      continue;
    }
    // Frames the proxy would refuse are left out of the mix, as the proxy leaves them out of the transcript.
    const parsed = v.safeParse(InboundEvent, json);
    if (!parsed.success) continue;
    const event = parsed.output;
    if (event.event === 'start') {
      const format = event.start.mediaFormat;
      formats.set(event.start.tag, { encoding: format?.encoding ?? 'opus', rate: format?.sampleRate ?? (format?.encoding === 'l16' ? 16_000 : MIX_RATE) });
      continue;
    }
    if (event.event !== 'media' || (only && !only.has(event.media.tag))) continue;
    const { tag, payload, timestamp } = event.media;
    let track = tracks.get(tag);
    const bytes = Buffer.from(payload, 'base64');
    if (!track) {
      const format = formats.get(tag) ?? { encoding: bytes.subarray(0, 4).toString('latin1') === 'OggS' ? 'ogg-opus' : 'opus', rate: MIX_RATE };
      track = new Track(codec, format.encoding, format.rate, Math.round(((record.timestamp - epoch) * MIX_RATE) / 1000));
      tracks.set(tag, track);
    }
    track.push(bytes, timestamp);
  }

  let length = 0;
  for (const track of tracks.values()) for (const p of track.pieces) length = Math.max(length, p.at + p.pcm.length);
  const sum = new Int32Array(length);
  const summary: Mixdown['tracks'] = new Map();
  for (const [tag, track] of tracks) {
    track.close();
    let start = Infinity;
    let end = 0;
    for (const { at, pcm } of track.pieces) {
      for (let i = 0; i < pcm.length; i++) sum[at + i]! += pcm[i]!;
      start = Math.min(start, at);
      end = Math.max(end, at + pcm.length);
    }
    summary.set(tag, { encoding: track.encoding, start: Number.isFinite(start) ? start : 0, end, errors: track.errors });
  }
  const samples = new Int16Array(length);
  for (let i = 0; i < length; i++) samples[i] = Math.max(-32768, Math.min(32767, sum[i]!));
  return { samples, tracks: summary };
}
