/**
 * Don't bill silence (SILENCE_GATE) and fewer upstream messages (PCM_BATCH_MS), through the
 * Node server against the fake OpenAI: speech with 20 s pauses of background noise that are
 * not DTX (test/helpers/long-pauses.ts), sent as one participant's Opus packets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpusCodec } from '../../src/codec/opus.ts';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { levelDb } from '../../src/session/silence-gate.ts';
import type { TestClient } from '../helpers/client.ts';
import { skipNote } from '../helpers/fixtures.ts';
import { longPauses, opusencAvailable, type LongPauses } from '../helpers/long-pauses.ts';
import { startProxy, type Proxy } from '../helpers/proxy.ts';

const TAG = 'speaker-1';
const available = opusencAvailable();
if (!available) skipNote(import.meta.url, 'the silence gate and batching suites', 'opusenc (opus-tools) is not installed');

let codec: OpusCodec;
let recording: LongPauses;
/** The recording decoded as the proxy decodes it for OpenAI (one decoder, 24 kHz, every packet). */
let reference: Int16Array;

beforeAll(async () => {
  if (!available) return;
  codec = await OpusCodec.instantiate(await loadOpusModule());
  recording = longPauses(codec);
  const decoder = codec.createDecoder(24000);
  const parts = recording.packets.map((p) => decoder.decodeInt16(p).slice());
  decoder.close();
  reference = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    reference.set(p, at);
    at += p.length;
  }
});

function send(client: TestClient, packets: Uint8Array[]): void {
  client.send({ event: 'start', start: { tag: TAG, mediaFormat: { encoding: 'opus', sampleRate: 48000, channels: 1 } } });
  packets.forEach((p, i) => {
    client.send({ event: 'media', media: { tag: TAG, chunk: i + 1, timestamp: i * 960, payload: Buffer.from(p).toString('base64') } });
  });
}

/** Everything the fake received, every connection's PCM in order. */
function received(proxy: Proxy, from: number): Int16Array {
  const parts = proxy.fake.connections.slice(from).map((c) => c.pcm());
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const bytes = (pcm: Int16Array) => Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);

/**
 * A sentence's audio in the reference, from its first to its last 20 ms frame above -58 dBFS
 * (quieter than the gate's -50 threshold, louder than the -62 dBFS background): what must
 * reach the provider in one piece for the sentence not to be clipped.
 */
function voicedSpan(sentence: { startMs: number; endMs: number }): Int16Array {
  const frame = 480;
  const first = Math.floor((sentence.startMs * 24) / frame);
  const last = Math.floor((sentence.endMs * 24) / frame);
  let start = -1;
  let end = -1;
  for (let f = first; f < last; f++) {
    if (levelDb(reference.subarray(f * frame, (f + 1) * frame)) > -58) {
      if (start < 0) start = f;
      end = f + 1;
    }
  }
  return reference.subarray(start * frame, end * frame);
}

describe.skipIf(!available)('the silence gate (on by default)', () => {
  let proxy: Proxy;
  beforeAll(async () => {
    // The default settings but for the gate, which the shared test helper turns off.
    proxy = await startProxy({ SILENCE_GATE: 'true', FORCE_COMMIT_TIMEOUT: '60', PROVIDER_QUEUE_MS: '120000' });
  });
  afterAll(() => proxy.close());

  it('sends at most 1.2 s of audio per second of speech, every sentence whole, each transcribed', async () => {
    const before = proxy.fake.connections.length;
    const client = await proxy.connect({ sessionId: 'gated' });
    send(client, recording.packets);
    const sentences = recording.sentences;
    // Server VAD (the default turn detection) ends each sentence in the hang-over's silence.
    await client.waitFor(() => client.finals(TAG).length >= sentences.length, 'a final per sentence', 30_000);
    const sent = received(proxy, before);
    const sentSeconds = sent.length / 24000;
    expect(sentSeconds / recording.speechSeconds).toBeLessThanOrEqual(1.2);
    // Today's behaviour for comparison: every frame, about 8× the speech on this recording.
    expect(reference.length / 24000 / recording.speechSeconds).toBeGreaterThan(5);
    const all = bytes(sent);
    for (const s of sentences) expect(all.indexOf(bytes(voicedSpan(s))), `"${s.text}" sent whole`).toBeGreaterThanOrEqual(0);
    expect(client.finals(TAG).map((f) => f.transcript[0]!.text.length > 0)).toEqual(sentences.map(() => true));
    expect(client.finals(TAG)).toHaveLength(sentences.length);
    await client.close();
  });

  it('without the provider\'s turn detection, commits each utterance at its local end of speech', async () => {
    const local = await startProxy({ SILENCE_GATE: 'true', OPENAI_TURN_DETECTION: 'null', FORCE_COMMIT_TIMEOUT: '60', PROVIDER_QUEUE_MS: '120000' });
    try {
      const client = await local.connect({ sessionId: 'gated-manual' });
      // The connection open first (the first voice opens it, 2 s in): while one opens, queued
      // audio keeps no utterance boundaries.
      const first = Math.round(recording.sentences[0]!.startMs / 20) + 25;
      send(client, recording.packets.slice(0, first));
      await local.fake.waitFor(() => (local.fake.connections[0]?.sessionUpdates.length ?? 0) > 0, 'the provider connection');
      recording.packets.slice(first).forEach((p, i) => {
        client.send({ event: 'media', media: { tag: TAG, chunk: first + i + 1, timestamp: (first + i) * 960, payload: Buffer.from(p).toString('base64') } });
      });
      // No stop, and the idle timer is a minute: only the end of speech can commit them.
      await client.waitFor(() => client.finals(TAG).length >= recording.sentences.length, 'a final per sentence', 30_000);
      const conn = local.fake.connections[0]!;
      expect(conn.commits).toBe(recording.sentences.length);
      const all = bytes(received(local, 0));
      for (const s of recording.sentences) expect(all.indexOf(bytes(voicedSpan(s))), `"${s.text}" sent whole`).toBeGreaterThanOrEqual(0);
      expect(client.finals(TAG)).toHaveLength(recording.sentences.length);
      await client.close();
    } finally {
      await local.close();
    }
  });
});

describe.skipIf(!available)('SILENCE_GATE=false and batching', () => {
  let proxy: Proxy;
  beforeAll(async () => {
    proxy = await startProxy({ SILENCE_GATE: 'false', FORCE_COMMIT_TIMEOUT: '60', PROVIDER_QUEUE_MS: '120000' });
  });
  afterAll(() => proxy.close());

  it('sends every sample, in order, in 100 ms appends (PCM_BATCH_MS default)', async () => {
    const before = proxy.fake.connections.length;
    const client = await proxy.connect({ sessionId: 'ungated' });
    // The connection open first: audio queued while it opens goes one frame per message.
    send(client, recording.packets.slice(0, 5));
    await proxy.fake.waitFor(() => (proxy.fake.connections[before]?.sessionUpdates.length ?? 0) > 0, 'the provider connection');
    recording.packets.slice(5).forEach((p, i) => {
      client.send({ event: 'media', media: { tag: TAG, chunk: i + 6, timestamp: (i + 5) * 960, payload: Buffer.from(p).toString('base64') } });
    });
    await proxy.fake.waitFor(() => (proxy.fake.connections[before]?.audioMs ?? 0) >= recording.packets.length * 20, 'all the audio');
    const conn = proxy.fake.connections[before]!;
    expect(bytes(received(proxy, before)).equals(bytes(reference))).toBe(true);
    // 20 ms packets, 5 per append (the first few queued while connecting go one by one, and a
    // batch the sweep sends early when the sender stalls adds one).
    expect(conn.appends).toBeGreaterThanOrEqual(Math.ceil(recording.packets.length / 5));
    expect(conn.appends).toBeLessThanOrEqual(Math.ceil(recording.packets.length / 5) + 8);
    client.send({ event: 'stop', stop: { tag: TAG } });
    await client.waitFor(() => client.finals(TAG).length > 0, 'the final');
    // The commit carried every sample: nothing was appended after the last batch.
    expect(bytes(received(proxy, before)).equals(bytes(reference))).toBe(true);
    await client.close();
  });

  it('PCM_BATCH_MS=0: one append per frame, the same bytes', async () => {
    const local = await startProxy({ SILENCE_GATE: 'false', PCM_BATCH_MS: '0', FORCE_COMMIT_TIMEOUT: '60', PROVIDER_QUEUE_MS: '120000' });
    try {
      const client = await local.connect({ sessionId: 'unbatched' });
      send(client, recording.packets);
      await local.fake.waitFor(() => (local.fake.connections[0]?.audioMs ?? 0) >= recording.packets.length * 20, 'all the audio');
      expect(local.fake.connections[0]!.appends).toBe(recording.packets.length);
      expect(bytes(received(local, 0)).equals(bytes(reference))).toBe(true);
      await client.close();
    } finally {
      await local.close();
    }
  });
});
