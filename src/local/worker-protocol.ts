/**
 * The messages between a recogniser worker and the thread that owns it, and the worker's
 * side of them. The same on Node (worker_threads) and Deno (Web Workers): each runtime only
 * adapts its port and loads the module and the model.
 */
import { LOCAL_SAMPLE_RATE } from './engine.ts';
import type { PocketSphinx } from './pocketsphinx.ts';

export type ToWorker =
  /** s16le at 16 kHz, the buffer transferred. */
  | { type: 'audio'; pcm: ArrayBuffer }
  | { type: 'flush' }
  /** The stream ended: forget the utterance, ready for the next stream. */
  | { type: 'reset' };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'hypothesis'; text: string; final: boolean; endMs: number }
  /** Audio recognised so far (ms since the last reset), after each audio message. */
  | { type: 'progress'; doneMs: number }
  | { type: 'flushed' };

export interface WorkerPort {
  post(message: FromWorker): void;
  listen(handler: (message: ToWorker) => void): void;
}

/** How much audio (ms) passes between interim hypotheses: asking for one costs a search. */
const INTERIM_EVERY_MS = 300;

/**
 * Runs in the worker: creates the decoder (`ready` or `failed`), then recognises each
 * message's audio in order, reporting interims, finals and progress.
 */
export async function serveRecognizer(port: WorkerPort, create: () => Promise<PocketSphinx>): Promise<void> {
  let decoder: PocketSphinx;
  try {
    decoder = await create();
  } catch (error) {
    port.post({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
    return;
  }
  let doneMs = 0;
  let sinceInterimMs = 0;
  let lastInterim = '';
  const final = (text: string) => {
    lastInterim = '';
    sinceInterimMs = 0;
    if (text.trim()) port.post({ type: 'hypothesis', text, final: true, endMs: Math.round(doneMs) });
  };
  port.listen((message) => {
    try {
      switch (message.type) {
        case 'audio': {
          const pcm = new Uint8Array(message.pcm);
          const ended = decoder.process(pcm);
          const ms = (pcm.length / 2 / LOCAL_SAMPLE_RATE) * 1000;
          doneMs += ms;
          if (ended !== undefined) final(ended);
          else if ((sinceInterimMs += ms) >= INTERIM_EVERY_MS) {
            sinceInterimMs = 0;
            const text = decoder.hypothesis();
            if (text.trim() && text !== lastInterim) {
              lastInterim = text;
              port.post({ type: 'hypothesis', text, final: false, endMs: Math.round(doneMs) });
            }
          }
          port.post({ type: 'progress', doneMs });
          break;
        }
        case 'flush':
          final(decoder.end());
          port.post({ type: 'flushed' });
          break;
        case 'reset':
          decoder.end();
          doneMs = 0;
          lastInterim = '';
          sinceInterimMs = 0;
          break;
      }
    } catch (error) {
      port.post({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
    }
  });
  port.post({ type: 'ready' });
}
