/**
 * One synthetic check of a running proxy: open a session, stream a known file at its pace,
 * and pass when a final arrives within the bound (containing the expected words, if any).
 * Used by `npm run monitor` and by the in-process schedule (MONITOR_INTERVAL_S).
 */
import { ConnectError, type OutboundSocket, type SocketConnector } from '../net.ts';
import type { Timers } from '../util/timers.ts';
import type { TimedFrame } from './frames.ts';

export interface ProbeOptions {
  /** ws(s)://…/transcribe?…; `sendBack=true` is added when absent. */
  url: string;
  frames: readonly TimedFrame[];
  /** From the first frame sent to the final: beyond, the probe fails. */
  timeoutMs: number;
  /** Words the finals must contain (case and punctuation ignored); none: any non-empty final passes. */
  expect?: readonly string[];
  /** e.g. `Authorization: Bearer …` when the proxy has AUTH_MODE on. Never printed. */
  headers?: Record<string, string>;
  connector: SocketConnector;
  timers: Timers;
}

export type ProbeResult =
  | { ok: true; ms: number; text: string }
  | { ok: false; stage: 'connect' | 'refused' | 'timeout' | 'closed'; reason: string; ms: number };

const words = (text: string) => text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];

/** The URL with `sendBack=true` (the probe reads its finals from the socket). */
export function probeUrl(url: string): string {
  const u = new URL(url);
  if (!u.searchParams.has('sendBack')) u.searchParams.set('sendBack', 'true');
  return u.toString();
}

export async function probe(o: ProbeOptions): Promise<ProbeResult> {
  const { timers } = o;
  const started = timers.now();
  const elapsed = () => timers.now() - started;
  const expected = (o.expect ?? []).flatMap(words);
  const heard = new Set<string>();
  const finals: string[] = [];
  let lastError: string | undefined;
  let settle!: (r: ProbeResult) => void;
  const result = new Promise<ProbeResult>((resolve) => (settle = resolve));
  let done = false;
  const finish = (r: ProbeResult) => {
    if (done) return;
    done = true;
    settle(r);
  };

  const onMessage = (data: string | Uint8Array) => {
    if (typeof data !== 'string') return;
    let msg: { event?: unknown; is_interim?: unknown; transcript?: { text?: unknown }[]; code?: unknown; message?: unknown };
    try {
      msg = JSON.parse(data) as typeof msg;
    } catch {
      return;
    }
    if (msg.event === 'error') lastError = `${String(msg.code)}: ${String(msg.message).slice(0, 200)}`;
    if (msg.event !== 'transcription-result' || msg.is_interim === true) return;
    const text = (msg.transcript ?? []).map((t) => (typeof t.text === 'string' ? t.text : '')).join(' ').trim();
    if (!text) return;
    finals.push(text);
    for (const w of words(text)) heard.add(w);
    if (expected.every((w) => heard.has(w))) finish({ ok: true, ms: elapsed(), text: finals.join(' ') });
  };

  let socket: OutboundSocket;
  try {
    socket = await o.connector.connect(
      probeUrl(o.url),
      { headers: o.headers, timeoutMs: Math.min(o.timeoutMs, 10_000) },
      {
        message: onMessage,
        close: (code, reason) =>
          finish({ ok: false, stage: 'closed', ms: elapsed(), reason: `the proxy closed the session (${code}${reason ? ` ${reason}` : ''}) before a final${lastError ? `; last error ${lastError}` : ''}` }),
      },
    );
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof ConnectError && error.status !== undefined) {
      const body = error.refusal?.body.split('\n')[0]?.slice(0, 200);
      return { ok: false, stage: 'refused', ms: elapsed(), reason: `refused with HTTP ${error.status}${body ? `: ${body}` : ''}` };
    }
    return { ok: false, stage: 'connect', ms: elapsed(), reason: `cannot connect: ${message}` };
  }

  const deadline = timers.setTimeout(() => {
    const got = finals.length ? `finals without ${expected.filter((w) => !heard.has(w)).join(', ')}: "${finals.join(' ').slice(0, 200)}"` : 'no final';
    finish({ ok: false, stage: 'timeout', ms: elapsed(), reason: `${got} within ${o.timeoutMs} ms${lastError ? `; last error ${lastError}` : ''}` });
  }, o.timeoutMs);

  // Streamed at the file's pace, as a media server would; stops once the outcome is known.
  void (async () => {
    for (const { delayMs, frame } of o.frames) {
      if (done) return;
      if (delayMs > 0) await new Promise<void>((resolve) => timers.setTimeout(resolve, delayMs));
      if (!done) socket.send(frame);
    }
  })();

  const outcome = await result;
  timers.clearTimeout(deadline);
  socket.close(1000, 'monitor done');
  return outcome;
}
