import type { TranscriptionResult } from '../protocol/outbound.ts';
import type { TranscriptSink } from './sink.ts';

export interface ClientSocket {
  send(text: string): void;
  close(code?: number, reason?: string): void;
}

/** Sends results back to the media server: finals iff sendBack, interims iff both flags. */
export function createClientSink(socket: ClientSocket, flags: { sendBack: boolean; sendBackInterim: boolean }): TranscriptSink {
  let open = true;
  return {
    outlivesClient: false,
    deliver(result) {
      if (!open || !flags.sendBack) return;
      if (result.is_interim && !flags.sendBackInterim) return;
      socket.send(JSON.stringify(result satisfies TranscriptionResult));
    },
    async close() {
      open = false;
    },
  };
}
