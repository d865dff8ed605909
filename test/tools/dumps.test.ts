/**
 * Session dumps and the tools that read them, on the repository's capture: a Node proxy with
 * DUMP_DIR records a session, `npm run replay` plays the dump into a fresh proxy and gets the
 * same finals, and `npm run mix` renders the capture as a WAV on its timeline, each
 * participant's samples those of decoding its packets alone.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readWav } from '../../scripts/lib/wav.ts';
import { OpusCodec } from '../../src/codec/opus.ts';
import { loadOpusModule } from '../../src/runtime/node/wasm.ts';
import { replayJvb, TAG_A, TAG_B, type TestClient } from '../helpers/client.ts';
import { readCapture, type JvbMedia } from '../helpers/fixtures.ts';
import { wasmDecode } from '../helpers/opus-ref.ts';
import { startProviderServer } from '../helpers/provider-server.ts';
import { startProxy } from '../helpers/proxy.ts';
import { runTool } from '../helpers/tool.ts';
import { until } from '../helpers/wait.ts';

const FIXTURE = 'test/fixtures/two-speakers.jsonl';
const capture = readCapture();
/**
 * A fast replay sends the capture before the provider connection is open: hold it all. No idle
 * commit within the replay (a loaded machine's pause would split an utterance differently):
 * utterances end where the fake's VAD hears silence, and at the stops.
 */
const FAST = { FORCE_COMMIT_TIMEOUT: '30', PROVIDER_QUEUE_MS: '60000' };
/** Finals grouped by participant: the two participants' finals may interleave differently. */
const byTag = (finals: string[]) => [...finals].sort((a, b) => a.split(':')[0]!.localeCompare(b.split(':')[0]!));

interface DumpLine {
  timestamp: number;
  direction: 'incoming' | 'outgoing';
  data: string;
}

const finalTexts = (client: TestClient) => client.finals().map((f) => `${f.participant.tag}: ${f.transcript[0]!.text}`);

describe('a session dumped, then replayed', () => {
  let dir: string;
  let dumpFile: string;
  let dumped: DumpLine[];
  let originalFinals: string[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dumps-'));
    const proxy = await startProxy({ ...FAST, DUMP_DIR: dir });
    try {
      const client = await proxy.connect({ sessionId: 'dumped-1', sendBackInterim: 'true' });
      await replayJvb(client, { pace: 'fast', records: capture });
      for (const tag of [TAG_A, TAG_B]) client.send({ event: 'stop', stop: { tag } });
      await client.waitFor(() => new Set(client.finals().map((f) => f.participant.tag)).size === 2, 'finals of both participants');
      const made = () => proxy.fake.connections.flatMap((c) => c.completed().filter((t) => t.trim() !== '')).length;
      await proxy.fake.waitFor(() => proxy.fake.connections.every((c) => !c.speaking && c.commits > 0), 'every utterance committed');
      await client.waitFor(() => client.finals().length === made(), 'every final the fake made');
      originalFinals = finalTexts(client);
      const received = client.messages.length;
      await client.close();
      const files = readdirSync(dir);
      expect(files).toHaveLength(1);
      dumpFile = join(dir, files[0]!);
      expect(files[0]).toMatch(/^dumped-1-\d{4}-\d\d-\d\dT[\d-]+Z-\d+\.jsonl$/);
      // The file is complete once the socket has closed and the stream has flushed. Polled: the
      // flush announces nothing, and on a loaded machine it lands after the fake's last event.
      // Whole lines only: a poll may land in the middle of a write.
      const read = () => readFileSync(dumpFile, 'utf8').split('\n').slice(0, -1).map((l) => JSON.parse(l) as DumpLine);
      await until(() => read().filter((l) => l.direction === 'outgoing').length === received, 'the dump flushed');
      dumped = read();
    } finally {
      await proxy.close();
    }
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('holds every frame received, verbatim and in order, then the stops', () => {
    const incoming = dumped.filter((l) => l.direction === 'incoming').map((l) => l.data);
    expect(incoming.slice(0, capture.length)).toEqual(capture.map((r) => r.data));
    expect(incoming.slice(capture.length).map((d) => JSON.parse(d) as unknown)).toEqual([
      { event: 'stop', stop: { tag: TAG_A } },
      { event: 'stop', stop: { tag: TAG_B } },
    ]);
  });

  it('holds what was sent back: info first, then every transcript', () => {
    const outgoing = dumped.filter((l) => l.direction === 'outgoing').map((l) => JSON.parse(l.data) as { event: string; is_interim?: boolean; participant?: { tag: string }; transcript?: { text: string }[] });
    expect(outgoing[0]).toMatchObject({ event: 'info', sessionId: 'dumped-1', provider: 'openai' });
    const finals = outgoing.filter((m) => m.event === 'transcription-result' && !m.is_interim).map((m) => `${m.participant!.tag}: ${m.transcript![0]!.text}`);
    expect(finals).toEqual(originalFinals);
    expect(outgoing.some((m) => m.is_interim)).toBe(true);
    const times = dumped.map((l) => l.timestamp);
    expect(times).toEqual([...times].sort((a, b) => a - b));
  });

  it('npm run replay plays it into another proxy, which sends the same finals', async () => {
    const proxy = await startProxy(FAST);
    try {
      const url = `ws://127.0.0.1:${proxy.server.port}/transcribe?sessionId=replayed&sendBack=true`;
      const run = await runTool('replay.ts', [dumpFile, '--url', url, '--speed', 'full', '--tail', '4']);
      expect(run.stderr).toContain(`replayed ${capture.length + 2} frames at full speed`);
      expect(run.code).toBe(0);
      const printed = run.stdout.split('\n').filter((l) => l.startsWith('FINAL')).map((l) => l.replace(/^FINAL +/, ''));
      expect(byTag(printed)).toEqual(byTag(originalFinals));
      expect(run.stdout).toContain('connected: provider openai');
      expect(run.stdout).toMatch(/closed 1000 /);
    } finally {
      await proxy.close();
    }
  });

  it('refuses to start when DUMP_DIR cannot be created, naming it', async () => {
    const notADir = join(dir, 'a-file');
    writeFileSync(notADir, '');
    await expect(startProviderServer({ OPENAI_API_KEY: 'sk-unused', DUMP_DIR: join(notADir, 'dumps') })).rejects.toThrow(
      `DUMP_DIR: cannot create ${join(notADir, 'dumps')}`,
    );
  });

  it('npm run replay refuses a bad speed, and a file that is not a dump, in one line', async () => {
    expect(await runTool('replay.ts', [dumpFile, '--speed', 'warp'])).toMatchObject({ code: 2, stderr: '--speed must be real or full (got "warp")\n' });
    expect(await runTool('replay.ts', ['samples/speech.ogg'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/^samples\/speech\.ogg:1: not JSON/) });
  });
});

describe('npm run mix', () => {
  let dir: string;
  let codec: OpusCodec;
  const media = capture.filter((r): r is JvbMedia => r.event === 'media');
  const epoch = capture[0]!.receivedAt;
  /** Where the capture puts a tag's first packet on the 48 kHz timeline: its arrival. */
  const startOf = (tag: string) => ((media.find((r) => r.tag === tag)!.receivedAt - epoch) * 48_000) / 1000;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mix-'));
    codec = await OpusCodec.instantiate(await loadOpusModule());
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const mix = async (...args: string[]) => {
    const out = join(dir, `${args.join('_') || 'all'}.wav`);
    const run = await runTool('mix.ts', [FIXTURE, out, ...args]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    return readWav(readFileSync(out));
  };

  it('lays each participant where its timestamps put it, decoded as alone', async () => {
    for (const tag of [TAG_A, TAG_B]) {
      const own = media.filter((r) => r.tag === tag);
      const solo = await mix('--tag', tag);
      expect(solo).toMatchObject({ sampleRate: 48_000, channels: 1 });
      const decoded = wasmDecode(codec, own.map((r) => ({ op: 'decode' as const, packet: r.payload })), 48_000, 'int16');
      // Packet by packet at its RTP timestamp's offset from the first (48 kHz clock).
      let at = 0;
      for (const [i, r] of own.entries()) {
        const n = decoded.results[i]!;
        const offset = startOf(tag) + (r.timestamp - own[0]!.timestamp);
        expect([...solo.samples.subarray(offset, offset + n)]).toEqual([...decoded.pcm.subarray(at, at + n)]);
        at += n;
      }
      // Before its first packet, nothing.
      expect(solo.samples.subarray(0, startOf(tag)).every((s) => s === 0)).toBe(true);
    }
  });

  it('is as long as the capture\'s timeline and sums the participants', async () => {
    const all = await mix();
    const ends = [TAG_A, TAG_B].map((tag) => {
      const own = media.filter((r) => r.tag === tag);
      return startOf(tag) + own.at(-1)!.timestamp - own[0]!.timestamp + 960;
    });
    expect(all.samples.length).toBe(Math.max(...ends));
    // 9.657 s of capture (test/fixtures/manifest.json), the last packet's 20 ms after it.
    expect(all.samples.length / 48).toBeCloseTo(9_670, 0);
    const [a, b] = [await mix('--tag', TAG_A), await mix('--tag', TAG_B)];
    const sum = (i: number) => Math.max(-32768, Math.min(32767, (a.samples[i] ?? 0) + (b.samples[i] ?? 0)));
    expect(all.samples.every((s, i) => s === sum(i))).toBe(true);
  });

  it('names the tags there are when asked for one that is not', async () => {
    const run = await runTool('mix.ts', [FIXTURE, join(dir, 'x.wav'), '--tag', 'nobody']);
    expect(run).toMatchObject({ code: 2, stderr: `${FIXTURE}: no media for tag nobody (tags: ${TAG_A}, ${TAG_B})\n` });
  });
});
