/**
 * The seam between the `local` provider (core) and the speech recogniser the runtime runs
 * off its event loop (a worker thread on Node, a Web Worker on Deno). The core sees streams
 * of 16 kHz PCM in and hypotheses out; how and where they are recognised is the runtime's.
 */

/** The recogniser works at this rate only (PocketSphinx's en-us acoustic model). */
export const LOCAL_SAMPLE_RATE = 16000;

export interface RecognizerEvents {
  /**
   * The utterance's current hypothesis (`final` false), or its last one when it ended
   * (`final` true: the engine heard it end, or `endUtterance` asked). `endMs`: how much of the
   * stream's audio the engine had recognised then.
   */
  hypothesis(text: string, final: boolean, endMs: number): void;
  /** `endUtterance`'s answer: every final it caused has been reported. */
  flushed(): void;
  /** The engine failed (its worker died); the stream is unusable. */
  failed(message: string): void;
}

/** One stream's recogniser. */
export interface RecognizerStream {
  /** Signed 16-bit little-endian mono PCM at 16 kHz; copied, so `pcm` may be reused at once. */
  write(pcm: Uint8Array): void;
  /** End the utterance now: its final, then `flushed`. */
  endUtterance(): void;
  /** Audio written (ms) that the engine has not recognised yet: how far it lags. */
  readonly pendingMs: number;
  /** Release the recogniser (a worker is kept for the next stream or ended). */
  close(): void;
}

/** Why a stream was not opened; `busy`: every recogniser is taken (LOCAL_MAX_STREAMS). */
export class RecognizerRefusal extends Error {
  constructor(
    message: string,
    readonly busy: boolean,
  ) {
    super(message);
    this.name = 'RecognizerRefusal';
  }
}

/** What a runtime injects: opens recogniser streams, up to its limit. */
export interface LocalRecognizer {
  /** Rejects with RecognizerRefusal (busy, or the model or engine could not load). */
  open(events: RecognizerEvents): Promise<RecognizerStream>;
  /** Streams open now, and the limit (0: none). */
  readonly streams: number;
  /** Loads one recogniser ahead of the first stream (the model takes seconds to load). */
  prewarm(): void;
  /** Ends every worker (server shutdown). */
  close(): Promise<void>;
}
