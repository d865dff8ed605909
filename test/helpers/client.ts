/**
 * A media-server stand-in: a WebSocket client of /transcribe that records what the proxy
 * sends back, and replays a Videobridge capture (by default the repository's,
 * test/fixtures/two-speakers.jsonl).
 */
import WebSocket from 'ws';
import { captureParticipants, readCapture, type JvbRecord } from './fixtures.ts';
import { Waiters } from './waiters.ts';

export interface Received {
  event: string;
  [key: string]: unknown;
}

export interface TranscriptionMessage extends Received {
  event: 'transcription-result';
  transcript: { text: string; confidence?: number }[];
  is_interim: boolean;
  message_id: string;
  participant: { id: string; tag: string };
  timestamp: number;
  language?: string;
}

export class TestClient {
  readonly messages: Received[] = [];
  closed: { code: number; reason: string } | undefined;
  private readonly waiters = new Waiters('client');

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.messages.push(JSON.parse(data.toString()) as Received);
      this.waiters.notify();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.waiters.notify();
    });
  }

  /** Opens a session; resolves once the socket is open (the `info` message may follow). */
  /** Rejects with `{ status, body }` when the server refuses the upgrade. */
  static connect(url: string, options: { headers?: Record<string, string> } = {}): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers: options.headers });
      const client = new TestClient(ws);
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body}`), { status: res.statusCode, body })));
      });
      ws.once('error', reject);
    });
  }

  send(message: string | object): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  results(): TranscriptionMessage[] {
    return this.messages.filter((m): m is TranscriptionMessage => m.event === 'transcription-result');
  }

  finals(tag?: string): TranscriptionMessage[] {
    return this.results().filter((m) => !m.is_interim && (tag === undefined || m.participant.tag === tag));
  }

  interims(): TranscriptionMessage[] {
    return this.results().filter((m) => m.is_interim);
  }

  waitFor(predicate: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    return this.waiters.waitFor(predicate, what, timeoutMs, () => `got ${JSON.stringify(this.messages.map((m) => m.event))}`);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.ws.close(1000, 'done');
    return this.waitFor(() => this.closed !== undefined, 'close');
  }
}

export interface ReplayOptions {
  /** 'realtime' paces frames by their capture timestamps; 'fast' sends as fast as possible. */
  pace: 'fast' | 'realtime';
  /** Rewrites or drops (undefined) each frame before it is sent. */
  map?: (record: JvbRecord) => string | undefined;
  records?: JvbRecord[];
}

/** Sends a capture's frames (by default the repository's) verbatim, or mapped, over `client`. */
export async function replayJvb(client: TestClient, options: ReplayOptions): Promise<void> {
  const records = options.records ?? readCapture();
  const t0 = performance.now();
  const first = records[0]!.receivedAt;
  for (const record of records) {
    if (options.pace === 'realtime') {
      const due = record.receivedAt - first - (performance.now() - t0);
      if (due > 1) await new Promise((r) => setTimeout(r, due));
    }
    const frame = options.map ? options.map(record) : record.data;
    if (frame !== undefined) client.send(frame);
  }
}

/**
 * The repository capture's two participants, in the order of their `start` events: A speaks
 * first, B takes over, and A speaks again after a stretch of DTX (test/fixtures/manifest.json).
 * ID_A and ID_B are their endpoint ids, the `participant.id` of their transcripts.
 */
export const [{ tag: TAG_A, id: ID_A }, { tag: TAG_B, id: ID_B }] = captureParticipants(readCapture()) as [
  { tag: string; id: string },
  { tag: string; id: string },
];
