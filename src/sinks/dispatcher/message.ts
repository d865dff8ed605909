import type { TranscriptionResult } from '../../protocol/outbound.ts';

/** What the dispatcher receives for each final transcript (docs/PROTOCOL.md §7.1). */
export interface DispatcherMessage {
  sessionId: string;
  endpointId: string;
  text: string;
  timestamp: number;
  language?: string;
  /** The result's message_id: the dispatcher's idempotency key, as a message may arrive twice. */
  messageId: string;
}

/** The dispatcher message for a final; interims are never dispatched. */
export function toDispatcherMessage(result: TranscriptionResult, sessionId: string): DispatcherMessage | undefined {
  if (result.is_interim) return undefined;
  return {
    sessionId,
    endpointId: result.participant.id,
    text: result.transcript.map((t) => t.text).join(' '),
    timestamp: result.timestamp,
    ...(result.language === undefined ? {} : { language: result.language }),
    messageId: result.message_id,
  };
}
