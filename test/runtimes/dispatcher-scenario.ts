/** What the dispatcher test driver (workerd/dispatcher-worker.ts) takes and reports. */
import type { DispatcherFinal as DispatcherMessage } from '../../src/sinks/dispatcher/message.ts';

export interface ObjectRecords {
  messages: DispatcherMessage[];
  /** Close codes of the sockets the sink closed, or the Object dropped. */
  closes: number[];
  connections: number;
  refusals: number;
}

export type Step =
  | { deliver: { id: string; text: string; interim?: boolean } }
  | { object: 'refuse' | 'accept' | 'drop' }
  | { waitFor: { target: 'object'; messageId: string } }
  | { close: true };

export interface Scenario {
  sessionId: string;
  /** The bindings the sink gets; the others are left out of its env. */
  bindings: ('DISPATCHER_DO' | 'TRANSCRIPTION_QUEUE' | 'TRANSCRIPTION_DISPATCHER')[];
  /** DISPATCHER_* variables. */
  env?: Record<string, string>;
  steps: Step[];
}

export interface ScenarioReport {
  logs: string[];
  metrics: string;
  /** How often the sink handed a promise to ctx.waitUntil. */
  waitUntil: number;
}
