/** The request and answer of test/runtimes/workerd/connector-worker.ts (shared by both sides). */

export interface Probe {
  url: string;
  headers?: Record<string, string>;
  protocols?: string[];
  timeoutMs?: number;
  /** Text, or bytes given as numbers. */
  send?: (string | number[])[];
  messages: number;
  awaitClose?: boolean;
}

export type Received = { text: string } | { bytes: number[] };

export type ProbeResult =
  | { ok: true; messages: Received[]; closed?: { code: number; reason: string } }
  | { ok: false; error: string; message: string; status?: number; refusal?: { headers: Record<string, string>; body: string } };
