/**
 * Framing and ordering (docs/PROTOCOL.md §4.3, §4.7): lost, late and duplicate packets, Ogg Opus in
 * arbitrary slices (declared or sniffed), and L16 PCM; asserted on the PCM the provider got.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OggOpusDemuxer } from '../../src/codec/ogg.ts';
import { SPEECH_OGG_PATH, packetsByTag, readCapture, readOggOpus, skipNote, type JvbMedia } from '../helpers/fixtures.ts';
import { nativeDecode, nativeReference, type DecodeOp } from '../helpers/opus-ref.ts';
import { TAG_A, replayJvb, type TestClient } from '../helpers/client.ts';
import { metricValue, startProxy, type Proxy } from '../helpers/proxy.ts';

const FAST = { FORCE_COMMIT_TIMEOUT: '0.5', PROVIDER_QUEUE_MS: '60000' };
const capture = readCapture();
const packetsA = packetsByTag(capture).get(TAG_A)!;
const mediaA = capture.filter((r): r is JvbMedia => r.event === 'media' && r.tag === TAG_A);
// The expected PCM comes from native libopus: without it, those tests skip.
const nativeRef = nativeReference();
if (!nativeRef.available) skipNote(import.meta.url, 'the comparisons with native libopus', nativeRef.reason);
const itNative = it.skipIf(!nativeRef.available);

let proxy: Proxy;
beforeAll(async () => {
  proxy = await startProxy(FAST);
});
afterAll(() => proxy.close());

/** Replays `frames` on a fresh session and returns the PCM of its one provider connection. */
async function pcmFor(client: TestClient, send: () => Promise<void> | void, expectedSamples: number): Promise<Int16Array> {
  const before = proxy.fake.connections.length;
  await send();
  await proxy.fake.waitFor(() => (proxy.fake.connections[before]?.pcm().length ?? 0) >= expectedSamples, `${expectedSamples} samples`);
  // Nothing more arrives after the last frame's samples.
  client.send({ event: 'ping' });
  await client.waitFor(() => client.messages.some((m) => m.event === 'pong'), 'pong');
  return proxy.fake.connections[before]!.pcm();
}

const media = (tag: string, chunk: number | string, payload: string) =>
  JSON.stringify({ event: 'media', media: { tag, chunk, timestamp: Number(chunk) * 960, payload } });

describe('packet ordering and loss', () => {
  itNative('conceals a gap in chunk (PLC, then FEC from the next packet), just as native libopus does', async () => {
    const client = await proxy.connect({ sessionId: 'gaps' });
    // Single losses, and one of 3 near the end.
    const burst = packetsA.length - 20;
    const lost = (i: number) => i % 25 === 12 || (i >= burst && i < burst + 3);
    const ops: DecodeOp[] = [];
    packetsA.forEach((packet, i) => {
      if (lost(i)) return;
      if (i > 0 && lost(i - 1)) {
        let gap = 0;
        while (lost(i - 1 - gap)) gap++;
        for (let g = 0; g < gap - 1; g++) ops.push({ op: 'conceal', samples: 480 });
        ops.push({ op: 'recover', packet, samples: 480 });
      }
      ops.push({ op: 'decode', packet });
    });
    const reference = nativeDecode(ops, 24000, 'int16').pcm;
    const pcm = await pcmFor(
      client,
      () => replayJvb(client, { pace: 'fast', records: capture.filter((r, i) => r.tag === TAG_A && !lost(mediaA.indexOf(r as JvbMedia)) || i === 0) }),
      reference.length,
    );
    expect(pcm.length).toBe(reference.length);
    expect(pcm.every((s, i) => Math.abs(s - reference[i]!) <= 1)).toBe(true);
    const text = await proxy.metrics();
    expect(metricValue(text, 'transcriber_concealed_frames_total', { method: 'fec' })).toBe(packetsA.filter((_, i) => lost(i) && !lost(i + 1) && i + 1 < packetsA.length).length);
    // Each run of losses before a packet: FEC rebuilds its last frame, PLC the ones before.
    const runs = packetsA.flatMap((_, i) => (lost(i) && !lost(i + 1) && i + 1 < packetsA.length ? [i] : [])).map((end) => {
      let start = end;
      while (start > 0 && lost(start - 1)) start--;
      return end + 1 - start;
    });
    expect(runs.some((n) => n >= 3)).toBe(true);
    expect(metricValue(text, 'transcriber_concealed_frames_total', { method: 'plc' })).toBe(runs.reduce((sum, n) => sum + n - 1, 0));
  });

  itNative('drops late and duplicate packets, counting them, and treats a timestamp jump as DTX', async () => {
    const client = await proxy.connect({ sessionId: 'late' });
    const frames = mediaA.slice(0, 100);
    const reference = nativeDecode(frames.map((r) => ({ op: 'decode' as const, packet: r.payload })), 24000, 'int16').pcm;
    const send = () => {
      for (const [i, r] of frames.entries()) {
        client.send(r.data);
        if (i % 10 === 5) client.send(frames[i - 3]!.data); // late
        if (i % 10 === 7) client.send(r.data); // duplicate
      }
    };
    const pcm = await pcmFor(client, send, reference.length);
    expect(pcm.length).toBe(reference.length);
    expect(metricValue(await proxy.metrics(), 'transcriber_input_errors_total', { reason: 'late_packet' })).toBe(20);
  });

  itNative('wraps chunk numbers at 16 bits without calling it loss', async () => {
    const client = await proxy.connect({ sessionId: 'wrap' });
    const frames = mediaA.slice(0, 60);
    const reference = nativeDecode(frames.map((r) => ({ op: 'decode' as const, packet: r.payload })), 24000, 'int16').pcm;
    const plcBefore = metricValue(await proxy.metrics(), 'transcriber_concealed_frames_total');
    const pcm = await pcmFor(
      client,
      () => frames.forEach((r, i) => client.send(media('wrap-1', (65_506 + i) % 65_536, Buffer.from(r.payload).toString('base64')))),
      reference.length,
    );
    expect(pcm.length).toBe(reference.length);
    expect(metricValue(await proxy.metrics(), 'transcriber_concealed_frames_total')).toBe(plcBefore);
  });
});

describe('Ogg Opus and L16', () => {
  const ogg = readFileSync(SPEECH_OGG_PATH);
  let oggReference: Int16Array;
  beforeAll(() => {
    if (nativeRef.available) oggReference = nativeDecode(readOggOpus().packets.map((packet) => ({ op: 'decode' as const, packet })), 24000, 'int16').pcm;
  });

  it.skipIf(!nativeRef.available).each([
    ['encoding=ogg-opus in the URL, random slices', { encoding: 'ogg-opus' }, 'opus'],
    ['an `ogg` start, 1-byte then 777-byte slices', {}, 'ogg'],
    ['OggS sniffed under the default opus label, 200-byte slices', {}, undefined],
  ] as const)('%s: the provider gets the file\'s decoded audio', async (_name, params, declared) => {
    const client = await proxy.connect({ sessionId: `ogg-${declared ?? 'sniffed'}`, ...params });
    const tag = 'deadbeef-0';
    if (declared) client.send({ event: 'start', start: { tag, mediaFormat: { encoding: declared } } });
    let seed = 7;
    const sizes = [
      () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31), 1 + (seed % 900)),
      (n: number) => (n < 40 ? 1 : 777),
      () => 200,
    ];
    const size = sizes[declared === undefined ? 2 : declared === 'ogg' ? 1 : 0]!;
    const pcm = await pcmFor(
      client,
      () => {
        let chunk = 0;
        for (let at = 0; at < ogg.length; ) {
          const n = size(chunk);
          client.send(media(tag, ++chunk, ogg.subarray(at, at + n).toString('base64')));
          at += n;
        }
      },
      oggReference.length,
    );
    expect(pcm.length).toBe(oggReference.length);
    expect(pcm.every((s, i) => Math.abs(s - oggReference[i]!) <= 1)).toBe(true);
    await client.waitFor(() => client.finals(tag).length > 0, 'a final');
  });

  it('joins an Ogg stream mid-way (no OpusHead) after a reconnect', async () => {
    const client = await proxy.connect({ sessionId: 'ogg-midway', encoding: 'ogg-opus' });
    // Start at the fourth page: no OpusHead, no OpusTags.
    let start = 0;
    for (let page = 0; page < 3; page++) start = ogg.indexOf('OggS', start + 4);
    const tail = ogg.subarray(start);
    const before = proxy.fake.connections.length;
    for (let at = 0, chunk = 0; at < tail.length; at += 300) client.send(media('mid-0', ++chunk, tail.subarray(at, at + 300).toString('base64')));
    // The audio of the fourth page on (all but the first second) reaches the provider.
    const samples = new OggOpusDemuxer().push(tail).length * 480;
    await proxy.fake.waitFor(() => (proxy.fake.connections[before]?.pcm().length ?? 0) >= samples, `${samples / 24000} s of audio`);
    await client.waitFor(() => client.finals('mid-0').length > 0, 'a final');
    expect(metricValue(await proxy.metrics(), 'transcriber_decode_errors_total', { reason: 'ogg_crc_mismatch' })).toBe(0);
  });

  itNative('resamples L16 at 16 kHz to the provider\'s 24 kHz', async () => {
    const client = await proxy.connect({ sessionId: 'l16' });
    // 3 s of the speech fixture, decoded natively at 16 kHz, sent as 20 ms L16 frames.
    const speech16 = nativeDecode(readOggOpus().packets.slice(0, 150).map((packet) => ({ op: 'decode' as const, packet })), 16000, 'int16').pcm;
    client.send({ event: 'start', start: { tag: 'l16-0', mediaFormat: { encoding: 'l16', sampleRate: 16000 } } });
    const pcm = await pcmFor(
      client,
      () => {
        for (let at = 0, chunk = 0; at < speech16.length; at += 320) {
          const frame = speech16.subarray(at, at + 320);
          client.send(media('l16-0', ++chunk, Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).toString('base64')));
        }
      },
      (speech16.length * 3) / 2 - 48,
    );
    expect(Math.abs(pcm.length - (speech16.length * 3) / 2)).toBeLessThanOrEqual(48);
    // The same speech at 24 kHz, decoded natively, has the same loudness.
    const speech24 = nativeDecode(readOggOpus().packets.slice(0, 150).map((packet) => ({ op: 'decode' as const, packet })), 24000, 'int16').pcm;
    const rms = (x: Int16Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
    expect(rms(pcm) / rms(speech24)).toBeGreaterThan(0.9);
    expect(rms(pcm) / rms(speech24)).toBeLessThan(1.1);
    await client.waitFor(() => client.finals('l16-0').length > 0, 'a final');
  });
});
