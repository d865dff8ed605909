/** The command-line tools' socket to /transcribe: opened, its messages printed as captions. */
import WebSocket from 'ws';
import { CaptionPrinter } from './captions.ts';

export const DEFAULT_URL = 'ws://localhost:8080/transcribe?sessionId=cli&sendBack=true&sendBackInterim=true';

/** When each socket last heard from the proxy: the tools close once it has gone quiet. */
const lastMessageAt = new WeakMap<WebSocket, number>();

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Opens `url`; resolves once open. A refusal (its status and body) or an unreachable server
 * is printed as one line and exits 1; the socket's close prints its code and exits 0.
 */
export function openTranscriber(url: string, printer = new CaptionPrinter(process.stdout, process.stderr)): Promise<WebSocket> {
  const ws = new WebSocket(url);
  ws.on('unexpected-response', (_req, res) => {
    let body = '';
    res.on('data', (d: Buffer) => (body += d.toString()));
    res.on('end', () => {
      console.error(`refused: HTTP ${res.statusCode} ${body}`);
      process.exit(1);
    });
  });
  ws.on('error', (err) => {
    console.error(`cannot connect to ${url}: ${err.message}`);
    process.exit(1);
  });
  ws.on('message', (data) => {
    lastMessageAt.set(ws, Date.now());
    printer.show(data.toString());
  });
  ws.on('close', (code, reason) => {
    printer.line(process.stdout, `closed ${code} ${reason.toString()}`);
    process.exit(0);
  });
  return new Promise((resolve) => ws.once('open', () => resolve(ws)));
}

/**
 * The end of a client's audio: a `stop` for each tag (so its last utterance is committed at
 * once rather than at the idle commit), then the finals until `quietMs` pass without a
 * message, then a normal close.
 */
export async function finish(ws: WebSocket, tags: string[], quietMs: number): Promise<void> {
  for (const tag of tags) ws.send(JSON.stringify({ event: 'stop', stop: { tag } }));
  const stoppedAt = Date.now();
  const quietSince = () => Math.max(stoppedAt, lastMessageAt.get(ws) ?? 0);
  while (Date.now() - quietSince() < quietMs) await sleep(Math.min(500, quietMs));
  ws.close(1000, 'done');
}
