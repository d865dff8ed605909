/**
 * Edge cases whose guards must hold, asserted on what the provider receives and what the
 * client sees (real sockets to the fake OpenAI Realtime server; the product's timers on a
 * manual clock):
 *
 * - Concealment of lost packets (PLC, then FEC from the next packet) is capped at 120 ms
 *   per gap: a long gap is not filled with invented audio.
 * - The 16-bit `chunk` wrap: a loss across it is one lost packet concealed, not a restarted
 *   stream; a packet from before the wrap arriving after it is late, not a restart.
 * - An OpenAI item that never completes holds later finals for 5 s at most, not forever.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openai } from '../../src/providers/openai.ts';
import type { ConnectionListener, Transcript } from '../../src/providers/provider.ts';
import { createLogger } from '../../src/log.ts';
import { nodeBase64 } from '../../src/runtime/node/base64.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TAG_A, type TestClient } from '../helpers/client.ts';
import { ManualClock, settle } from '../helpers/clock.ts';
import { startClockedServer, type ClockedServer } from '../helpers/clocked-server.ts';
import { packetsByTag, readCapture } from '../helpers/fixtures.ts';
import { RecordingConnector } from '../helpers/recording-connector.ts';
import { until } from '../helpers/wait.ts';

/** Speaker A of the repository capture: speech in packets 0..~170, and again from 172. */
const packets = packetsByTag(readCapture()).get(TAG_A)!;

let fake: FakeOpenAI | undefined;
let server: ClockedServer | undefined;
afterEach(async () => {
  await server?.close();
  await fake?.close();
  server = fake = undefined;
});

async function start(env: Record<string, string> = {}) {
  fake = await FakeOpenAI.start();
  server = await startClockedServer({
    OPENAI_API_KEY: fake.apiKey,
    OPENAI_BASE_URL: fake.baseUrl,
    OPENAI_TURN_DETECTION: 'null',
    PROVIDER_QUEUE_MS: '120000',
    ...env,
  });
  return { fake, server };
}

/** Sends packet `packets[i]` as chunk `chunks[k]` for each (i, chunk) pair. */
function send(client: TestClient, frames: { packet: number; chunk: number }[]): void {
  for (const { packet, chunk } of frames) {
    const payload = Buffer.from(packets[packet]!).toString('base64');
    client.send({ event: 'media', media: { tag: TAG_A, chunk, timestamp: (chunk * 960) % 2 ** 32, payload } });
  }
}

/** Ends the tag's stream and waits until its provider connection has everything and closed. */
async function stopAndCollect(client: TestClient, f: FakeOpenAI): Promise<{ samples: number; appends: number }> {
  client.send({ event: 'stop', stop: { tag: TAG_A } });
  await f.waitFor(() => f.connections[0]?.closedWith !== undefined, 'the provider stream to finish');
  const conn = f.connections[0]!;
  return { samples: conn.pcm().length, appends: conn.appends };
}

describe('concealment is capped at 120 ms per gap', () => {
  /** 100 packets of speech; the second 50 sent after `lost` missing chunk numbers. */
  async function gap(lost: number) {
    const { fake: f, server: s } = await start();
    const client = await s.connect();
    client.send({ event: 'start', start: { tag: TAG_A, mediaFormat: { encoding: 'opus' } } });
    const first = 20_000;
    send(client, Array.from({ length: 50 }, (_, i) => ({ packet: i, chunk: first + i })));
    send(client, Array.from({ length: 50 }, (_, i) => ({ packet: 50 + i, chunk: first + 50 + lost + i })));
    const got = await stopAndCollect(client, f);
    return { ...got, plc: s.metrics.concealedFrames.get({ method: 'plc' }), fec: s.metrics.concealedFrames.get({ method: 'fec' }) };
  }

  it('fills a short gap, and never more than 120 ms of a long one (10 s, 59 s), and nothing of a 60 s one (a restarted stream)', async () => {
    const none = await gap(0);
    expect(none.appends).toBe(100);
    expect(none.fec + none.plc).toBe(0);
    const frame = none.samples / 100;
    expect(frame).toBe(480); // 20 ms at 24 kHz
    await server!.close();
    await fake!.close();

    const results: Record<number, Awaited<ReturnType<typeof gap>>> = {};
    for (const lost of [2, 500, 2_950, 3_000]) {
      results[lost] = await gap(lost);
      await server!.close();
      await fake!.close();
      server = fake = undefined;
    }
    // Two lost: both concealed (one by PLC, one by FEC from the next packet).
    expect(results[2]).toMatchObject({ samples: none.samples + 2 * frame, plc: 1, fec: 1 });
    // 10 s and 59 s lost: 120 ms concealed, no more.
    for (const lost of [500, 2_950]) {
      expect(results[lost], `${lost} packets lost`).toMatchObject({ samples: none.samples + 6 * frame, plc: 5, fec: 1 });
    }
    // 60 s or more: a stream that started again; nothing is invented.
    expect(results[3_000]).toMatchObject({ samples: none.samples, plc: 0, fec: 0 });
  });
});

describe('the 16-bit chunk wrap', () => {
  it('65534, 65535, [0 lost], 1…: one lost packet, concealed; not a restarted stream', async () => {
    const { fake: f, server: s } = await start();
    const client = await s.connect();
    const chunks = [65530, 65531, 65532, 65533, 65534, 65535, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    send(client, chunks.map((chunk, i) => ({ packet: i, chunk })));
    const got = await stopAndCollect(client, f);
    expect(got.appends).toBe(chunks.length + 1);
    expect(got.samples).toBe((chunks.length + 1) * 480);
    expect(s.metrics.concealedFrames.get({ method: 'fec' })).toBe(1);
    expect(s.metrics.concealedFrames.get({ method: 'plc' })).toBe(0);
    expect(s.metrics.inputErrors.get({ reason: 'late_packet' })).toBe(0);
  });

  it('a packet from before the wrap arriving after it is dropped as late: no out-of-order decode, nothing invented', async () => {
    const { fake: f, server: s } = await start();
    const client = await s.connect();
    // 65535 is delayed past 0: when 0 comes it is missing (concealed once), then it arrives late.
    const chunks = [65532, 65533, 65534, 0, 65535, 1, 2, 3];
    send(client, chunks.map((chunk, i) => ({ packet: i, chunk })));
    const got = await stopAndCollect(client, f);
    expect(s.metrics.inputErrors.get({ reason: 'late_packet' })).toBe(1);
    expect(s.metrics.concealedFrames.get({ method: 'fec' }) + s.metrics.concealedFrames.get({ method: 'plc' })).toBe(1);
    // 7 packets decoded, one concealed: as many frames as chunk numbers from 65532 to 3.
    expect(got.appends).toBe(8);
    expect(got.samples).toBe(8 * 480);
  });
});

describe('an OpenAI item that never completes', () => {
  /** 20 ms of a 440 Hz tone at 24 kHz: loud enough for the fake's recogniser. */
  const tone = (i: number) => {
    const pcm = new Int16Array(480);
    for (let k = 0; k < 480; k++) pcm[k] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * (i * 480 + k)) / 24_000));
    return new Uint8Array(pcm.buffer);
  };

  it('holds the later finals for 5 s on the clock, not less, and then lets them out (the connection alone)', async () => {
    fake = await FakeOpenAI.start();
    fake.faults.leaveUncompleted = 1;
    const clock = new ManualClock();
    const connector = new RecordingConnector(clock);
    const provider = openai
      .load({ OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, OPENAI_TURN_DETECTION: 'null' })
      .create!({ connector, base64: nodeBase64, timers: clock });
    const transcripts: Transcript[] = [];
    const listener: ConnectionListener = {
      transcript: (t) => void transcripts.push(t),
      error: () => undefined,
      closed: () => undefined,
      expiring: () => undefined,
    };
    const conn = await provider.connect({ format: { kind: 'pcm16', sampleRate: 24000 }, log: createLogger('error') }, listener);
    const finals = () => transcripts.filter((t) => t.kind === 'final').map((t) => t.text);
    const completions = () => connector.receivedOfType(0, 'conversation.item.input_audio_transcription.completed');
    // Three utterances, each ended by a commit; the first never completes.
    for (let u = 0; u < 2; u++) {
      for (let i = 0; i < 50; i++) conn.send(tone(u * 50 + i), 20);
      conn.flush();
    }
    await until(() => completions().length === 1, 'the second item’s completion');
    await settle();
    const said = fake.connections[0]!.completed();
    expect(said).toHaveLength(1);
    expect(finals()).toEqual([]);

    clock.advance(4_999);
    expect(finals(), 'released before 5 s').toEqual([]);
    clock.advance(1);
    expect(finals(), 'still held after 5 s').toEqual(said);

    // What comes after is no longer held.
    for (let i = 0; i < 50; i++) conn.send(tone(100 + i), 20);
    conn.flush();
    await until(() => completions().length === 2, 'the third item’s completion');
    await settle();
    expect(finals()).toEqual(fake.connections[0]!.completed());
    conn.close();
  });

  it('the client gets the later utterance’s final 5 s after the first one stalled, not never', async () => {
    const { fake: f, server: s } = await start({ FORCE_COMMIT_TIMEOUT: '1' });
    f.faults.leaveUncompleted = 1;
    const client = await s.connect();
    // A's first sentence, committed after a second of silence; it never completes.
    send(client, Array.from({ length: 160 }, (_, i) => ({ packet: i, chunk: 1 + i })));
    await f.waitFor(() => f.connections[0]?.appends === 160, 'the first utterance at the provider');
    s.clock.advance(1_000);
    await f.waitFor(() => f.connections[0]!.commits === 1, 'the first commit');
    // A's second sentence: committed, completed at once, but behind the first.
    send(client, Array.from({ length: 132 }, (_, i) => ({ packet: 172 + i, chunk: 173 + i })));
    await f.waitFor(() => f.connections[0]?.appends === 292, 'the second utterance at the provider');
    s.clock.advance(1_000);
    await f.waitFor(() => f.connections[0]!.completed().length === 1, 'the second item completed');
    await until(() => s.connector.receivedOfType(0, 'conversation.item.input_audio_transcription.completed').length === 1, 'the completion at the proxy');
    await settle();
    expect(client.finals()).toEqual([]);

    // The first item was seen at its commit, 1 s ago on the clock: 5 s after that, not before.
    s.clock.advance(3_999);
    await settle();
    expect(client.finals()).toEqual([]);
    s.clock.advance(1);
    await client.waitFor(() => client.finals().length === 1, 'the second utterance’s final');
    expect(client.finals()[0]!.transcript[0]!.text).toBe(f.connections[0]!.completed()[0]);
  });
});
