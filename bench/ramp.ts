/**
 * Saturation, the way it comes in production: sessions keep arriving (one every
 * `everyMs`, two talking participants each) at the built server under its default limits
 * (MAX_EVENT_LOOP_UTILIZATION, MAX_EVENT_LOOP_LAG_MS; the session and stream caps off, so
 * that only saturation refuses), well past what one core can carry. Each refused session
 * (503) is counted and not retried. Once a second, GET /health and a new session's
 * handshake are timed: the process must keep answering both within a second while it
 * sheds the load it cannot carry, and the sessions it took must keep real-time pace.
 */
import WebSocket from 'ws';
import { threadSink } from './sink-thread.ts';
import { TICKS_PER_SECOND, cpuTicks, drive, startServer, stopServer } from './server.ts';

export interface RampResult {
  offered: number;
  admitted: number;
  refused: number;
  /** The slowest answers while the load was on (ms): GET /health, and a session (opened or 503). */
  worstHealthMs: number;
  worstSessionMs: number;
  /** What /health last reported. */
  lastHealth: string;
  /** Server CPU per wall second over the last `seconds` of the ramp. */
  cpuPerWallSecond: number;
  /** Frames the provider got against frames the admitted streams sent. */
  received: number;
  sent: number;
}

/** One handshake: `open` (then closed at once, unless kept) or the refusal's status, and how long it took. */
async function handshake(port: number, session: number, keep: boolean): Promise<{ ws?: WebSocket; status: number; ms: number }> {
  const t0 = performance.now();
  const ws = new WebSocket(`ws://127.0.0.1:${port}/transcribe?sessionId=ramp-${session}&sendBack=true&lang=en-s${session}`, { perMessageDeflate: false });
  return new Promise((resolve) => {
    ws.once('open', () => {
      if (!keep) ws.close();
      resolve({ ws: keep ? ws : undefined, status: 101, ms: performance.now() - t0 });
    });
    ws.once('unexpected-response', (_req, res) => {
      ws.terminate();
      resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0 });
    });
    ws.once('error', () => resolve({ status: 0, ms: performance.now() - t0 }));
  });
}

export async function ramp(options: { sessions: number; everyMs: number; env: Record<string, string> }): Promise<RampResult> {
  const sink = await threadSink('openai', { arrivals: false });
  const server = await startServer(sink, { env: { MAX_SESSIONS: '0', MAX_PROVIDER_CONNECTIONS: '0', ...options.env } });
  const totalMs = options.sessions * options.everyMs;
  const driving: Promise<{ count: number }[]>[] = [];
  const sockets: WebSocket[] = [];
  let refused = 0;
  let worstHealthMs = 0;
  let worstSessionMs = 0;
  let lastHealth = '';
  let cpu0 = 0;
  let wall0 = 0;
  try {
    const t0 = performance.now();
    let nextProbe = 1000;
    for (let i = 0; i < options.sessions; i++) {
      const wait = t0 + i * options.everyMs - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const at = performance.now() - t0;
      // The last quarter of the ramp is where CPU is read: the server at its limit.
      if (!cpu0 && at >= totalMs * 0.75) {
        cpu0 = cpuTicks(server.pid);
        wall0 = performance.now();
      }
      if (at >= nextProbe) {
        nextProbe += 1000;
        const h0 = performance.now();
        lastHealth = await fetch(`http://127.0.0.1:${server.port}/health`).then((r) => r.text(), (e: Error) => e.message);
        worstHealthMs = Math.max(worstHealthMs, performance.now() - h0);
        const probe = await handshake(server.port, 100_000 + i, false);
        worstSessionMs = Math.max(worstSessionMs, probe.ms);
      }
      const s = await handshake(server.port, i, true);
      worstSessionMs = Math.max(worstSessionMs, s.ms);
      if (!s.ws) {
        refused++;
        continue;
      }
      sockets.push(s.ws);
      // Each admitted session talks until the ramp ends.
      driving.push(drive([s.ws], Math.max(1, (totalMs - (performance.now() - t0)) / 1000), { record: false }));
    }
    const streams = (await Promise.all(driving)).flat();
    const cpuPerWallSecond = (cpuTicks(server.pid) - cpu0) / TICKS_PER_SECOND / ((performance.now() - wall0) / 1000);
    await new Promise((r) => setTimeout(r, 500));
    const counts = await sink.counts();
    return {
      offered: options.sessions,
      admitted: sockets.length,
      refused,
      worstHealthMs,
      worstSessionMs,
      lastHealth,
      cpuPerWallSecond,
      received: counts.appends,
      sent: streams.reduce((n, s) => n + s.count, 0),
    };
  } finally {
    for (const ws of sockets) ws.close();
    await stopServer(server);
    await sink.close();
  }
}
