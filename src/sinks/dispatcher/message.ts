import type { TranscriptionResult } from '../../protocol/outbound.ts';
import type { UsageReport } from '../../session/usage.ts';

/** What the dispatcher receives: a final, or at session end the session's usage (docs/PROTOCOL.md §7.1). */
export type DispatcherMessage = DispatcherFinal | DispatcherUsage;

/** What the dispatcher receives for each final transcript (docs/PROTOCOL.md §7.1). */
export interface DispatcherFinal {
  sessionId: string;
  endpointId: string;
  text: string;
  timestamp: number;
  language?: string;
  /** The result's message_id: the dispatcher's idempotency key, as a message may arrive twice. */
  messageId: string;
}

/** The session's usage, sent once at its end (docs/PROTOCOL.md §7.1); `type` tells it from a final. */
export interface DispatcherUsage extends Omit<UsageReport, 'sessionId'> {
  type: 'usage';
  sessionId: string;
  /** Epoch ms at which the session ended. */
  timestamp: number;
  messageId: string;
}

export function toUsageMessage(report: UsageReport, sessionId: string, timestamp: number): DispatcherUsage {
  return { type: 'usage', sessionId, timestamp, messageId: `usage-${crypto.randomUUID()}`, participants: report.participants, totals: report.totals };
}

/** The dispatcher message for a final; interims are never dispatched. */
export function toDispatcherMessage(result: TranscriptionResult, sessionId: string): DispatcherFinal | undefined {
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
