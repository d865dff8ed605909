/**
 * The provider side of the load benchmark: servers on 127.0.0.1 that record when each audio
 * frame arrives (the system's monotonic clock, comparable across processes) and which
 * session it belongs to (the `lang=en-s<N>` each bench session sets), and do nothing else,
 * so that their own cost stays small next to the server's.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { FakeOpenAI } from '../test/fakes/openai-realtime.ts';

export interface ProviderStreamTiming {
  session: number;
  /** Arrival of each audio frame, in order. */
  arrivals: bigint[];
}

/** What a sink has received so far (`counts`). */
export interface SinkCounts {
  /** Audio frames received (OpenAI appends, Deepgram binary frames), in every connection so far. */
  appends: number;
  /** Provider connections opened so far. */
  connections: number;
  /** Provider connections open now. */
  open: number;
  /** Protocol problems the fake saw in what the proxy sent (OpenAI only; the first few, distinct). */
  violations: string[];
}

export interface SinkOptions {
  /**
   * Keep every frame's arrival time (the load benchmark, default). With false the sink only
   * counts, and forgets closed connections, so that its memory stays flat over a long run.
   */
  arrivals?: boolean;
}

export interface TimingSink {
  /** The server's environment pointing the proxy at this sink. */
  readonly env: Record<string, string>;
  /** Streams in the order their connections opened (after `collect`, for a sink on a thread). */
  streams(): ProviderStreamTiming[];
  /** Fetches the streams from where the sink runs; a no-op in this thread. */
  collect?(): Promise<void>;
  /** What arrived so far (from where the sink runs). */
  counts(): Promise<SinkCounts>;
  close(): Promise<void>;
}

const sessionOf = (language: string | undefined | null) => Number(/-s(\d+)$/.exec(language ?? '')?.[1]);

/** OpenAI Realtime: the fake in timing-only mode (no VAD, no audio kept). */
export async function openaiSink(options: SinkOptions = {}): Promise<TimingSink> {
  const fake = await FakeOpenAI.start({ timingOnly: true });
  const keep = options.arrivals ?? true;
  // Count-only: arrival times are dropped and closed connections forgotten, once a second.
  let forgotten = { appends: 0, connections: 0 };
  const violations = new Set<string>();
  const sweep = keep
    ? undefined
    : setInterval(() => {
        const open = [];
        for (const c of fake.connections) {
          c.appendArrivals.length = 0;
          for (const v of c.violations.splice(0)) if (violations.size < 20) violations.add(v);
          if (c.closedWith) forgotten = { appends: forgotten.appends + c.appends, connections: forgotten.connections + 1 };
          else open.push(c);
        }
        fake.connections.splice(0, fake.connections.length, ...open);
      }, 1000);
  sweep?.unref();
  return {
    env: {
      OPENAI_API_KEY: fake.apiKey,
      OPENAI_BASE_URL: fake.baseUrl,
      // No server VAD: the proxy's idle commit is the only one, never reached under load.
      OPENAI_TURN_DETECTION: 'null',
    },
    streams: () =>
      fake.connections.map((c) => {
        const update = c.sessionUpdates[0] as { audio?: { input?: { transcription?: { language?: string } } } } | undefined;
        return { session: sessionOf(update?.audio?.input?.transcription?.language), arrivals: c.appendArrivals };
      }),
    counts: async () => {
      for (const c of fake.connections) for (const v of c.violations) if (violations.size < 20) violations.add(v);
      return {
        appends: forgotten.appends + fake.connections.reduce((n, c) => n + c.appends, 0),
        connections: forgotten.connections + fake.connections.length,
        open: fake.connections.filter((c) => !c.closedWith).length,
        violations: [...violations],
      };
    },
    close: () => {
      clearInterval(sweep);
      return fake.close();
    },
  };
}

/** Audio packets completed on the Ogg pages of `bytes` (lacing values below 255), the OpusHead and OpusTags pages left out. */
function oggAudioPackets(bytes: Buffer): number {
  let packets = 0;
  for (let at = 0; at + 27 <= bytes.length; ) {
    const segments = bytes[at + 26]!;
    const body = at + 27 + segments;
    let length = 0;
    let ends = 0;
    for (let i = at + 27; i < body; i++) {
      length += bytes[i]!;
      if (bytes[i]! < 255) ends++;
    }
    if (bytes.toString('latin1', body, body + 4) !== 'Opus') packets += ends;
    at = body + length;
  }
  return packets;
}

/** Deepgram live, Opus passed through: one binary frame per packet, or Ogg pages of several. */
export async function deepgramSink(options: SinkOptions = {}): Promise<TimingSink> {
  const keep = options.arrivals ?? true;
  const server = createServer();
  const wss = new WebSocketServer({ server, path: '/v1/listen' });
  const streams: ProviderStreamTiming[] = [];
  let appends = 0;
  let connections = 0;
  let open = 0;
  wss.on('connection', (ws, req) => {
    connections++;
    open++;
    ws.on('close', () => open--);
    const url = new URL(req.url ?? '/', 'http://sink');
    const stream: ProviderStreamTiming = { session: sessionOf(url.searchParams.get('language')), arrivals: [] };
    if (keep) streams.push(stream);
    // A container (no `encoding`): Ogg pages, each carrying several packets (PASS_THROUGH_BATCH_MS).
    const ogg = !url.searchParams.has('encoding');
    ws.on('message', (data, isBinary) => {
      if (!isBinary) return;
      const packets = ogg ? oggAudioPackets(data as Buffer) : 1;
      appends += packets;
      if (!keep) return;
      const at = process.hrtime.bigint();
      for (let i = 0; i < packets; i++) stream.arrivals.push(at);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    env: { DEEPGRAM_API_KEY: 'bench-key', DEEPGRAM_BASE_URL: `ws://127.0.0.1:${port}/v1` },
    streams: () => streams,
    counts: async () => ({ appends, connections, open, violations: [] }),
    async close() {
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
