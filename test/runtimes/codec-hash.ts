/**
 * The codec parity workload, shared by Node, Deno and workerd so that every runtime runs
 * exactly the same code: it parses the raw fixture files itself (no runtime's file API or
 * Buffer), decodes every packet with our WASM libopus at each rate, and hashes the float PCM.
 * Only web-standard APIs: JSON, TextDecoder, crypto.subtle.
 */
import { OpusCodec } from '../../src/codec/opus.ts';
import type { PcmRate } from '../../src/codec/pcm.ts';
import { OggOpusDemuxer } from '../../src/codec/ogg.ts';
import { portableBase64 } from '../../src/util/base64.ts';

/** The raw bytes of a fixture set's two files, as each runtime reads them. */
export interface CodecFixtures {
  /** A Videobridge capture (test/fixtures/two-speakers.jsonl, or the shared jvb-two-speakers.jsonl). */
  jvb: Uint8Array;
  /** An Ogg Opus file (samples/speech.ogg, or the shared speech-10s.ogg). */
  ogg: Uint8Array;
}

export interface StreamHash {
  /** A JVB tag, or `ogg`. */
  stream: string;
  rate: PcmRate;
  packets: number;
  samples: number;
  /** SHA-256 (hex) of the concatenated float32 samples, in the platform's byte order. */
  sha256: string;
}

export interface CodecHashReport {
  libopus: string;
  hashes: StreamHash[];
}

export const PARITY_RATES: readonly PcmRate[] = [48000, 24000];

/** The health-check client's slice size: Ogg pages arrive split across messages. */
const OGG_SLICE_BYTES = 200;

/** The capture's Opus packets per tag, in arrival order. */
export function jvbPackets(jsonl: Uint8Array): Map<string, Uint8Array[]> {
  const byTag = new Map<string, Uint8Array[]>();
  const lines = new TextDecoder().decode(jsonl).split('\n');
  lines.forEach((line, index) => {
    if (line.length === 0) return;
    const record = JSON.parse(line) as { data?: unknown };
    if (typeof record.data !== 'string') throw new Error(`jsonl line ${index + 1}: no data`);
    const frame = JSON.parse(record.data) as { event?: unknown; media?: { tag?: unknown; payload?: unknown } };
    if (frame.event !== 'media') return;
    const { tag, payload } = frame.media ?? {};
    const packet = typeof payload === 'string' ? portableBase64.decode(payload) : undefined;
    if (typeof tag !== 'string' || packet === undefined) throw new Error(`jsonl line ${index + 1}: bad media`);
    let packets = byTag.get(tag);
    if (packets === undefined) byTag.set(tag, (packets = []));
    packets.push(packet);
  });
  return byTag;
}

/** The Ogg file's audio packets, through the product's streaming demuxer fed in slices. */
export function oggPackets(file: Uint8Array): Uint8Array[] {
  const demuxer = new OggOpusDemuxer();
  const packets: Uint8Array[] = [];
  for (let at = 0; at < file.length; at += OGG_SLICE_BYTES) {
    packets.push(...demuxer.push(file.subarray(at, at + OGG_SLICE_BYTES)));
  }
  if (demuxer.errors !== 0) throw new Error(`Ogg demuxer reported ${demuxer.errors} errors`);
  return packets;
}

async function sha256Hex(data: Float32Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Decodes `packets` with a fresh decoder and hashes the float output. */
async function hashStream(codec: OpusCodec, stream: string, packets: readonly Uint8Array[], rate: PcmRate): Promise<StreamHash> {
  const decoder = codec.createDecoder(rate);
  const chunks: Float32Array[] = [];
  let samples = 0;
  try {
    for (const packet of packets) {
      // The view is only valid until the next call on the codec: keep a copy.
      const pcm = decoder.decodeFloat(packet).slice();
      chunks.push(pcm);
      samples += pcm.length;
    }
  } finally {
    decoder.close();
  }
  const all = new Float32Array(samples);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return { stream, rate, packets: packets.length, samples, sha256: await sha256Hex(all) };
}

/** Every fixture stream at every parity rate, in a fixed order. */
export async function codecHashes(module: WebAssembly.Module, fixtures: CodecFixtures): Promise<CodecHashReport> {
  const codec = await OpusCodec.instantiate(module);
  const streams: [string, Uint8Array[]][] = [...jvbPackets(fixtures.jvb), ['ogg', oggPackets(fixtures.ogg)]];
  const hashes: StreamHash[] = [];
  for (const rate of PARITY_RATES) {
    for (const [stream, packets] of streams) hashes.push(await hashStream(codec, stream, packets, rate));
  }
  return { libopus: codec.version, hashes };
}
