export type Runtime = 'node' | 'deno' | 'workerd';

export interface InfoMessage {
  event: 'info';
  application: string;
  version: string;
  runtime: Runtime;
  provider: string;
  providersAvailable: string[];
  sessionId: string | null;
}

export interface TranscriptionResult {
  event: 'transcription-result';
  type: 'transcription-result';
  transcript: [{ text: string; confidence?: number }];
  is_interim: boolean;
  message_id: string;
  participant: { id: string; tag: string };
  timestamp: number;
  language?: string;
  speaker?: string | number;
}

/** Echoes `id` whatever its JSON type, and leaves it out when the ping had none. */
export function pong(id: unknown): string {
  return id === undefined ? '{"event":"pong"}' : JSON.stringify({ event: 'pong', id });
}
