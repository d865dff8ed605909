/**
 * Raw Opus packets into Ogg pages (src/codec/ogg-writer.ts), read back by an independent page
 * walk (test/helpers/fixtures.ts, bitwise CRC), by the product's demuxer, and by opus-tools'
 * opusdec where it is installed (CI installs it): what a provider that takes Ogg receives.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OggOpusDemuxer } from '../../src/codec/ogg.ts';
import { OggOpusWriter } from '../../src/codec/ogg-writer.ts';
import { OpusCodec } from '../../src/codec/opus.ts';
import { opusPacketDurationMs } from '../../src/codec/toc.ts';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { packetsByTag, readOggOpus } from '../helpers/fixtures.ts';
import { snrDb, wasmDecode } from '../helpers/opus-ref.ts';

const [tag, packets] = [...packetsByTag()][0]!;
const hasOpusdec = spawnSync('opusdec', ['--version']).error === undefined;

/** The stream a provider would get: header pages, then one page per `perPage` packets. */
function write(all: readonly Uint8Array[], perPage: number): { bytes: Uint8Array; pages: Uint8Array[] } {
  const writer = new OggOpusWriter(0x1234abcd);
  const pages = [writer.headerPages];
  for (let i = 0; i < all.length; i += perPage) {
    for (const p of all.slice(i, i + perPage)) writer.add(p, opusPacketDurationMs(p) * 48);
    pages.push(writer.take()!);
  }
  return { bytes: Buffer.concat(pages), pages };
}

function toFile(bytes: Uint8Array): string {
  const path = join(mkdtempSync(join(tmpdir(), 'ogg-writer-')), 'stream.opus');
  writeFileSync(path, bytes);
  return path;
}

describe('OggOpusWriter', () => {
  it(`puts the capture's packets (${tag}) on pages an independent reader walks back, every CRC valid, mono, no pre-skip`, () => {
    const { bytes } = write(packets, 5);
    const read = readOggOpus(toFile(bytes));
    expect(read).toMatchObject({ channels: 1, preSkip: 0, inputSampleRate: 48000 });
    expect(read.packets.map((p) => Buffer.from(p).toString('base64'))).toEqual(packets.map((p) => Buffer.from(p).toString('base64')));
    const samples = packets.reduce((n, p) => n + opusPacketDurationMs(p) * 48, 0);
    expect(read.finalGranule).toBe(BigInt(samples));
  });

  it('each page is whole on its own: the streaming demuxer gets every packet back page by page, with no error', () => {
    const { pages } = write(packets, 5);
    const pageKinds: string[] = [];
    const demuxer = new OggOpusDemuxer({ onPage: (_page, kind) => pageKinds.push(kind) });
    const back = pages.flatMap((page) => demuxer.push(page));
    expect(demuxer.errors).toBe(0);
    expect(demuxer.sequenceGaps).toBe(0);
    expect(demuxer.head).toMatchObject({ channels: 1, preSkip: 0 });
    expect(back).toEqual(packets);
    expect(pageKinds.filter((k) => k === 'header')).toHaveLength(2);
    expect(pageKinds.filter((k) => k === 'audio')).toHaveLength(Math.ceil(packets.length / 5));
  });

  it('a batch past 255 lacing values spills onto a second page, whole packets on each, the granule counting on', () => {
    const big = Array.from({ length: 100 }, (_, i) => {
      const p = new Uint8Array(600).fill(i);
      p[0] = packets[0]![0]!; // the capture's TOC: 20 ms
      return p;
    });
    const writer = new OggOpusWriter(7);
    for (const p of big) writer.add(p, 960);
    expect(writer.pending).toBe(96_000);
    const bytes = writer.take()!;
    expect(writer.pending).toBe(0);
    expect(writer.take()).toBeUndefined();
    const read = readOggOpus(toFile(Buffer.concat([writer.headerPages, bytes])));
    expect(read.packets).toEqual(big);
    expect(read.finalGranule).toBe(96_000n);
    // 3 lacing values per 600-byte packet: 85 packets fill 255, so two audio pages.
    const demuxer = new OggOpusDemuxer();
    const audioPages: Uint8Array[] = [];
    new OggOpusDemuxer({ onPage: (page, kind) => kind === 'audio' && audioPages.push(page) }).push(Buffer.concat([writer.headerPages, bytes]));
    expect(audioPages.map((p) => p[26])).toEqual([255, 45]);
    expect(demuxer.push(Buffer.concat([writer.headerPages, bytes]))).toHaveLength(100);
  });

  it('a packet whose length is a multiple of 255 ends with a zero lacing value (RFC 3533), and reads back whole', () => {
    const exact = new Uint8Array(510).fill(3);
    exact[0] = packets[0]![0]!;
    const writer = new OggOpusWriter(9);
    writer.add(exact, 960);
    writer.add(packets[1]!, 960);
    const page = writer.take()!;
    expect([...page.subarray(27, 27 + page[26]!)]).toEqual([255, 255, 0, packets[1]!.length]);
    expect(new OggOpusDemuxer().push(Buffer.concat([writer.headerPages, page]))).toEqual([exact, packets[1]]);
  });

  it.skipIf(!hasOpusdec)('opusdec decodes the stream to the samples our decoder gives for the same packets', async () => {
    const run = spawnSync('opusdec', ['--quiet', '--float', '--rate', '48000', toFile(write(packets, 5).bytes), '-'], { maxBuffer: 1 << 26 });
    expect(run.status, run.stderr?.toString()).toBe(0);
    const reference = new Float32Array(new Uint8Array(run.stdout).buffer);
    const codec = await OpusCodec.instantiate(await loadOpusModule());
    const ours = wasmDecode(codec, packets.map((packet) => ({ op: 'decode' as const, packet })), 48000, 'float').pcm;
    expect(reference.length).toBe(ours.length);
    expect(snrDb(reference, ours)).toBeGreaterThanOrEqual(100);
  });
});
