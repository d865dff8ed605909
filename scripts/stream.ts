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

function read(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') fail(`${path}: no such file (try the sample that ships with the project: npm run stream -- samples/speech.ogg)`);
    if (code === 'EISDIR') fail(`${path}: is a directory, not an audio file`);
    fail(`${path}: cannot read it (${(error as Error).message})`);
  }
}

/** Frames to send, each with its delay (ms) after the previous one. */
function frames(path: string): [delayMs: number, frame: string][] {
  const bytes = read(path);
  if (bytes.subarray(0, 4).toString('latin1') === 'OggS') {
    const out: [number, string][] = [[0, JSON.stringify({ event: 'start', start: { tag: 'cli-0', mediaFormat: { encoding: 'ogg-opus' } } })]];
    for (let at = 0, chunk = 1; at < bytes.length; at += 200, chunk++) {
      const payload = bytes.subarray(at, at + 200).toString('base64');
      out.push([20, JSON.stringify({ event: 'media', media: { tag: 'cli-0', chunk, timestamp: chunk * 960, payload } })]);
    }
    return out;
  }
  let previous: number | undefined;
  return bytes
    .toString('utf8')
    .split('\n')
    .filter(Boolean)
    .map((line, index) => {
      let record: { timestamp?: unknown; data?: unknown };
      try {
        record = JSON.parse(line) as typeof record;
      } catch {
        fail(`${path}:${index + 1}: neither an Ogg Opus file nor a capture of JSON lines ({"timestamp":…,"data":"…"})`);
      }
      const { timestamp, data } = record;
      if (typeof timestamp !== 'number' || typeof data !== 'string') {
        fail(`${path}:${index + 1}: a capture line needs a numeric "timestamp" and a string "data" (the frame sent)`);
      }
      const delay = previous === undefined ? 0 : timestamp - previous;
      previous = timestamp;
      return [delay, data];
    });
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
let lastMessageAt = Date.now();
ws.on('message', (data) => {
  lastMessageAt = Date.now();
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
  // `stop` asks for the last finals of an Ogg stream's tag at once (a capture carries its own
  // ends); they come within FINISH_TIMEOUT_MS, or later from a `local` recogniser still
  // catching up (it sends interims meanwhile). Closes after 10 s without a message.
  if (toSend[0]?.[1].includes('"cli-0"')) ws.send(JSON.stringify({ event: 'stop', stop: { tag: 'cli-0' } }));
  lastMessageAt = Math.max(lastMessageAt, Date.now());
  while (Date.now() - lastMessageAt < 10_000) await sleep(500);
  ws.close(1000, 'done');
});
