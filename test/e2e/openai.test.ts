/**
 * The Node proxy against the fake OpenAI Realtime server, over loopback: the JVB capture
 * replayed as fast as possible, with what the media server and the provider each see.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OpusCodec } from '../../src/codec/opus.ts';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { packetsByTag, readCapture, skipNote } from '../helpers/fixtures.ts';
import { nativeDecode, nativeReference, wasmDecode, type DecodeOp } from '../helpers/opus-ref.ts';
import { ID_A, ID_B, TAG_A, TAG_B, replayJvb, type TestClient, type TranscriptionMessage } from '../helpers/client.ts';
import { metricValue, startProxy, type Proxy } from '../helpers/proxy.ts';
import { until } from '../helpers/wait.ts';
import type { FakeRealtimeConnection } from '../fakes/openai-realtime.ts';

const capture = readCapture();
/**
 * A fast replay delivers the whole capture before the provider connection is even open; the
 * default queue (10 s) would drop most of it, by design. Hold it all here.
 */
const FAST = { FORCE_COMMIT_TIMEOUT: '0.5', PROVIDER_QUEUE_MS: '60000' };
const packets = packetsByTag(capture);

const nativeRef = nativeReference();
if (!nativeRef.available) skipNote(import.meta.url, 'the PCM comparison with native libopus', nativeRef.reason);
/** Without the native reference, the test's own WASM decoder tells the tags' audio apart. */
const ownCodec = nativeRef.available ? undefined : await OpusCodec.instantiate(await loadOpusModule());

/** The native libopus decode (or, without it, ours) of one tag's packets at the rate OpenAI is sent. */
function referencePcm(tag: string): Int16Array {
  const ops: DecodeOp[] = packets.get(tag)!.map((packet) => ({ op: 'decode', packet }));
  return ownCodec === undefined ? nativeDecode(ops, 24000, 'int16').pcm : wasmDecode(ownCodec, ops, 24000, 'int16').pcm;
}

function connectionFor(proxy: Proxy, sessionId: string, tag: string): FakeRealtimeConnection[] {
  // The fake cannot see tags; the proxy opens one connection per tag, and the test knows
  // which tag speaks first. Identify them by the audio: the reference decode's prefix.
  const reference = referencePcm(tag).subarray(0, 4800);
  return proxy.fake.connections.filter((c) => {
    const pcm = c.pcm().subarray(0, reference.length);
    return pcm.length === reference.length && pcm.every((s, i) => Math.abs(s - reference[i]!) <= 1);
  });
}

const finalsText = (client: TestClient, tag: string) => client.finals(tag).map((f) => f.transcript[0]!.text);

async function replayAndWait(client: TestClient, proxy: Proxy): Promise<void> {
  await replayJvb(client, { pace: 'fast', records: capture });
  // Everything sent has been transcribed once every connection's audio is committed and
  // completed: wait for the client to have as many finals as the fake produced texts.
  await proxy.fake.waitFor(
    () => proxy.fake.connections.reduce((n, c) => n + c.audioMs, 0) >= (capture.length - 2) * 20,
    'all audio appended',
  );
}

describe('JVB capture replayed as fast as possible', () => {
  let proxy: Proxy;
  let client: TestClient;
  const sessionId = 'conf-fast';
  let startedAt: number;

  beforeAll(async () => {
    proxy = await startProxy(FAST);
    startedAt = Date.now();
    client = await proxy.connect({ sessionId, sendBackInterim: 'true' });
    await replayAndWait(client, proxy);
    const expected = () => proxy.fake.connections.flatMap((c) => c.completed().filter((t) => t.trim() !== '')).length;
    await client.waitFor(() => client.finals().length === expected() && expected() >= 2, 'every final');
  });

  afterAll(() => proxy.close());

  it('sends info first, naming the runtime, provider and session', () => {
    expect(client.messages[0]).toEqual({
      event: 'info',
      application: 'opus-transcriber-proxy',
      version: expect.any(String),
      runtime: 'node',
      provider: 'openai',
      providersAvailable: ['openai', 'local'],
      sessionId,
    });
  });

  it('opens one provider connection per tag, authenticated once, with the transcription session', () => {
    expect(proxy.fake.connections).toHaveLength(2);
    for (const conn of proxy.fake.connections) {
      expect(conn.violations).toEqual([]);
      expect(conn.headers.authorization).toBe(`Bearer ${proxy.fake.apiKey}`);
      expect(conn.protocols).toEqual([]);
      expect(conn.url).toBe('/v1/realtime?intent=transcription');
      expect(conn.sessionUpdates[0]).toMatchObject({
        type: 'transcription',
        audio: {
          input: {
            format: { type: 'audio/pcm', rate: 24000 },
            transcription: { model: 'gpt-4o-transcribe' },
            turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 300 },
          },
        },
      });
    }
  });

  it.skipIf(!nativeRef.available)('delivers to the provider exactly the PCM a native libopus decode gives', () => {
    for (const tag of [TAG_A, TAG_B]) {
      const [conn] = connectionFor(proxy, sessionId, tag);
      expect(conn, `a provider connection carrying ${tag}`).toBeDefined();
      const reference = referencePcm(tag);
      const received = conn!.pcm();
      expect(received.length).toBe(reference.length);
      let maxDiff = 0;
      for (let i = 0; i < reference.length; i++) maxDiff = Math.max(maxDiff, Math.abs(received[i]! - reference[i]!));
      expect(maxDiff).toBeLessThanOrEqual(1);
    }
  });

  it('returns finals for both participants with participant id and tag, in the provider\'s words', () => {
    for (const [tag, id] of [
      [TAG_A, ID_A],
      [TAG_B, ID_B],
    ] as const) {
      const finals = client.finals(tag);
      expect(finals.length).toBeGreaterThan(0);
      for (const f of finals) expect(f.participant).toEqual({ id, tag });
      const [conn] = connectionFor(proxy, sessionId, tag);
      expect(finalsText(client, tag)).toEqual(conn!.completed().filter((t) => t.trim() !== ''));
    }
  });

  it('shapes results as PROTOCOL.md §5 says', () => {
    for (const r of client.results()) {
      expect(r).toEqual({
        event: 'transcription-result',
        type: 'transcription-result',
        transcript: [{ text: expect.any(String) }],
        is_interim: expect.any(Boolean),
        message_id: expect.any(String),
        participant: { id: expect.any(String), tag: expect.any(String) },
        timestamp: expect.any(Number),
      } satisfies Record<keyof TranscriptionMessage, unknown> | object);
      // When the utterance's first audio reached the proxy.
      expect(r.timestamp).toBeGreaterThanOrEqual(startedAt);
      expect(r.timestamp).toBeLessThanOrEqual(Date.now());
    }
  });

  it('sends cumulative interims sharing the final\'s message_id, unique per utterance', () => {
    const finals = client.finals();
    const ids = finals.map((f) => f.message_id);
    expect(new Set(ids).size).toBe(ids.length);
    const interims = client.interims();
    expect(interims.length).toBeGreaterThan(finals.length);
    for (const final of finals) {
      const mine = interims.filter((i) => i.message_id === final.message_id).map((i) => i.transcript[0]!.text);
      expect(mine.length).toBeGreaterThan(0);
      // Each interim is the whole hypothesis so far: it grows, and the final extends it.
      for (let i = 1; i < mine.length; i++) expect(mine[i]!.startsWith(mine[i - 1]!)).toBe(true);
      expect(final.transcript[0]!.text.startsWith(mine.at(-1)!)).toBe(true);
      expect(interims.find((i) => i.message_id === final.message_id)!.timestamp).toBe(final.timestamp);
    }
  });

  it('counts what it did on /metrics', async () => {
    const text = await proxy.metrics();
    expect(metricValue(text, 'transcriber_media_frames_total')).toBe(capture.length - 2);
    expect(metricValue(text, 'transcriber_transcripts_total', { kind: 'final' })).toBe(client.finals().length);
    expect(metricValue(text, 'transcriber_input_errors_total')).toBe(0);
    expect(metricValue(text, 'transcriber_participants')).toBe(2);
  });
});

describe('output gating and provider behaviour', () => {
  let proxy: Proxy;
  beforeAll(async () => {
    proxy = await startProxy(FAST);
  });
  afterEach(() => {
    proxy.fake.faults = {};
  });
  afterAll(() => proxy.close());

  it('sends no interims unless sendBackInterim=true, and refuses interims without sendBack', async () => {
    const finalsOnly = await proxy.connect({ sendBack: 'true' });
    await replayJvb(finalsOnly, { pace: 'fast', records: capture });
    await finalsOnly.waitFor(() => finalsOnly.finals(TAG_A).length > 0 && finalsOnly.finals(TAG_B).length > 0, 'finals');
    expect(finalsOnly.interims()).toEqual([]);
    // Interims go back only together with finals: asking for them alone would be a silent socket.
    const refused = await proxy.connect({ sendBack: 'false', sendBackInterim: 'true' }).then(
      () => undefined,
      (e: { status: number; body: string }) => e,
    );
    expect(refused).toMatchObject({ status: 400, body: expect.stringContaining('no output: set sendBack=true') });
    await finalsOnly.close();
  });

  it('re-orders completions that arrive out of order by the items\' audio', async () => {
    proxy.fake.faults = { completeOutOfOrder: true };
    const before = proxy.fake.connections.length;
    const client = await proxy.connect({ sessionId: 'ooo' });
    await replayJvb(client, { pace: 'fast', records: capture.filter((r) => r.tag === TAG_B) });
    const conn = () => proxy.fake.connections[before];
    await proxy.fake.waitFor(() => conn() !== undefined && conn()!.audioMs >= packets.get(TAG_B)!.length * 20, 'appends');
    const items = () => conn()!.sent.filter((e) => e.type === 'input_audio_buffer.committed').map((e) => e.item_id);
    const texts = () => conn()!.sent.filter((e) => e.type === 'conversation.item.input_audio_transcription.completed');
    await proxy.fake.waitFor(() => texts().length === items().length, 'every committed item completed');
    await client.waitFor(() => client.finals().length > 0 && client.finals().length === texts().filter((t) => t.transcript !== '').length, 'finals');
    // The fake really sent them out of order…
    expect(texts().map((t) => t.item_id)).not.toEqual(items());
    // …and the client got them in the order they were spoken.
    const byItem = new Map(texts().map((t) => [t.item_id, t.transcript as string]));
    expect(finalsText(client, TAG_B)).toEqual(items().map((id) => byItem.get(id)).filter((t) => t !== ''));
    await client.close();
  });

  it('commits after FORCE_COMMIT_TIMEOUT when packets simply stop, and ignores commit_empty', async () => {
    const local = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.3', OPENAI_TURN_DETECTION: 'null' });
    try {
      const client = await local.connect({ sessionId: 'idle' });
      // The first 3 s of speaker A, then nothing: only the idle commit can produce a final.
      const head = capture.filter((r) => r.tag === TAG_A).slice(0, 151);
      await replayJvb(client, { pace: 'fast', records: head });
      await client.waitFor(() => client.finals().length === 1, 'a final from the idle commit');
      const conn = local.fake.connections[0]!;
      expect(conn.commits).toBe(1);
      expect(conn.sessionUpdates[0]).toMatchObject({ audio: { input: { turn_detection: null } } });
      // A commit of an empty buffer is answered with commit_empty: harmless, not an error.
      conn.onMessage('{"type":"input_audio_buffer.commit"}');
      expect(conn.sent.at(-1)).toMatchObject({ error: { code: 'input_audio_buffer_commit_empty' } });
      // Nothing marks the moment the proxy has handled the answer; a ping on the client socket
      // goes through another path. Waiting can only let an error through unseen (a false pass,
      // never a flake), so 500 ms, five times what a loaded machine needs.
      await new Promise((r) => setTimeout(r, 500));
      expect(local.logs.filter((l) => l.level === 'error' || (l.level === 'warn' && String(l.error).includes('commit')))).toEqual([]);
      expect(metricValue(await local.metrics(), 'transcriber_backend_errors_total')).toBe(0);
    } finally {
      await local.close();
    }
  });

  it('a provider connection dying mid-utterance affects that tag only, which reconnects on its next audio', async () => {
    const before = proxy.fake.connections.length;
    const client = await proxy.connect({ sessionId: 'dying' });
    const other = await proxy.connect({ sessionId: 'healthy' });
    const records = capture.filter((r) => r.event === 'start' || r.tag === TAG_B);
    const half = Math.floor(records.length / 2);
    await replayJvb(client, { pace: 'fast', records: records.slice(0, half) });
    await proxy.fake.waitFor(() => (proxy.fake.connections[before]?.audioMs ?? 0) >= (half - 2) * 20, 'first half appended');
    const victim = proxy.fake.connections[before]!;
    victim.close(1011, 'server_error');
    const lost = () => proxy.logs.find((l) => l.msg === 'provider connection lost' && l.session === 'dying');
    await until(() => lost() !== undefined, 'the proxy to notice the loss');
    await Promise.all([replayJvb(client, { pace: 'fast', records: records.slice(half) }), replayJvb(other, { pace: 'fast', records })]);
    await proxy.fake.waitFor(() => proxy.fake.connections.length === before + 3, 'the dying tag reconnected, the other session connected');
    await client.waitFor(() => client.finals().length > 0, 'finals after the reconnect');
    await other.waitFor(() => other.finals().length > 0, 'finals for the other session');
    expect(client.closed).toBeUndefined();
    expect(lost()).toMatchObject({ tag: TAG_B, provider: 'openai' });
    expect(metricValue(await proxy.metrics(), 'transcriber_backend_reconnects_total', { provider: 'openai' })).toBeGreaterThanOrEqual(1);
    await Promise.all([client.close(), other.close()]);
  });

  it('a `stop` flushes the tag\'s utterance and releases its provider stream', async () => {
    const local = await startProxy({ FORCE_COMMIT_TIMEOUT: '30', OPENAI_TURN_DETECTION: 'null' });
    try {
      const client = await local.connect({ sessionId: 'stop' });
      await replayJvb(client, { pace: 'fast', records: capture.filter((r) => r.tag === TAG_A).slice(0, 151) });
      await local.fake.waitFor(() => (local.fake.connections[0]?.audioMs ?? 0) >= 150 * 20, 'appends');
      client.send({ event: 'stop', stop: { tag: TAG_A } });
      await client.waitFor(() => client.finals().length === 1, 'the final of the stopped tag');
      await local.fake.waitFor(() => local.fake.connections[0]!.closedWith !== undefined, 'provider stream closed');
      expect(local.fake.connections[0]!.closedWith).toMatchObject({ by: 'client', code: 1000 });
    } finally {
      await local.close();
    }
  });
});

describe('a rejected API key', () => {
  it('is logged and counted once per attempt, retried with backoff, and the session stays up', async () => {
    const proxy = await startProxy({ OPENAI_API_KEY: 'sk-wrong-secret-value' });
    try {
      const client = await proxy.connect({ sessionId: 'badkey' });
      await replayJvb(client, { pace: 'fast', records: capture.slice(0, 400) });
      await proxy.fake.waitFor(() => proxy.fake.connections.some((c) => c.closedWith?.code === 3000), 'the key refused');
      client.send({ event: 'ping', id: 'still-there' });
      await client.waitFor(() => client.messages.some((m) => m.event === 'pong'), 'pong');
      // Non-retryable: no tight loop of reconnections while audio keeps coming.
      await replayJvb(client, { pace: 'fast', records: capture.slice(400, 800) });
      await new Promise((r) => setTimeout(r, 300));
      expect(proxy.fake.connections.length).toBeLessThanOrEqual(2);
      expect(client.closed).toBeUndefined();
      const errors = proxy.logs.filter((l) => String(l.error ?? '').includes('invalid_api_key'));
      expect(errors.length).toBeGreaterThan(0);
      expect(errors[0]).toMatchObject({ session: 'badkey', provider: 'openai' });
      expect(JSON.stringify(proxy.logs)).not.toContain('sk-wrong-secret-value');
      expect(metricValue(await proxy.metrics(), 'transcriber_backend_errors_total', { provider: 'openai', kind: 'auth' })).toBeGreaterThan(0);
    } finally {
      await proxy.close();
    }
  });
});
