/**
 * The recognisers of a process: one worker per live stream (each on its own thread, so a
 * stream that saturates its core slows only itself), at most `maxStreams` at once, a freed
 * worker kept warm for the next stream for a while (loading the model takes seconds).
 */
import type { Timers } from '../util/timers.ts';
import { LOCAL_SAMPLE_RATE, RecognizerRefusal, type LocalRecognizer, type RecognizerEvents, type RecognizerStream } from './engine.ts';
import type { FromWorker, ToWorker } from './worker-protocol.ts';

/** A worker as the pool drives it (a worker_threads Worker, a Web Worker). */
export interface RecognizerWorker {
  post(message: ToWorker, transfer?: ArrayBuffer[]): void;
  /** `message` for each message, `error` once if the worker dies (then no more messages). */
  listen(message: (m: FromWorker) => void, error: (reason: string) => void): void;
  terminate(): void;
}

export interface PoolOptions {
  spawn(): RecognizerWorker;
  /** Streams at once (0: no limit). */
  maxStreams: number;
  /** How long a freed worker waits for the next stream before it is ended. */
  keepWarmMs: number;
  timers: Timers;
}

interface Slot {
  worker: RecognizerWorker;
  /** Where its messages go: the stream using it, or the pool while it waits. */
  route(m: FromWorker): void;
  died(reason: string): void;
  dead: boolean;
  idleTimer?: unknown;
}

export function recognizerPool(options: PoolOptions): LocalRecognizer {
  const idle: Slot[] = [];
  let streams = 0;
  let closed = false;
  /** After prewarm(): one idle worker is kept however long no stream comes. */
  let keepOne = false;
  /** The prewarmed worker while it loads: the first stream takes it rather than starting another. */
  let warming: Promise<Slot> | undefined;

  const newSlot = (): Promise<Slot> =>
    new Promise((resolve, reject) => {
      const worker = options.spawn();
      const slot: Slot = {
        worker,
        dead: false,
        route: (m) => {
          if (m.type === 'ready') resolve(slot);
          else if (m.type === 'failed') {
            slot.dead = true;
            worker.terminate();
            reject(new RecognizerRefusal(`the local recogniser could not start: ${m.message}`, false));
          }
        },
        died: (reason) => reject(new RecognizerRefusal(`the local recogniser could not start: ${reason}`, false)),
      };
      worker.listen(
        (m) => slot.route(m),
        (reason) => {
          slot.dead = true;
          const at = idle.indexOf(slot);
          if (at !== -1) idle.splice(at, 1);
          slot.died(reason);
        },
      );
    });

  /** `busy`: the worker still has audio of the stream that ends; it is ended rather than kept (its results would reach the next stream). */
  const release = (slot: Slot, busy = false) => {
    // Nothing it says or suffers from now on concerns the stream that used it.
    slot.route = () => {};
    slot.died = () => {};
    if (slot.dead || closed || busy) return slot.worker.terminate();
    slot.worker.post({ type: 'reset' });
    idle.push(slot);
    slot.idleTimer = options.timers.setTimeout(() => {
      const at = idle.indexOf(slot);
      if (at === -1 || (keepOne && idle.length === 1)) return;
      idle.splice(at, 1);
      slot.worker.terminate();
    }, options.keepWarmMs);
  };

  return {
    prewarm() {
      keepOne = true;
      if (closed || idle.length || warming) return;
      const loading = newSlot();
      warming = loading;
      loading.then(
        (slot) => {
          if (warming !== loading) return; // a stream took it
          warming = undefined;
          release(slot);
        },
        () => {
          if (warming === loading) warming = undefined; // the first stream will meet (and report) the same failure
        },
      );
    },
    get streams() {
      return streams;
    },
    async open(events: RecognizerEvents): Promise<RecognizerStream> {
      if (closed) throw new RecognizerRefusal('the local recogniser is shutting down', true);
      if (options.maxStreams && streams >= options.maxStreams) {
        throw new RecognizerRefusal(`all ${options.maxStreams} local recognisers are busy (LOCAL_MAX_STREAMS); try again later`, true);
      }
      streams++;
      let slot: Slot;
      try {
        const warm = idle.pop();
        if (warm) options.timers.clearTimeout(warm.idleTimer);
        const loading = warm ? undefined : warming;
        warming = undefined;
        slot = warm ?? (await (loading ?? newSlot()));
      } catch (error) {
        streams--;
        throw error;
      }
      return stream(slot, events);
    },
    async close() {
      closed = true;
      for (const slot of idle.splice(0)) {
        options.timers.clearTimeout(slot.idleTimer);
        slot.worker.terminate();
      }
    },
  };

  function stream(slot: Slot, events: RecognizerEvents): RecognizerStream {
    let writtenMs = 0;
    let doneMs = 0;
    let open = true;
    let unanswered = 0;
    const end = () => {
      if (!open) return;
      open = false;
      streams--;
      release(slot, writtenMs - doneMs > 1 || unanswered > 0);
    };
    slot.route = (m) => {
      switch (m.type) {
        case 'progress':
          doneMs = m.doneMs;
          break;
        case 'hypothesis':
          events.hypothesis(m.text, m.final, m.endMs);
          break;
        case 'flushed':
          unanswered--;
          events.flushed();
          break;
        case 'failed':
          slot.dead = true;
          end();
          events.failed(m.message);
          break;
      }
    };
    slot.died = (reason) => {
      end();
      events.failed(reason);
    };
    return {
      write(pcm) {
        if (!open) return;
        // A fresh buffer of its own, transferred: `pcm` may be a view into WASM memory or a
        // Node Buffer (whose slice() is a view too, and whose pool a transfer would detach).
        const copy = new ArrayBuffer(pcm.length);
        new Uint8Array(copy).set(pcm);
        writtenMs += (pcm.length / 2 / LOCAL_SAMPLE_RATE) * 1000;
        slot.worker.post({ type: 'audio', pcm: copy }, [copy]);
      },
      endUtterance() {
        if (!open) return;
        unanswered++;
        slot.worker.post({ type: 'flush' });
      },
      get pendingMs() {
        return Math.max(0, writtenMs - doneMs);
      },
      close: end,
    };
  }
}
