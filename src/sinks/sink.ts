import type { TranscriptionResult } from '../protocol/outbound.ts';

/** A destination of a session's transcripts: the client socket, the dispatcher… */
export interface TranscriptSink {
  /** Whether finals must still be produced after the client socket has closed. */
  readonly outlivesClient: boolean;
  /** Must not block: a slow destination buffers on its own, never delaying the others. */
  deliver(result: TranscriptionResult): void;
  /** Session end: flush what is pending (bounded), then release everything. */
  close(): Promise<void>;
}
