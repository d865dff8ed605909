/**
 * A command-line media server: streams an audio file, or the microphone, to /transcribe and
 * prints the captions that come back.
 *
 *   npm run stream -- FILE [URL]
 *   npm run stream -- --mic [URL]
 *
 * FILE is an Ogg Opus file (sent as 200-byte slices every 20 ms, as health checks do; e.g.
 * samples/speech.ogg) or a Videobridge capture or session dump in JSON lines (frames replayed
 * at their pace; e.g. test/fixtures/two-speakers.jsonl). --mic records the default microphone
 * with arecord or sox and sends it as 16 kHz PCM (`l16`) until Ctrl-C.
 * On a terminal, interims overwrite each other on one line and finals stay.
 * URL defaults to ws://localhost:8080/transcribe?sessionId=cli&sendBack=true&sendBackInterim=true.
 */
import type WebSocket from 'ws';
import { audioFrames, type TimedFrame } from '../src/monitor/frames.ts';
import { tagsOf } from './lib/capture.ts';
import { parseArgs, readInput, runTool, UsageError } from './lib/cli.ts';
import { MIC_RATE, NO_RECORDER, record, recorder } from './lib/microphone.ts';
import { DEFAULT_URL, finish, openTranscriber, sleep } from './lib/transcriber.ts';

const USAGE = 'usage: npm run stream -- FILE.ogg|CAPTURE.jsonl [ws://host:port/transcribe?...]\n       npm run stream -- --mic [ws://host:port/transcribe?...]';
/**
 * Finals of the last utterance follow its stop within FINISH_TIMEOUT_MS (5 s by default), or
 * later from a `local` recogniser still catching up, which sends interims meanwhile: the tools
 * close after this long without a message.
 */
const TAIL_MS = 6_000;

/** The frames to send (the same as `npm run monitor` sends). */
function fileFrames(path: string): TimedFrame[] {
  const result = audioFrames(readInput(path), path);
  if (!result.ok) throw new UsageError(result.reason);
  return result.frames;
}

async function streamFile(file: string, url: string): Promise<void> {
  // Read before connecting, so that a bad file is reported without touching the server.
  const toSend = fileFrames(file);
  const ws = await openTranscriber(url);
  for (const { delayMs, frame } of toSend) {
    if (delayMs > 0) await sleep(delayMs);
    ws.send(frame);
  }
  await finish(ws, tagsOf(toSend.map((f) => f.frame)), TAIL_MS);
}

async function streamMicrophone(url: string): Promise<void> {
  const cmd = recorder();
  if (!cmd) throw new UsageError(NO_RECORDER);
  const tag = 'mic';
  const ws: WebSocket = await openTranscriber(url);
  ws.send(JSON.stringify({ event: 'start', start: { tag, mediaFormat: { encoding: 'l16', sampleRate: MIC_RATE, channels: 1 } } }));
  let chunk = 0;
  let samples = 0;
  let ending = false;
  const child = record(
    cmd,
    (pcm) => {
      ws.send(JSON.stringify({ event: 'media', media: { tag, chunk: ++chunk, timestamp: samples, payload: pcm.toString('base64') } }));
      samples += pcm.length / 2;
    },
    (problem) => {
      if (problem) console.error(problem);
      if (ending) return;
      ending = true;
      void finish(ws, [tag], TAIL_MS);
    },
  );
  console.error(`recording with ${cmd.command}; Ctrl-C to stop`);
  process.once('SIGINT', () => child.kill('SIGINT'));
}

void runTool(async () => {
  const { positional, options } = parseArgs(process.argv.slice(2), [], ['mic']);
  if (options.has('mic')) {
    if (positional.length > 1) throw new UsageError(USAGE);
    return streamMicrophone(positional[0] ?? DEFAULT_URL);
  }
  const [file, url = DEFAULT_URL, extra] = positional;
  if (!file || extra !== undefined) throw new UsageError(USAGE);
  await streamFile(file, url);
});
