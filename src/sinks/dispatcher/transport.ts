import type { Outgoing } from './queue.ts';

/** One way of getting finals to the dispatcher: a WebSocket, a Queue, an RPC binding… */
export interface DispatchTransport {
  /** Names the transport in metrics and logs. */
  readonly name: string;
  /** Resolves once `item` is handed over; rejects when this transport cannot take it now. */
  send(item: Outgoing): Promise<void>;
  /** Session end: release connections, waiting for them at most until `deadline` (Timers clock). */
  close(deadline: number): Promise<void>;
}

/**
 * Hands finals back to the sink's queue when their delivery became doubtful, e.g. written
 * to a connection that died right after: they are sent again (the dispatcher deduplicates
 * by messageId), so a final is seen twice rather than never.
 */
export type HandBack = (items: Outgoing[]) => void;
