import type { TranscriptionResult } from '../protocol/outbound.ts';
import type { ClientSocket, TranscriptSink } from '../session/ports.ts';

export interface ClientFlags {
  sendBack: boolean;
  sendBackInterim: boolean;
}

/** Finals go back iff sendBack, interims iff both flags (docs/PROTOCOL.md §5.3). */
export function sentToClient(flags: ClientFlags, isInterim: boolean): boolean {
  return flags.sendBack && (!isInterim || flags.sendBackInterim);
}

/** Sends results back to the media server, as far as its flags ask for them. */
export function createClientSink(socket: ClientSocket, flags: ClientFlags): TranscriptSink {
  let open = true;
  return {
    outlivesClient: false,
    deliver(result) {
      if (!open || !sentToClient(flags, result.is_interim)) return;
      socket.send(JSON.stringify(result satisfies TranscriptionResult));
    },
    async close() {
      open = false;
    },
  };
}
