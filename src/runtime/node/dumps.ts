import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../log.ts';
import type { RecorderFactory } from '../../session/ports.ts';
import { StartupError } from '../server.ts';

/**
 * Session dumps (DUMP_DIR): one file per client socket, `<sessionId>-<ISO time>.jsonl`, one
 * line per frame, `{"timestamp":<epoch ms>,"direction":"incoming"|"outgoing","data":"<frame>"}`:
 * the format of test/fixtures/two-speakers.jsonl, so `npm run stream`, `npm run replay` and
 * `npm run mix` read a dump as they read the fixture. Lines are written through a stream (the
 * session never waits on the disk); a write failure is logged once per file and ends that dump.
 */
export function fileRecorders(dir: string, log: Logger): RecorderFactory {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new StartupError(`DUMP_DIR: cannot create ${dir} (${(error as Error).message})`, { cause: error });
  }
  log.info('dumping sessions', { dir });
  let seq = 0;
  return (session) => {
    // Two sockets of one session in the same millisecond still get a file each.
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const file = join(dir, `${session.sessionId ?? 'no-session'}-${stamp}-${++seq}.jsonl`);
    const out = createWriteStream(file, { flags: 'wx' });
    // A write failure ends the dump; so does the socket's close (a session that outlives its
    // socket, waiting for the client to come back, may still try to send on it).
    let failed = false;
    let closed = false;
    out.on('error', (error) => {
      if (failed) return;
      failed = true;
      log.error('session dump failed', { session: session.sessionId ?? null, file, error });
    });
    const line = (direction: 'incoming' | 'outgoing', data: string) => {
      if (!failed && !closed) out.write(`${JSON.stringify({ timestamp: Date.now(), direction, data })}\n`);
    };
    return {
      received: (frame) => line('incoming', frame),
      sent: (frame) => line('outgoing', frame),
      close: () => {
        if (closed) return;
        closed = true;
        out.end();
      },
    };
  };
}
