/**
 * ProviderStream, the per-participant provider state machine, on a manual clock: the
 * connect timeout, the reconnect backoff (bounds from both sides), rotation before the
 * provider's connection cap, and the bounded queue while no connection is up.
 *
 * The provider is the real OpenAI client (built as the registry builds it), reaching the
 * fake OpenAI Realtime server over real WebSockets on 127.0.0.1; only time is simulated.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openai } from '../../src/providers/openai.ts';
import type { Provider, ProviderError } from '../../src/providers/provider.ts';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import { nodeBase64 } from '../../src/runtime/node/base64.ts';
import type { SessionContext } from '../../src/session/ports.ts';
import { ProviderStream, type StreamResult } from '../../src/session/provider-stream.ts';
import { MAX_HOLD_MS, SessionBacklog, type ClientFlow } from '../../src/session/backlog.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { ManualClock, settle } from '../helpers/clock.ts';
import type { LogLine } from '../helpers/provider-server.ts';
import { RecordingConnector } from '../helpers/recording-connector.ts';
import { OpusCodec } from '../../src/codec/opus.ts';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { DecodeHistory } from '../../src/session/decode-history.ts';
import { packetsByTag, readCapture } from '../helpers/fixtures.ts';

/** 20 ms of PCM16 at 24 kHz, the format OpenAI is sent. */
const FRAME_SAMPLES = 480;
const FRAME_MS = 20;

/** A 440 Hz tone, loud enough for the fake's recogniser to hear words. */
function toneFrame(index: number): Uint8Array {
  const pcm = new Int16Array(FRAME_SAMPLES);
  for (let i = 0; i < FRAME_SAMPLES; i++) pcm[i] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * (index * FRAME_SAMPLES + i)) / 24_000));
  return new Uint8Array(pcm.buffer);
}

/** A frame whose every sample is `value`, so the provider side can tell frames apart. */
function markedFrame(value: number): Uint8Array {
  return new Uint8Array(new Int16Array(FRAME_SAMPLES).fill(value).buffer);
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function setup(options: { queueLimitMs?: number; finishTimeoutMs?: number; bufferBytes?: number; flow?: ClientFlow; batchMs?: number } = {}) {
  const clock = new ManualClock();
  const fake = await FakeOpenAI.start();
  const connector = new RecordingConnector(clock);
  const loaded = openai.load({ OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, OPENAI_TURN_DETECTION: 'null' });
  const provider: Provider = loaded.create!({ connector, base64: nodeBase64, timers: clock });
  const logs: LogLine[] = [];
  const log = createLogger('debug', (_level, line) => void logs.push(JSON.parse(line) as LogLine));
  const metrics = createMetrics();
  const results: StreamResult[] = [];
  const troubles: ProviderError[] = [];
  let ids = 0;
  const ctx: SessionContext = {
    log,
    metrics,
    timers: clock,
    limits: {
      forceCommitMs: 2_000,
      maxMessageBytes: 1 << 18,
      maxParticipants: 0,
      maxProviderConnections: 0,
      providerQueueMs: options.queueLimitMs ?? 10_000,
      maxSessionBufferBytes: options.bufferBytes ?? 64 << 20,
      providerReplayMs: 30_000,
      finishTimeoutMs: options.finishTimeoutMs ?? 5_000,
      pcmBatchMs: options.batchMs,
    },
    newId: () => `m-${++ids}`,
  };
  const backlog = new SessionBacklog(ctx, options.flow);
  const stream = new ProviderStream({ ...ctx, backlog }, {
    provider,
    format: provider.formatFor('opus'),
    onResult: (r) => void results.push(r),
    onTrouble: (err) => void troubles.push(err),
  });
  cleanup.push(() => fake.close(), () => stream.close());
  const push = (audio: Uint8Array) => stream.push(audio, FRAME_MS, clock.now());
  const failures = () => logs.filter((l) => l.msg === 'provider connection failed');
  return { clock, fake, connector, stream, logs, metrics, results, troubles, push, failures, backlog };
}

describe('ProviderStream connect timeout', () => {
  it('gives up on a connection the provider never confirms after 10 s on the clock, not before, and retries with the audio it held', async () => {
    const s = await setup();
    s.fake.faults.holdSessionUpdate = true;
    s.push(toneFrame(0));
    // Opened lazily, on the first audio; the handshake itself is bounded by the same 10 s.
    expect(s.connector.attempts).toHaveLength(1);
    expect(s.connector.attempts[0]!.options.timeoutMs).toBe(10_000);
    await s.fake.waitFor(() => s.fake.connections[0]?.sessionUpdates.length === 1, 'the session.update');
    s.push(toneFrame(1));

    s.clock.advance(9_999);
    await settle();
    expect(s.failures()).toEqual([]);
    expect(s.connector.attempts).toHaveLength(1);
    expect(s.troubles).toEqual([]);

    s.clock.advance(1);
    await settle();
    expect(s.failures()).toHaveLength(1);
    expect(s.failures()[0]).toMatchObject({ kind: 'unreachable', error: expect.stringContaining('did not confirm the session within 10000 ms') });
    expect(s.troubles.map((t) => t.kind)).toEqual(['unreachable']);
    await s.fake.waitFor(() => s.fake.connections[0]!.closedWith !== undefined, 'the abandoned socket closed');
    expect(s.fake.connections[0]!.closedWith).toMatchObject({ by: 'client' });
    expect(s.fake.connections[0]!.appends).toBe(0);

    // The retry, within the first backoff step, gets the audio held meanwhile.
    s.fake.faults.holdSessionUpdate = false;
    s.clock.advance(500);
    expect(s.connector.attempts).toHaveLength(2);
    await s.fake.waitFor(() => s.fake.connections[1]?.appends === 2, 'the held audio on the new connection');
  });
});

describe('ProviderStream backoff', () => {
  it('retries a refused handshake within [base/2, base], base doubling from 0.5 s to the 30 s cap; never earlier, never later', async () => {
    const s = await setup();
    s.fake.faults.refuseHandshake = 503;
    s.push(toneFrame(0));
    const bases = [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000];
    for (const [i, base] of bases.entries()) {
      await s.connector.settled();
      // The refusal has been handled; the clock has not moved since.
      const failedAt = s.clock.now();
      expect(s.connector.attempts).toHaveLength(i + 1);
      const failure = s.failures()[i]!;
      expect(failure).toMatchObject({ kind: 'handshake', failures: i + 1 });
      expect(failure.retryInMs as number).toBeGreaterThanOrEqual(base / 2);
      expect(failure.retryInMs as number).toBeLessThanOrEqual(base);
      // Not earlier than the minimum of the range…
      s.clock.advance(base / 2 - 1);
      expect(s.connector.attempts, `attempt ${i + 2} came before ${base / 2} ms`).toHaveLength(i + 1);
      // …and not later than its maximum.
      s.clock.advance(base / 2 + 1);
      expect(s.connector.attempts, `attempt ${i + 2} had not come by ${base} ms`).toHaveLength(i + 2);
      expect(s.connector.attempts[i + 1]!.at - failedAt).toBe(failure.retryInMs);
    }
    // The participant was told once, not at every retry.
    expect(s.troubles).toHaveLength(1);
    // Once the provider accepts, the audio held all along gets through.
    s.fake.faults.refuseHandshake = undefined;
    await s.connector.settled();
    s.clock.advance(30_000);
    await s.fake.waitFor(() => s.fake.connections[0]?.appends === 1, 'the held frame');
  });
});

describe('ProviderStream rotation', () => {
  it('moves to a new connection just after 27 min (the 28 min cap less a minute), not before; the old one delivers its final', async () => {
    const s = await setup();
    for (let i = 0; i < 50; i++) s.push(toneFrame(i));
    await s.fake.waitFor(() => s.fake.connections[0]?.appends === 50, 'the first second of audio');
    const first = s.fake.connections[0]!;

    s.clock.advance(27 * 60_000);
    s.push(toneFrame(50));
    expect(s.connector.attempts, 'rotated before 27 min had passed').toHaveLength(1);

    s.clock.advance(1);
    s.push(toneFrame(51));
    expect(s.connector.attempts, 'not rotated just after 27 min').toHaveLength(2);
    expect(s.logs.some((l) => l.msg === 'rotating provider connection before its cap')).toBe(true);

    // The retiring connection is told the utterance ended, delivers its final, then closes.
    await s.fake.waitFor(() => first.closedWith !== undefined, 'the old connection to close');
    expect(first.commits).toBe(1);
    expect(first.closedWith).toMatchObject({ by: 'client', code: 1000 });
    const [said] = first.completed();
    expect(said).toMatch(/\w/);
    expect(s.results.filter((r) => r.kind === 'final').map((r) => r.text)).toEqual([said]);

    // No audio lost across the switch: 51 frames on the old connection, the rest on the new.
    await s.fake.waitFor(() => s.fake.connections[1]?.appends === 1, 'the new connection’s audio');
    expect(first.appends).toBe(51);
    expect(s.failures()).toEqual([]);
  });
});

describe('ProviderStream queue', () => {
  it('holds at most the session buffer while it cannot connect: the oldest audio is dropped, counted, logged once, the newest delivered in order', async () => {
    // Room for 1 s of 24 kHz PCM; the mark (queueLimitMs) drops nothing by itself.
    const s = await setup({ queueLimitMs: 500, bufferBytes: 50 * FRAME_SAMPLES * 2 });
    s.fake.faults.refuseHandshake = 503;
    for (let i = 1; i <= 100; i++) s.push(markedFrame(i));
    // 2 s pushed, 1 s held.
    expect(s.metrics.queueDropped.get({ provider: 'openai' })).toBe(50);
    expect(s.metrics.audioDroppedSeconds.get({ provider: 'openai' })).toBeCloseTo(1, 6);
    expect(s.backlog.heldBytes).toBe(50 * FRAME_SAMPLES * 2);
    await s.connector.settled();
    expect(s.failures()).toHaveLength(1);

    s.fake.faults.refuseHandshake = undefined;
    s.clock.advance(500);
    expect(s.connector.attempts).toHaveLength(2);
    await s.fake.waitFor(() => s.fake.connections[0]?.appends === 50, 'the held second of audio');
    const pcm = s.fake.connections[0]!.pcm();
    expect(pcm.length).toBe(50 * FRAME_SAMPLES);
    const frames = Array.from({ length: 50 }, (_, k) => pcm[k * FRAME_SAMPLES]);
    expect(frames).toEqual(Array.from({ length: 50 }, (_, k) => 51 + k));
    expect(s.metrics.queueDropped.get({ provider: 'openai' })).toBe(50);
    // One warning for the whole episode, once it ended, with what it cost.
    const dropped = s.logs.filter((l) => l.msg.startsWith('audio dropped'));
    expect(dropped).toEqual([
      expect.objectContaining({ level: 'warn', provider: 'openai', droppedMs: 1000, frames: 50, ended: 'connected', limitBytes: 48_000 }),
    ]);
    expect(s.backlog.heldBytes).toBe(0);
  });
});

describe('ProviderStream backpressure', () => {
  function recordingFlow() {
    const calls: string[] = [];
    return { calls, flow: { pause: () => void calls.push('pause'), resume: () => void calls.push('resume') } satisfies ClientFlow };
  }

  it('pauses the client at queueLimitMs instead of dropping, and resumes it once the queue reached a connection', async () => {
    const { calls, flow } = recordingFlow();
    const s = await setup({ queueLimitMs: 1_000, flow });
    s.fake.faults.refuseHandshake = 503;
    for (let i = 1; i <= 49; i++) s.push(markedFrame(i));
    expect(calls).toEqual([]);
    s.push(markedFrame(50));
    expect(calls).toEqual(['pause']);
    expect(s.backlog.isPaused).toBe(true);
    // Frames the runtime had read already still come, and are kept.
    for (let i = 51; i <= 100; i++) s.push(markedFrame(i));
    await s.connector.settled();
    expect(s.failures()).toHaveLength(1);

    s.fake.faults.refuseHandshake = undefined;
    s.clock.advance(500);
    await s.fake.waitFor(() => s.fake.connections[0]?.appends === 100, 'every frame at the provider');
    const pcm = s.fake.connections[0]!.pcm();
    expect(Array.from({ length: 100 }, (_, k) => pcm[k * FRAME_SAMPLES])).toEqual(Array.from({ length: 100 }, (_, k) => k + 1));
    expect(calls).toEqual(['pause', 'resume']);
    expect(s.metrics.queueDropped.get({ provider: 'openai' })).toBe(0);
    expect(s.metrics.clientPauses.get()).toBe(1);
  });

  it('reads the client again after MAX_HOLD_MS of a provider that stays down, and buffers up to the session bound', async () => {
    const { calls, flow } = recordingFlow();
    const s = await setup({ queueLimitMs: 1_000, bufferBytes: 200 * FRAME_SAMPLES * 2, flow });
    s.fake.faults.refuseHandshake = 503;
    for (let i = 1; i <= 60; i++) s.push(markedFrame(i));
    expect(calls).toEqual(['pause']);
    s.clock.advance(MAX_HOLD_MS - 1);
    expect(calls).toEqual(['pause']);
    s.clock.advance(1);
    expect(calls).toEqual(['pause', 'resume']);
    expect(s.logs).toContainEqual(expect.objectContaining({ level: 'info', msg: expect.stringContaining('client socket read again') }));
    // Still down: its audio is buffered, never pausing again in this outage, to the bound.
    for (let i = 61; i <= 200; i++) s.push(markedFrame(i));
    expect(calls).toEqual(['pause', 'resume']);
    expect(s.metrics.queueDropped.get({ provider: 'openai' })).toBe(0);
    s.push(markedFrame(201));
    expect(s.metrics.queueDropped.get({ provider: 'openai' })).toBe(1);
    expect(calls).toEqual(['pause', 'resume']);
  });
});

describe('ProviderStream replay from a decode history (issue 21)', () => {
  /** The capture's second speaker decoded at 24 kHz through a history, frame by frame. */
  async function decoded(frames: number) {
    const codec = await OpusCodec.instantiate(await loadOpusModule());
    const decoder = codec.createDecoder(24_000);
    const history = new DecodeHistory(codec, decoder, { snapshotEverySamples: 24_000 });
    const packets = [...packetsByTag(readCapture()).values()][1]!.slice(0, frames);
    const pcm = packets.map((packet) => history.decode(decoder, packet).slice());
    decoder.close();
    const all = new Int16Array(pcm.length * FRAME_SAMPLES);
    pcm.forEach((frame, i) => all.set(frame, i * FRAME_SAMPLES));
    return { codec, history, pcm, all };
  }

  const bytes = (pcm: Int16Array) => Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);

  it('a lost connection: the next one gets the rebuilt audio byte for byte, in the same 100 ms appends', async () => {
    const s = await setup({ batchMs: 100 });
    const d = await decoded(150);
    const push = (i: number) => s.stream.push(new Uint8Array(d.pcm[i]!.buffer), FRAME_MS, s.clock.now(), d.history, i * FRAME_SAMPLES);
    // The first frame waits for the connection (bytes in the queue); the rest go as they come.
    push(0);
    await s.fake.waitFor(() => s.fake.connections[0]?.appends === 1, 'the first frame');
    for (let i = 1; i < 101; i++) push(i);
    await s.fake.waitFor(() => s.fake.connections[0]!.appends === 21, 'two seconds on the first connection');
    // Replay keeps positions, not PCM: the buffer points into the history from the second frame on.
    expect(s.stream.oldestPosition(d.history)).toBe(FRAME_SAMPLES);
    s.fake.connections[0]!.close(1011, 'server_error');
    await s.fake.waitFor(() => s.logs.some((l) => l.msg === 'provider connection lost'), 'the loss noticed');
    s.clock.advance(500);
    await s.fake.waitFor(() => s.fake.connections[1]?.appends === 21, 'the replay');
    for (let i = 101; i < 150; i++) push(i);
    s.stream.sendBatch();
    await s.fake.waitFor(() => s.fake.connections[1]!.appends === 31, 'the rest');
    const second = s.fake.connections[1]!;
    expect(bytes(second.pcm()).equals(bytes(d.all))).toBe(true);
    expect(s.logs.find((l) => l.msg === 'replaying audio the lost connection had not finalised')).toMatchObject({ ms: 2020 });
    expect(d.codec.liveDecoders).toBe(0);
  });

  it('handOver and materialise give the rebuilt bytes; after them nothing points into the history', async () => {
    const s = await setup({ batchMs: 100 });
    const d = await decoded(60);
    const push = (i: number) => s.stream.push(new Uint8Array(d.pcm[i]!.buffer), FRAME_MS, s.clock.now(), d.history, i * FRAME_SAMPLES);
    push(0);
    await s.fake.waitFor(() => s.fake.connections[0]?.appends === 1, 'the first frame');
    for (let i = 1; i < 60; i++) push(i);
    s.stream.materialise();
    expect(s.stream.oldestPosition(d.history)).toBeUndefined();
    const pending = s.stream.handOver();
    const handed = Buffer.concat(pending.map((q) => Buffer.from(q!.audio)));
    expect(handed.equals(bytes(d.all))).toBe(true);
    expect(d.codec.liveDecoders).toBe(0);
  });
});
