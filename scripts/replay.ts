/**
 * Plays a session dump (DUMP_DIR) or a capture back into a proxy, as the client that made it:
 * every frame it sent, in order, at the pace it was sent (`--speed real`, the default) or as
 * fast as the socket takes them (`--speed full`), then a `stop` for each tag and the finals
 * printed as they come back.
 *
 *   npm run replay -- DUMP.jsonl [--url ws://host:port/transcribe?...] [--speed real|full] [--tail SECONDS]
 *
 * The URL's query is the session's (the dump holds frames, not the URL); by default
 * ws://localhost:8080/transcribe?sessionId=cli&sendBack=true&sendBackInterim=true.
 * `--tail` is how long finals are awaited after the last frame (default 6).
 */
import { parseCapture, pacedFrames, tagsOf } from './lib/capture.ts';
import { parseArgs, readInput, runTool, UsageError } from './lib/cli.ts';
import { DEFAULT_URL, finish, openTranscriber, sleep } from './lib/transcriber.ts';

const USAGE = 'usage: npm run replay -- DUMP.jsonl [--url ws://host:port/transcribe?...] [--speed real|full] [--tail SECONDS]';

void runTool(async () => {
  const { positional, options } = parseArgs(process.argv.slice(2), ['url', 'speed', 'tail']);
  const [file, extra] = positional;
  if (!file || extra !== undefined) throw new UsageError(USAGE);
  const speed = options.get('speed') ?? 'real';
  if (speed !== 'real' && speed !== 'full') throw new UsageError(`--speed must be real or full (got "${speed}")`);
  const tail = Number(options.get('tail') ?? '6');
  if (!Number.isFinite(tail) || tail < 0) throw new UsageError(`--tail must be a number of seconds (got "${options.get('tail')}")`);
  const frames = pacedFrames(parseCapture(readInput(file).toString('utf8'), file));
  if (frames.length === 0) throw new UsageError(`${file}: no frames sent by the client (no "incoming" line)`);

  const ws = await openTranscriber(options.get('url') ?? DEFAULT_URL);
  for (const { delayMs, frame } of frames) {
    if (speed === 'real' && delayMs > 0) await sleep(delayMs);
    ws.send(frame);
  }
  console.error(`replayed ${frames.length} frames at ${speed} speed; waiting for finals until ${tail} s pass without a message`);
  await finish(ws, tagsOf(frames.map((f) => f.frame)), tail * 1000);
});
