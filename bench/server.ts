/**
 * What the benchmarks share (bench/load.ts, bench/soak.ts, bench/fuzz.ts): the built server
 * started as `npm start` starts it, in its own process; /proc readings of it; the capture's
 * packets; and the real-time load generator.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import type { TimingSink } from './sinks.ts';
import { benchFixtures, packetsByTag, readCapture } from '../test/helpers/fixtures.ts';

/** Linux USER_HZ, the unit of /proc/<pid>/stat times. */
export const TICKS_PER_SECOND = 100;
/** Participant B starts this long after A, so their provider connections open in that order. */
export const B_OFFSET_MS = 250;

// ---------------------------------------------------------------- the capture

export interface CaptureStreams {
  /** Per participant of the capture: its tag and its Opus packets, in order. */
  tags: [string, Uint8Array[]][];
  /** The same packets, base64. */
  base64Packets: string[][];
  /** The Ogg Opus sample's path (benchFixtures().speech). */
  speech: string;
}

let captureStreams: CaptureStreams | undefined;

/** The benchmark capture's participants (benchFixtures(): the shared one when present), read once. */
export function capture(): CaptureStreams {
  if (!captureStreams) {
    const files = benchFixtures();
    const tags = [...packetsByTag(readCapture(files.capture)).entries()];
    captureStreams = { tags, base64Packets: tags.map(([, packets]) => packets.map((p) => Buffer.from(p).toString('base64'))), speech: files.speech };
  }
  return captureStreams;
}

// ---------------------------------------------------------------- the server process

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  pid: number;
  /** Resolves when the process has exited, however. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface StartOptions {
  /** Another program under `npm start`'s V8 flags, in place of the server's entry. */
  entry?: string[];
  /** Node flags before `npm start`'s own (e.g. --enable-source-maps). */
  nodeArgs?: string[];
  /** More environment for the server, after the sink's. */
  env?: Record<string, string>;
  /** Each line of the server's stdout (by default they are only read for `listening`). */
  onStdout?(line: string): void;
  /** Each line of its stderr; without it, stderr is this process's. */
  onStderr?(line: string): void;
}

/** Starts `npm start`'s server (or `entry`) on a free port of 127.0.0.1, pointed at `sink`. */
export async function startServer(sink: TimingSink, options: StartOptions = {}): Promise<ServerProcess> {
  const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', '--cpu-prof-dir=/tmp/bench-prof'] : [];
  const args = startArgs();
  if (options.entry) args.splice(-1, 1, ...options.entry);
  const child = spawn(process.execPath, [...profile, ...(options.nodeArgs ?? []), ...args], {
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      // The load is the point: no session, participant or provider-stream cap of the defaults.
      MAX_SESSIONS: '0',
      MAX_PARTICIPANTS: '0',
      MAX_PROVIDER_CONNECTIONS: '0',
      MAX_EVENT_LOOP_LAG_MS: '0',
      MAX_EVENT_LOOP_UTILIZATION: '0',
      ...sink.env,
      ...options.env,
    },
    stdio: ['ignore', 'pipe', options.onStderr ? 'pipe' : 'inherit'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  if (options.onStderr) createInterface({ input: child.stderr! }).on('line', options.onStderr);
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<number>((resolve, reject) => {
    void exited.then(({ code, signal }) => reject(new Error(`server exited with ${code ?? signal} before listening`)));
    lines.on('line', (line) => {
      options.onStdout?.(line);
      if (!line.includes('"listening"')) return;
      try {
        const record = JSON.parse(line) as { msg?: string; port?: number };
        if (record.msg === 'listening') resolve(record.port!);
      } catch {
        // not a log line
      }
    });
  });
  return { child, port, pid: child.pid!, exited };
}

/** SIGTERM (the server closes its sockets and exits 0), then waits for the exit. */
export async function stopServer(server: ServerProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM');
  return server.exited;
}

/** `npm start`'s node arguments (V8 flags and the entry), so the bench runs what production runs. */
export function startArgs(): string[] {
  const start = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } }).scripts.start;
  const [command, ...args] = start.split(/\s+/);
  if (command !== 'node') throw new Error(`unexpected start script: ${start}`);
  return args;
}

/** CPU time (user + system) of a process so far, in ticks of 1/TICKS_PER_SECOND s. */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

/** Resident set size of a process, in KB. */
export function rssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
}

// ---------------------------------------------------------------- the load generator

export interface Stream {
  session: number;
  participant: number;
  /** Send time (monotonic ns) of each frame, in order (empty unless recorded). */
  sent: bigint[];
  /** Frames sent (a frame due while the socket was not open is not). */
  count: number;
}

export const mediaFrame = (tag: string, chunk: number, payload: string) =>
  `{"event":"media","media":{"tag":"${tag}","chunk":"${chunk}","timestamp":"${chunk * 960}","payload":"${payload}"}}`;

/** A bench session: `lang=en-s<session>` lets the sink tell sessions apart. */
export async function openSession(port: number, session: number): Promise<WebSocket> {
  // A saturated server answers 503 (MAX_EVENT_LOOP_LAG_MS): try again shortly, as a media server would.
  for (let attempt = 0; ; attempt++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/transcribe?sessionId=bench-${session}&sendBack=true&lang=en-s${session}`, {
      perMessageDeflate: false,
    });
    const refused = await new Promise<boolean>((resolve, reject) => {
      ws.once('open', () => resolve(false));
      ws.once('unexpected-response', (_req, res) => {
        ws.terminate();
        if (res.statusCode === 503 && attempt < 50) resolve(true);
        else reject(new Error(`session refused: HTTP ${res.statusCode}`));
      });
      ws.once('error', (err) => {
        if (ws.readyState !== WebSocket.CLOSED) reject(err);
      });
    });
    if (!refused) return ws;
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface DriveOptions {
  /** Keep each frame's send time in `Stream.sent` (default true; a long run counts only). */
  record?: boolean;
  /** Filled with the streams as they start, for a caller that reads their counts during the run. */
  streams?: Stream[];
}

/**
 * Sends both capture participants' packets (looped) on every socket, one every 20 ms, for
 * `seconds`; returns the streams.
 */
export async function drive(sockets: WebSocket[], seconds: number, options: DriveOptions = {}): Promise<Stream[]> {
  const record = options.record ?? true;
  const { tags, base64Packets } = capture();
  const streams: Stream[] = options.streams ?? [];
  const t0 = performance.now();
  const timers = new Map<Stream, NodeJS.Timeout>();
  const frames = Math.round(seconds * 50);
  for (const [session, ws] of sockets.entries()) {
    // Spread the sessions over one 20 ms period, as independent speakers would be.
    const phase = (session * 20) / sockets.length;
    for (const [participant, [tag]] of tags.entries()) {
      const stream: Stream = { session, participant, sent: [], count: 0 };
      streams.push(stream);
      const payloads = base64Packets[participant]!;
      const start = phase + participant * B_OFFSET_MS;
      let n = 0;
      const tick = () => {
        // Catch up on every frame due (timers fire late under load), as a real sender would.
        const due = Math.min(frames, Math.floor((performance.now() - t0 - start) / 20) + 1);
        while (n < due) {
          const sentAt = process.hrtime.bigint();
          if (ws.readyState === WebSocket.OPEN) {
            ws.send(mediaFrame(tag, 1000 + n, payloads[n % payloads.length]!));
            stream.count++;
          }
          if (record) stream.sent.push(sentAt);
          n++;
        }
        if (n < frames) timers.set(stream, setTimeout(tick, Math.max(0, start + n * 20 - (performance.now() - t0))));
      };
      timers.set(stream, setTimeout(tick, start));
    }
  }
  await new Promise((r) => setTimeout(r, seconds * 1000 + B_OFFSET_MS + 100));
  for (const t of timers.values()) clearTimeout(t);
  return streams;
}
