/**
 * A command-line media server: streams an audio file to /transcribe at real-time pace and
 * prints what comes back.
 *
 *   npm run stream -- FILE [URL]
 *
 * FILE is an Ogg Opus file (sent as 200-byte slices every 20 ms, as health checks do; e.g.
 * samples/speech.ogg) or a Videobridge capture in JSON lines (frames replayed at their pace;
 * e.g. test/fixtures/two-speakers.jsonl).
 * URL defaults to ws://localhost:8080/transcribe?sessionId=cli&sendBack=true&sendBackInterim=true.
 */
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { audioFrames } from '../src/monitor/frames.ts';

const [file, url = 'ws://localhost:8080/transcribe?sessionId=cli&sendBack=true&sendBackInterim=true'] = process.argv.slice(2);
if (!file) {
  console.error('usage: npm run stream -- FILE.ogg|CAPTURE.jsonl [ws://host:port/transcribe?...]');
  process.exit(2);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A problem with the command line or the file: printed as one line, exit 2. */
function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

function read(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') fail(`${path}: no such file (try the sample that ships with the project: npm run stream -- samples/speech.ogg)`);
    if (code === 'EISDIR') fail(`${path}: is a directory, not an audio file`);
    fail(`${path}: cannot read it (${(error as Error).message})`);
  }
}

/** Frames to send, each with its delay (ms) after the previous one (shared with `npm run monitor`). */
function frames(path: string): [delayMs: number, frame: string][] {
  const result = audioFrames(read(path), path);
  if (!result.ok) fail(result.reason);
  return result.frames.map((f) => [f.delayMs, f.frame]);
}

// Read before connecting, so that a bad file is reported without touching the server.
const toSend = frames(file);
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
  const msg = JSON.parse(data.toString()) as {
    event: string;
    is_interim?: boolean;
    participant?: { tag: string };
    transcript?: { text: string }[];
    code?: string;
    message?: string;
    tag?: string;
  };
  if (msg.event === 'transcription-result') {
    console.log(`${msg.is_interim ? 'interim' : 'FINAL  '} ${msg.participant?.tag}: ${msg.transcript?.[0]?.text}`);
  } else if (msg.event === 'error') {
    console.error(`error   ${msg.tag ?? ''}${msg.tag ? ': ' : ''}${msg.message} (${msg.code})`);
  } else {
    console.log(JSON.stringify(msg));
  }
});
ws.on('close', (code, reason) => {
  console.log(`closed ${code} ${reason.toString()}`);
  process.exit(0);
});
ws.on('open', async () => {
  for (const [delay, frame] of toSend) {
    if (delay > 0) await sleep(delay);
    ws.send(frame);
  }
  // Finals of the last utterance follow the idle commit (FORCE_COMMIT_TIMEOUT).
  await sleep(8000);
  ws.close(1000, 'done');
});
