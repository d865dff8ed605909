/**
 * Deepgram through the real Node server: the JVB capture replayed by a media-server
 * stand-in, the fake Deepgram (test/fakes/deepgram.ts) behind it. Assertions are on what a
 * user sees: messages on the client socket, bytes and control messages at the fake, log
 * lines and /metrics.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeDeepgram, type FakeDeepgramConnection } from '../fakes/deepgram.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TAG_A, TAG_B, replayJvb, type TestClient } from '../helpers/client.ts';
import { SPEECH_OGG_PATH, packetsByTag, readCapture } from '../helpers/fixtures.ts';
import { metricValue } from '../helpers/proxy.ts';
import { onlyTag, resultsFor, startProviderServer, stopTags, type ProviderServer } from '../helpers/provider-server.ts';
import { until } from '../helpers/wait.ts';
import { readFileSync } from 'node:fs';
import { OggOpusDemuxer } from '../../src/codec/ogg.ts';

const records = readCapture();
const packets = packetsByTag(records);
/** Every Opus packet of the capture, both tags. */
const allPackets = [...packets.values()].reduce((n, p) => n + p.length, 0);

let fake: FakeDeepgram | undefined;
let openai: FakeOpenAI | undefined;
let proxy: ProviderServer | undefined;
afterEach(async () => {
  await proxy?.close();
  await fake?.close();
  await openai?.close();
  proxy = fake = openai = undefined;
});

async function start(env: Record<string, string> = {}, apiKey?: string): Promise<{ fake: FakeDeepgram; proxy: ProviderServer }> {
  fake = await FakeDeepgram.start();
  proxy = await startProviderServer({
    DEEPGRAM_API_KEY: apiKey ?? fake.apiKey,
    DEEPGRAM_BASE_URL: fake.baseUrl,
    // Fast replays deliver the whole capture before the first connection is open: hold all of it.
    PROVIDER_QUEUE_MS: '120000',
    FORCE_COMMIT_TIMEOUT: '0.5',
    ...env,
  });
  return { fake, proxy };
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

/** The fake connection that carried `tag`'s audio (its first packet is the tag's first packet). */
function connectionOf(f: FakeDeepgram, tag: string): FakeDeepgramConnection {
  const first = packets.get(tag)![0]!;
  const conn = f.connections.find((c) => c.packets[0] !== undefined && same(c.packets[0], first));
  if (!conn) throw new Error(`no connection carried ${tag}`);
  return conn;
}

type Json = Record<string, unknown>;
interface Expected {
  kind: 'interim' | 'final';
  text: string;
}

/**
 * What a client must see for the Results a Deepgram connection sent: is_final segments
 * accumulate until speech_final / from_finalize / UtteranceEnd (or the end of the stream),
 * and every interim is the whole hypothesis: the segments so far plus the current partial.
 */
function expectedFrom(results: Json[]): Expected[] {
  const out: Expected[] = [];
  let segments: string[] = [];
  let partial = '';
  const whole = () => [...segments, partial].filter(Boolean).join(' ');
  const end = () => {
    if (whole()) out.push({ kind: 'final', text: whole() });
    segments = [];
    partial = '';
  };
  for (const r of results) {
    if (r.type === 'UtteranceEnd') {
      end();
      continue;
    }
    const alt = (r.channel as { alternatives: { transcript: string }[] }).alternatives[0]!;
    const text = alt.transcript.trim();
    const closes = r.speech_final === true || r.from_finalize === true;
    if (r.is_final !== true) {
      if (text) {
        partial = text;
        out.push({ kind: 'interim', text: whole() });
      }
      continue;
    }
    partial = '';
    if (text) {
      segments.push(text);
      if (!closes) out.push({ kind: 'interim', text: whole() });
    }
    if (closes) end();
  }
  end();
  return out;
}

function seen(client: TestClient, tag: string): Expected[] {
  return resultsFor(client, tag).map((m) => ({ kind: m.is_interim ? 'interim' : 'final', text: m.transcript[0]!.text }));
}

function logsWith(p: ProviderServer, text: string) {
  return p.logs.filter((l) => JSON.stringify(l).includes(text));
}

describe('Deepgram, Opus passed through', () => {
  it('replays the JVB capture: each tag’s packets reach Deepgram byte for byte, in order, five to an Ogg page (PASS_THROUGH_BATCH_MS), and both participants get their transcripts', async () => {
    const { fake, proxy } = await start();
    const client = await proxy.connect({ sendBackInterim: 'true' });
    await replayJvb(client, { pace: 'fast' });
    await fake.waitFor(() => fake.connections.reduce((n, c) => n + c.packets.length, 0) === allPackets, 'every packet at the fake');
    await client.waitFor(() => client.finals(TAG_A).length > 0 && client.finals(TAG_B).length > 0, 'finals for both tags');
    stopTags(client, TAG_A, TAG_B);
    await fake.waitFor(() => fake.connections.every((c) => c.closedWith !== undefined), 'both streams closed');

    expect(fake.connections).toHaveLength(2);
    for (const tag of [TAG_A, TAG_B]) {
      const conn = connectionOf(fake, tag);
      const expected = packets.get(tag)!;
      expect(conn.packets).toHaveLength(expected.length);
      expect(conn.packets.every((packet, i) => same(packet, expected[i]!))).toBe(true);
      // The header pages, then one message per 100 ms of 20 ms packets (a flush may close a page early).
      expect(conn.frames.length).toBeGreaterThanOrEqual(1 + Math.ceil(expected.length / 5));
      expect(conn.frames.length).toBeLessThan(1 + expected.length / 4);
      expect(conn.violations).toEqual([]);
      expect(conn.headers.authorization).toBe(`Token ${fake.apiKey}`);
      expect(conn.protocols).toEqual([]);
      expect(Object.fromEntries(conn.params)).toMatchObject({
        model: 'nova-3',
        interim_results: 'true',
        punctuate: 'true',
        diarize: 'false',
        channels: '1',
      });
      // A container describes itself: no encoding or rate (Deepgram refuses them with one).
      expect(conn.params.has('encoding')).toBe(false);
      expect(conn.params.has('sample_rate')).toBe(false);
      expect(conn.params.has('language')).toBe(false);
      // A clean end: the last utterance flushed, then CloseStream.
      expect(conn.controls.at(-1)).toBe('CloseStream');
      expect(conn.closedWith?.code).toBe(1000);

      // Everything the fake recognised reaches the client, interims as whole hypotheses.
      const want = expectedFrom(conn.results());
      expect(want.filter((e) => e.kind === 'final').length).toBeGreaterThan(0);
      // The last final follows the fake's Metadata and close: let it arrive.
      await client.waitFor(() => resultsFor(client, tag).length >= want.length, `${tag}'s ${want.length} results`);
      expect(seen(client, tag)).toEqual(want);
      for (const m of resultsFor(client, tag)) {
        expect(m.participant).toEqual({ id: tag.split('-')[0], tag });
        if (!m.is_interim) expect(m.transcript[0]!.confidence).toBeCloseTo(0.9);
      }
    }
    // One message_id per utterance: its interims and its final share it; finals never do.
    const finals = client.finals();
    expect(new Set(finals.map((f) => f.message_id)).size).toBe(finals.length);
    for (const f of finals) {
      const interims = client.interims().filter((i) => i.message_id === f.message_id);
      for (const i of interims) expect(i.participant.tag).toBe(f.participant.tag);
    }
    expect(client.closed).toBeUndefined();
  });

  it('builds interims from the finalised segments so far plus the current partial', async () => {
    const { fake, proxy } = await start();
    const client = await proxy.connect({ sendBackInterim: 'true' });
    await replayJvb(client, { pace: 'fast', records: onlyTag(records, TAG_B) });
    await fake.waitFor(() => fake.connections[0]?.packets.length === packets.get(TAG_B)!.length, 'all of B');
    await client.waitFor(() => client.finals(TAG_B).length > 0, 'a final');

    // An utterance that Deepgram finalised in several segments.
    const results = fake.connections[0]!.results();
    const firstSegment = results.findIndex((r) => r.is_final === true && r.speech_final !== true && r.from_finalize !== true);
    expect(firstSegment).toBeGreaterThanOrEqual(0);
    const segmentText = (results[firstSegment]!.channel as { alternatives: { transcript: string }[] }).alternatives[0]!.transcript;
    const next = results.slice(firstSegment + 1).find((r) => r.is_final !== true);
    const partialText = (next!.channel as { alternatives: { transcript: string }[] }).alternatives[0]!.transcript;
    // Deepgram's interim after a segment holds only the new words; the client sees both.
    expect(partialText.startsWith(segmentText)).toBe(false);
    const interims = client.interims().map((m) => m.transcript[0]!.text);
    expect(interims).toContain(`${segmentText} ${partialText}`);
    const utterance = client.interims().find((m) => m.transcript[0]!.text === `${segmentText} ${partialText}`)!;
    const final = client.finals(TAG_B).find((f) => f.message_id === utterance.message_id)!;
    expect(final.transcript[0]!.text.startsWith(`${segmentText} ${partialText.split(' ')[0]}`)).toBe(true);
  });

  it('PASS_THROUGH_BATCH_MS=0: one raw packet per message, encoding=opus at 48 kHz, byte for byte', async () => {
    const { fake, proxy } = await start({ PASS_THROUGH_BATCH_MS: '0' });
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: onlyTag(records, TAG_B) });
    const expected = packets.get(TAG_B)!;
    await fake.waitFor(() => fake.connections[0]?.frames.length === expected.length, 'every packet at the fake');
    const conn = fake.connections[0]!;
    expect(conn.frames.every((frame, i) => same(frame, expected[i]!))).toBe(true);
    expect(Object.fromEntries(conn.params)).toMatchObject({ encoding: 'opus', sample_rate: '48000' });
    expect(conn.violations).toEqual([]);
    await client.waitFor(() => client.finals(TAG_B).length > 0, 'a final');
  });

  it('raw packets as Ogg pages across a lost connection: the new one gets the header pages first, then the unfinalised packets again, and nothing is missing', async () => {
    const { fake, proxy } = await start();
    fake.faults.closeAfterFrames = { frames: 6, code: 1011, reason: 'NET-0000: internal server error' };
    const client = await proxy.connect();
    const b = onlyTag(records, TAG_B);
    const expected = packets.get(TAG_B)!;
    // The start record and 60 packets: more than the header and five pages the fake takes before it drops the connection.
    await replayJvb(client, { pace: 'fast', records: b.slice(0, 61) });
    await fake.waitFor(() => fake.connections[0]?.closedWith !== undefined, 'the first connection dropped');
    fake.faults.closeAfterFrames = undefined;
    await replayJvb(client, { pace: 'fast', records: b.slice(61) });
    const last = () => fake.connections[1]?.packets.at(-1);
    await fake.waitFor(() => last() !== undefined && same(last()!, expected.at(-1)!), 'the last packet on the new connection');

    const [dead, next] = fake.connections;
    expect(dead!.closedWith).toMatchObject({ code: 1011, by: 'server' });
    // Our own header pages open the new stream, as they opened the first.
    expect(same(next!.frames[0]!, dead!.frames[0]!)).toBe(true);
    expect(new OggOpusDemuxer().push(next!.frames[0]!)).toEqual([]);
    // The new connection starts where the dead one's last final left off (none yet: its start) and runs to the end, in order.
    const from = expected.findIndex((p) => same(p, next!.packets[0]!));
    expect(from).toBeGreaterThanOrEqual(0);
    expect(from).toBeLessThanOrEqual(dead!.packets.length);
    expect(next!.packets).toHaveLength(expected.length - from);
    expect(next!.packets.every((p, i) => same(p, expected[from + i]!))).toBe(true);
    expect(next!.violations).toEqual([]);
    await client.waitFor(() => client.finals(TAG_B).length > 0, 'a final');
  });

  it('passes an Ogg stream through as pages, without encoding parameters, and re-sends its header pages first after a reconnect', async () => {
    const { fake, proxy } = await start();
    fake.faults.closeAfterFrames = { frames: 6, code: 1011, reason: 'NET-0000: internal server error' };
    const client = await proxy.connect();
    const ogg = new Uint8Array(readFileSync(SPEECH_OGG_PATH));
    const pages = oggPages(ogg);
    const header = Buffer.concat([pages[0]!, pages[1]!]);
    // The widely used health-check client: 200-byte slices labelled opus, one every 20 ms.
    const tag = 'cccccccc-1';
    let first = true;
    for (let at = 0, chunk = 0; at < ogg.length; at += 200, chunk++) {
      client.send({ event: 'media', media: { tag, chunk, timestamp: chunk * 960, payload: Buffer.from(ogg.subarray(at, at + 200)).toString('base64') } });
      if (first && fake.connections[0]?.closedWith) {
        first = false;
        fake.faults.closeAfterFrames = undefined;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    // Real time is unavoidable here (real sockets, a real reconnect); the final needs the idle
    // commit and a round trip, a second or two, so 30 s only fails if it never comes.
    await client.waitFor(() => client.finals(tag).length > 0, 'a final for the Ogg stream', 30_000);

    expect(fake.connections.length).toBeGreaterThanOrEqual(2);
    expect(fake.connections[0]!.closedWith).toMatchObject({ code: 1011, by: 'server' });
    const pagesOf = (conn: (typeof fake.connections)[number]) => conn.frames.slice(1).map((frame) => pages.findIndex((p) => same(p, frame)));
    for (const conn of fake.connections) {
      expect(conn.params.has('encoding')).toBe(false);
      expect(conn.params.has('sample_rate')).toBe(false);
      expect(conn.violations).toEqual([]);
      // The headers first on every connection, then whole audio pages in file order.
      expect(same(conn.frames[0]!, header)).toBe(true);
      const order = pagesOf(conn);
      expect(order.every((index, i) => index > (i === 0 ? 1 : order[i - 1]!))).toBe(true);
    }
    // The pages the dead connection had heard since its last final go again first on the next one.
    const [dead, next] = [pagesOf(fake.connections[0]!), pagesOf(fake.connections[1]!)];
    const replayedFrom = dead.indexOf(next[0]!);
    expect(replayedFrom).toBeGreaterThanOrEqual(0);
    expect(next.slice(0, dead.length - replayedFrom)).toEqual(dead.slice(replayedFrom));
    expect(logsWith(proxy, 'Deepgram closed the connection (1011 NET-0000').length).toBeGreaterThan(0);
  });
});

describe('Deepgram, decoded PCM', () => {
  it('sends linear16 at 16 kHz when DEEPGRAM_ENCODING=linear16, and both participants get finals', async () => {
    const { fake, proxy } = await start({ DEEPGRAM_ENCODING: 'linear16' });
    const client = await proxy.connect({ lang: 'es' });
    await replayJvb(client, { pace: 'fast' });
    await client.waitFor(() => client.finals(TAG_A).length > 0 && client.finals(TAG_B).length > 0, 'finals for both tags');
    await fake.waitFor(() => fake.connections.reduce((n, c) => n + c.frames.reduce((b, f) => b + f.length, 0), 0) === allPackets * 640, 'all PCM');
    expect(fake.connections).toHaveLength(2);
    for (const conn of fake.connections) {
      expect(Object.fromEntries(conn.params)).toMatchObject({ encoding: 'linear16', sample_rate: '16000', language: 'es' });
      expect(conn.violations).toEqual([]);
      // Whole 20 ms frames of 16-bit samples, up to 5 per message (PCM_BATCH_MS 100).
      expect(conn.frames.every((f) => f.length % 640 === 0 && f.length <= 3200)).toBe(true);
    }
    expect(client.finals().every((f) => f.language === 'es')).toBe(true);
  });
});

describe('Deepgram diarization and language', () => {
  it('splits a diarized utterance into one final per speaker, each with its speaker and Deepgram’s language', async () => {
    const { fake, proxy } = await start({ DEEPGRAM_DIARIZE: 'true', DEEPGRAM_LANGUAGE: 'multi' });
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: onlyTag(records, TAG_B) });
    await client.waitFor(() => client.finals(TAG_B).some((f) => f.speaker === 1), 'a final of the second speaker');
    const conn = fake.connections[0]!;
    expect(Object.fromEntries(conn.params)).toMatchObject({ diarize: 'true', language: 'multi' });
    const finals = client.finals(TAG_B);
    expect(finals.every((f) => f.speaker === 0 || f.speaker === 1)).toBe(true);
    expect(finals.every((f) => f.language === 'en')).toBe(true);
    expect(new Set(finals.map((f) => f.message_id)).size).toBe(finals.length);
    // Consecutive finals of one utterance alternate speakers, as its segments did.
    const speakers = finals.map((f) => f.speaker);
    expect(speakers.some((s, i) => i > 0 && s !== speakers[i - 1])).toBe(true);
  });
});

describe('Deepgram failures', () => {
  it('bad credentials: a clear error (status and dg-error, never the key), counted, not retried in a loop; the session and another provider’s session go on', async () => {
    openai = await FakeOpenAI.start();
    const badKey = 'dg-wrong-key-9f8e7d6c5b4a';
    const { fake, proxy } = await start({ OPENAI_API_KEY: openai.apiKey, OPENAI_BASE_URL: openai.baseUrl }, badKey);
    const victim = await proxy.connect({ provider: 'deepgram' });
    const other = await proxy.connect({ provider: 'openai' });
    const window = onlyTag(records, TAG_A).filter((r) => r.receivedAt - records[0]!.receivedAt < 3_000);
    await Promise.all([replayJvb(victim, { pace: 'realtime', records: window }), replayJvb(other, { pace: 'fast' })]);

    // ~150 frames in 3 s, one attempt: a refused key waits out the long backoff.
    expect(fake.handshakes).toHaveLength(1);
    expect(fake.handshakes[0]!.refused).toBe(401);
    const failed = logsWith(proxy, 'Deepgram refused the connection: HTTP 401 (Invalid credentials.)');
    expect(failed.length).toBe(1);
    expect(failed[0]).toMatchObject({ level: 'warn', provider: 'deepgram', kind: 'auth' });
    expect(JSON.stringify(proxy.logs)).not.toContain(badKey);
    expect(metricValue(await proxy.metrics(), 'transcriber_backend_errors_total', { provider: 'deepgram', kind: 'auth' })).toBe(1);

    await other.waitFor(() => other.finals(TAG_A).length > 0 && other.finals(TAG_B).length > 0, 'the other session’s finals');
    expect(victim.closed).toBeUndefined();
    expect(victim.results()).toEqual([]);
  });

  it('a refused handshake is retried with backoff, not in a tight loop, and the participant recovers', async () => {
    const { fake, proxy } = await start();
    fake.faults.refuseHandshake = { status: 503, dgError: 'Service temporarily unavailable.' };
    const client = await proxy.connect();
    const a = onlyTag(records, TAG_A);
    const window = a.filter((r) => r.receivedAt - records[0]!.receivedAt < 3_000);
    await replayJvb(client, { pace: 'realtime', records: window });

    // Counts, not times. The backoff waits 0.25–0.5, 0.5–1, 1–2, 2–4, 4–8, 8–16 s (0.5 s doubling,
    // jittered): the replay lasts at least its 3 s, so at least 2 attempts; a seventh needs over
    // 15.75 s, five times the replay, which a slow CI machine does not come near. A tight loop
    // would make hundreds.
    // An attempt may be in flight as the replay ends: wait until the proxy has logged each one.
    const refused = () => logsWith(proxy, 'Deepgram refused the connection: HTTP 503 (Service temporarily unavailable.)');
    await until(() => refused().length === fake.handshakes.length, 'each attempt logged');
    const attempts = fake.handshakes.length;
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThanOrEqual(6);
    expect(refused()).toHaveLength(attempts);
    expect(metricValue(await proxy.metrics(), 'transcriber_backend_errors_total', { provider: 'deepgram', kind: 'handshake' })).toBe(attempts);

    fake.faults.refuseHandshake = undefined;
    await replayJvb(client, { pace: 'fast', records: a.slice(window.length) });
    await client.waitFor(() => client.finals(TAG_A).length > 0, 'finals once Deepgram accepts', 40_000);
  });

  it('one participant’s refused handshake does not touch another’s stream', async () => {
    const { fake, proxy } = await start();
    fake.faults.refuseNext = { count: 1, status: 503, dgError: 'Service temporarily unavailable.' };
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast' });
    await client.waitFor(() => client.finals(TAG_A).length > 0 && client.finals(TAG_B).length > 0, 'finals for both tags');
    expect(fake.handshakes.filter((h) => h.refused)).toHaveLength(1);
    // The refused tag was A (first to speak); B's stream was never interrupted.
    expect(connectionOf(fake, TAG_B).packets).toHaveLength(packets.get(TAG_B)!.length);
  });

  it('maps Error messages and close codes (1008 DATA-0000, 1011 NET-0001) to logged, counted provider errors', async () => {
    // Raw packets, one per message: the fake's faults count messages.
    const { fake, proxy } = await start({ PASS_THROUGH_BATCH_MS: '0' });
    fake.faults.errorAfterFrames = { frames: 3, description: 'Something went wrong in the fake.' };
    fake.faults.closeAfterFrames = { frames: 10, code: 1008, reason: 'DATA-0000: The payload cannot be decoded as audio.' };
    const client = await proxy.connect();
    const a = onlyTag(records, TAG_A);
    await replayJvb(client, { pace: 'fast', records: a.slice(0, 20) });
    await until(() => logsWith(proxy, 'Deepgram could not decode the audio (1008 DATA-0000').length > 0, 'the DATA-0000 log line');
    expect(logsWith(proxy, 'Deepgram error: error: Something went wrong in the fake.').length).toBeGreaterThan(0);

    fake.faults = { idleTimeoutMs: 50 };
    await replayJvb(client, { pace: 'fast', records: a.slice(20, 30) });
    await until(() => fake!.connections.length >= 2, 'a reconnect');
    await until(() => logsWith(proxy, 'Deepgram received no audio or KeepAlive in time (1011 NET-0001').length > 0, 'the NET-0001 log line');
    const metrics = await proxy.metrics();
    expect(metricValue(metrics, 'transcriber_backend_errors_total', { provider: 'deepgram', kind: 'provider' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(metrics, 'transcriber_backend_errors_total', { provider: 'deepgram', kind: 'protocol' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(metrics, 'transcriber_backend_errors_total', { provider: 'deepgram', kind: 'closed' })).toBeGreaterThanOrEqual(1);
  });

  it('keeps an idle stream open with KeepAlive', async () => {
    const { fake, proxy } = await start({ DEEPGRAM_KEEPALIVE_MS: '200' });
    fake.faults.idleTimeoutMs = 1_000;
    const client = await proxy.connect();
    await replayJvb(client, { pace: 'fast', records: onlyTag(records, TAG_A).slice(0, 30) });
    await fake.waitFor(() => (fake.connections[0]?.keepAlives ?? 0) >= 10, 'ten KeepAlives');
    const conn = fake.connections[0]!;
    expect(conn.closedWith).toBeUndefined();
    expect(fake.connections).toHaveLength(1);
    expect(conn.violations).toEqual([]);
    expect(metricValue(await proxy.metrics(), 'transcriber_backend_errors_total', { provider: 'deepgram' })).toBe(0);
  });
});

/** The pages of an Ogg file, as byte ranges. */
function oggPages(file: Uint8Array): Uint8Array[] {
  const pages: Uint8Array[] = [];
  let at = 0;
  while (at < file.length) {
    const segments = file[at + 26]!;
    let size = 27 + segments;
    for (let i = 0; i < segments; i++) size += file[at + 27 + i]!;
    pages.push(file.subarray(at, at + size));
    at += size;
  }
  return pages;
}
