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

export interface TimingSink {
  /** The server's environment pointing the proxy at this sink. */
  readonly env: Record<string, string>;
  /** Streams in the order their connections opened (after `collect`, for a sink on a thread). */
  streams(): ProviderStreamTiming[];
  /** Fetches the streams from where the sink runs; a no-op in this thread. */
  collect?(): Promise<void>;
  close(): Promise<void>;
}

const sessionOf = (language: string | undefined | null) => Number(/-s(\d+)$/.exec(language ?? '')?.[1]);

/** OpenAI Realtime: the fake in timing-only mode (no VAD, no audio kept). */
export async function openaiSink(): Promise<TimingSink> {
  const fake = await FakeOpenAI.start({ timingOnly: true });
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
    close: () => fake.close(),
  };
}

/** Deepgram live, Opus passed through: one binary frame per packet. */
export async function deepgramSink(): Promise<TimingSink> {
  const server = createServer();
  const wss = new WebSocketServer({ server, path: '/v1/listen' });
  const streams: ProviderStreamTiming[] = [];
  wss.on('connection', (ws, req) => {
    const url = new URL(req.url ?? '/', 'http://sink');
    const stream: ProviderStreamTiming = { session: sessionOf(url.searchParams.get('language')), arrivals: [] };
    streams.push(stream);
    ws.on('message', (_data, isBinary) => {
      if (isBinary) stream.arrivals.push(process.hrtime.bigint());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    env: { DEEPGRAM_API_KEY: 'bench-key', DEEPGRAM_BASE_URL: `ws://127.0.0.1:${port}/v1` },
    streams: () => streams,
    async close() {
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
