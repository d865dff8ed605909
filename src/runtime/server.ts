import type { Hono } from 'hono';
import type { UpgradeWebSocket } from 'hono/ws';
import { createApp } from '../app.ts';
import { OpusCodec } from '../codec/opus.ts';
import { ConfigError, loadConfig, type Config } from '../config.ts';
import { createLogger, type Logger } from '../log.ts';
import { createMetrics, type Metrics } from '../metrics.ts';
import type { SocketConnector } from '../net.ts';
import type { RecorderFactory } from '../session/ports.ts';
import type { Runtime } from '../protocol/outbound.ts';
import type { LocalRecognizer } from '../local/engine.ts';
import { SERVER_PROVIDERS } from '../providers/registry.ts';
import { localSessions } from '../session/local.ts';
import { webSocketDispatcherSinks } from '../sinks/dispatcher/websocket.ts';
import { trackSinks } from '../sinks/tracked.ts';
import type { Base64Codec } from '../util/base64.ts';
import { memoizeUntilFailure } from '../util/memo.ts';
import { systemTimers, type Timers } from '../util/timers.ts';
import { audioFrames, type TimedFrame } from '../monitor/frames.ts';
import { startMonitor } from '../monitor/schedule.ts';

/** What every runtime's server entry (Node, Deno) gives back once it listens. */
export interface RunningServer {
  readonly port: number;
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  /**
   * Drains (new sessions refused, every session's pending finals delivered to its client and
   * the dispatcher within DRAIN_TIMEOUT_MS, then its client closed with 1001), closes the
   * server, and resolves once the dispatcher's queues have settled.
   */
  close(): Promise<void>;
}

export interface ServerOptions {
  env: Readonly<Record<string, string | undefined>>;
  log?: Logger;
  /** The clock of every deadline, backoff and idle commit; tests run a manual one. */
  timers?: Timers;
}

/** The client sockets a server accepted through its runtime's WebSocket upgrade. */
export interface InboundWebSockets {
  readonly upgradeWebSocket: UpgradeWebSocket<unknown>;
  /** Closes every client socket with 1001, resolving once they are closed or given up on. */
  closeAll(): Promise<void>;
}

/** A server listening on its port. */
export interface Listening {
  readonly port: number;
  /** Stops accepting and closes the server (its client sockets are closed before). */
  close(): Promise<void>;
}

/**
 * What a server runtime (Node, Deno) brings, in one object: everything else about starting
 * a server is the same on both and lives in `startServer`.
 */
export interface ServerAdapter<W extends InboundWebSockets = InboundWebSockets> {
  readonly runtime: Exclude<Runtime, 'workerd'>;
  /** Outbound WebSockets to providers and the dispatcher. */
  readonly connector: SocketConnector;
  readonly base64: Base64Codec;
  /** The process's Opus codec (sharedCodec over the runtime's WASM loader). */
  readonly codec: () => Promise<OpusCodec>;
  /** Upgrades for one server; frames above `maxPayload` bytes close the socket (1009). */
  webSockets(options: { maxPayload: number }): W;
  /** Reads a settings file (AUTH_JWT_PUBLIC_KEY_FILE); the core reads no files. */
  readTextFile(path: string): string;
  /** Reads a binary file (MONITOR_FILE). */
  readFile(path: string): Uint8Array;
  /** Session dumps into `dir` (DUMP_DIR); absent where the runtime does not write files (Deno). */
  dumps?(dir: string, log: Logger): RecorderFactory;
  /**
   * The `local` provider's recogniser, off the event loop (worker threads, Web Workers); a
   * missing model or module rejects with a StartupError.
   */
  localRecognizer(options: LocalRecognizerOptions): Promise<LocalRecognizer>;
  /** The event loop's busy fraction since the previous call (MAX_EVENT_LOOP_UTILIZATION); absent where the runtime does not measure it. */
  loopUtilization?(): number;
  /** Serves `app` (whose upgrades are `sockets`'); a listen failure rejects with `listenFailure`'s one line. */
  listen(app: Hono, sockets: W, at: { host: string; port: number }, log: Logger): Promise<Listening>;
}

export interface LocalRecognizerOptions {
  /** LOCAL_MAX_STREAMS (0: no limit). */
  maxStreams: number;
  /** LOCAL_MODEL_DIR; the npm package's model when undefined. */
  modelDir: string | undefined;
  /** How long a freed recogniser stays loaded for the next stream. */
  keepWarmMs: number;
  timers: Timers;
}

/** A freed recogniser (its worker, ~100 MB) waits this long for the next stream: loading the model takes seconds. */
const LOCAL_KEEP_WARM_MS = 60_000;

/**
 * A start-up failure the operator fixes with a setting (busy port, bad host, missing WASM):
 * the entry prints its message alone and exits 1, with no stack trace.
 */
export class StartupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StartupError';
  }
}

/**
 * A listen failure as one line naming the setting to change. Node and Deno both put the
 * errno name in `code`; Deno reports an unresolvable host only in the message.
 */
export function listenFailure(error: unknown, host: string, port: number): Error {
  const at = `cannot listen on ${host}:${port}`;
  const { code, message } = error instanceof Error ? (error as Error & { code?: string }) : { code: undefined, message: String(error) };
  switch (code) {
    case 'EADDRINUSE':
      return new StartupError(`${at}: the port is in use (set PORT to a free port, or PORT=0 for any)`, { cause: error });
    case 'EADDRNOTAVAIL':
      return new StartupError(`${at}: no such address on this machine (set HOST, e.g. HOST=0.0.0.0 or HOST=127.0.0.1)`, { cause: error });
    case 'EACCES':
      return new StartupError(`${at}: permission denied (ports below 1024 need privileges; set PORT)`, { cause: error });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new StartupError(`${at}: the host name does not resolve (set HOST to an address of this machine)`, { cause: error });
  }
  if (/failed to lookup address/i.test(message)) {
    return new StartupError(`${at}: the host name does not resolve (set HOST to an address of this machine)`, { cause: error });
  }
  return error instanceof Error ? error : new Error(message);
}

/**
 * The codec loaded before the server listens, so a missing or corrupt wasm/opus.wasm is a
 * start-up error rather than a 500 on the first session.
 */
async function preloadCodec(codec: () => Promise<OpusCodec>): Promise<void> {
  try {
    await codec();
  } catch (error) {
    throw new StartupError(`cannot load the Opus decoder: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

/** What an entrypoint's process offers `main`. */
export interface Process {
  onSignal(signal: 'SIGINT' | 'SIGTERM', handler: () => void): void;
  exit(code: number): void;
  printError(text: string): void;
}

/**
 * Runs a server entry (`npm start`, `deno task dev`): a configuration or start-up failure is
 * printed without a stack and exits 1; SIGINT/SIGTERM close the server, then exit 0.
 */
export async function main(start: () => Promise<RunningServer>, proc: Process): Promise<void> {
  // Handlers go in before the server listens: a signal in between (a supervisor that
  // starts and stops at once) still shuts down cleanly instead of killing the process.
  let server: RunningServer | undefined;
  let stopRequested = false;
  // A second signal during the drain is ignored (below): the drain is bounded by DRAIN_TIMEOUT_MS.
  const shutdown = (running: RunningServer, signal: string) => {
    running.log.info('shutting down', { signal, drainTimeoutMs: running.config.drainTimeoutMs });
    void running.close().then(
      () => proc.exit(0),
      (error: unknown) => {
        running.log.error('shutdown failed', { error: error instanceof Error ? error : String(error) });
        proc.exit(1);
      },
    );
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    proc.onSignal(signal, () => {
      if (stopRequested) return;
      stopRequested = true;
      if (server) shutdown(server, signal);
    });
  }
  try {
    server = await start();
  } catch (error) {
    if (!(error instanceof ConfigError || error instanceof StartupError)) throw error;
    proc.printError(error.message);
    return proc.exit(1);
  }
  if (stopRequested) shutdown(server, 'signal during start-up');
}

/**
 * Starts the server of a runtime: configuration, the codec, the app with sessions
 * transcribed here and the dispatcher over DISPATCHER_WS_URL, then listens. PORT=0 picks a
 * free port; the `listening` log line carries the real one, for launchers to read.
 */
export async function startServer<W extends InboundWebSockets>(adapter: ServerAdapter<W>, options: ServerOptions): Promise<RunningServer> {
  const config = loadServerConfig(withFileSettings(options.env, adapter.readTextFile));
  await preloadCodec(adapter.codec);
  // Read before listening: a missing file is a start-up error, not a failing probe.
  const monitorFrames = config.monitor.intervalMs > 0 ? readMonitorFrames(config.monitor.file, adapter.readFile) : undefined;
  const log = options.log ?? createLogger(config.logLevel);
  const metrics = createMetrics();
  const timers = options.timers ?? systemTimers;
  const { connector } = adapter;
  // The transport limit sits above the app's, so an oversized frame is refused by the
  // session (counted, the session goes on) rather than closing the socket with 1009.
  const sockets = adapter.webSockets({ maxPayload: Math.max(config.maxMessageBytes * 16, 16 << 20) });
  const sinks = trackSinks(webSocketDispatcherSinks({ config: config.dispatcher, connector, log, metrics, timers }), timers);
  const localRecognizer = config.providers.some((p) => p.name === 'local')
    ? await adapter.localRecognizer({ maxStreams: config.local.maxStreams, modelDir: config.local.modelDir, keepWarmMs: LOCAL_KEEP_WARM_MS, timers })
    : undefined;
  // The default provider: have a recogniser loaded before the first session asks.
  if (config.providers[0]?.name === 'local') localRecognizer?.prewarm();
  const sessions = localSessions({
    config,
    codec: adapter.codec,
    connector,
    base64: adapter.base64,
    localRecognizer,
    log,
    metrics,
    timers,
    loopUtilization: adapter.loopUtilization,
  });
  let recorders: RecorderFactory | undefined;
  if (config.dumpDir !== undefined) {
    if (adapter.dumps) recorders = adapter.dumps(config.dumpDir, log);
    else log.warn(`DUMP_DIR is set but sessions are dumped on Node only; no dumps on ${adapter.runtime}`);
  }
  const app = createApp({
    config,
    runtime: adapter.runtime,
    upgradeWebSocket: sockets.upgradeWebSocket,
    log,
    metrics,
    sessions,
    sinks: sinks.factory,
    dispatcherAvailable: config.dispatcher.wsUrl !== undefined,
    recorders,
  });
  const listening = await adapter.listen(app, sockets, config, log);
  logListening(log, config, listening.port);
  const stopMonitor = monitorFrames ? scheduleMonitor(config, monitorFrames, listening.port, connector, timers, log, metrics) : undefined;

  return {
    port: listening.port,
    config,
    log,
    metrics,
    async close() {
      // New sessions are refused from here on (503, /health "draining"). Every session's
      // pending audio is committed and its finals delivered to its client, still attached, and
      // to the dispatcher; then the client is closed with 1001 (docs/PROTOCOL.md §6).
      await stopMonitor?.();
      const started = timers.now();
      await sessions.drain(config.drainTimeoutMs);
      log.info('sessions drained', { ms: timers.now() - started });
      // Any socket left: one accepted while the drain began.
      await sockets.closeAll();
      await listening.close();
      await localRecognizer?.close();
      // Finals still on their way to the dispatcher get their drain before the process exits.
      await sinks.settled(config.finishTimeoutMs + config.dispatcher.drainTimeoutMs + 2_000);
    },
  };
}

/**
 * A server entry's configuration (Node, Deno: the dispatcher is a WebSocket there), or a
 * ConfigError listing every problem at once.
 */
function loadServerConfig(env: ServerOptions['env']): Config {
  const result = loadConfig(env, SERVER_PROVIDERS);
  if (!result.ok) throw new ConfigError(result.errors);
  if (result.config.useDispatcher && result.config.dispatcher.wsUrl === undefined) {
    throw new ConfigError(['DISPATCHER_WS_URL: required when USE_DISPATCHER is true (the dispatcher WebSocket endpoint)']);
  }
  return result.config;
}

/**
 * The environment with AUTH_JWT_PUBLIC_KEY_FILE read into AUTH_JWT_PUBLIC_KEY, so the core's
 * config sees the key's text (and the Worker, which has no files, can be given it directly).
 */
function withFileSettings(env: ServerOptions['env'], read: (path: string) => string): ServerOptions['env'] {
  const path = env.AUTH_JWT_PUBLIC_KEY_FILE?.trim();
  if (!path) return env;
  if (env.AUTH_JWT_PUBLIC_KEY?.trim()) {
    throw new ConfigError(['AUTH_JWT_PUBLIC_KEY_FILE: set it or AUTH_JWT_PUBLIC_KEY, not both']);
  }
  let pem: string;
  try {
    pem = read(path);
  } catch (error) {
    throw new ConfigError([`AUTH_JWT_PUBLIC_KEY_FILE: cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`]);
  }
  const { AUTH_JWT_PUBLIC_KEY_FILE: _file, ...rest } = env;
  return { ...rest, AUTH_JWT_PUBLIC_KEY: pem };
}

function readMonitorFrames(path: string, read: (path: string) => Uint8Array): TimedFrame[] {
  let bytes: Uint8Array;
  try {
    bytes = read(path);
  } catch (error) {
    throw new ConfigError([`MONITOR_FILE: cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`]);
  }
  const frames = audioFrames(bytes, path, 'monitor-0');
  if (!frames.ok) throw new ConfigError([`MONITOR_FILE: ${frames.reason}`]);
  return frames.frames;
}

/** The in-process monitor, probing this server through its own port (loopback when it listens on every address). */
function scheduleMonitor(config: Config, frames: TimedFrame[], port: number, connector: SocketConnector, timers: Timers, log: Logger, metrics: Metrics) {
  const host = config.host === '0.0.0.0' || config.host === '::' || config.host === '' ? '127.0.0.1' : config.host;
  const m = config.monitor;
  log.info('synthetic monitor on', { everyMs: m.intervalMs, file: m.file, timeoutMs: m.timeoutMs });
  return startMonitor({
    url: `ws://${host.includes(':') ? `[${host}]` : host}:${port}/transcribe?sessionId=synthetic-monitor&sendBack=true`,
    frames,
    intervalMs: m.intervalMs,
    timeoutMs: m.timeoutMs,
    expect: m.expect,
    headers: m.token === undefined ? undefined : { Authorization: `Bearer ${m.token}` },
    connector,
    timers,
    log: log.child({ monitor: true }),
    metrics,
  });
}

/** What a server entry logs once it listens (scripts and tests wait for `listening`). */
function logListening(log: Logger, config: Config, port: number): void {
  log.info('listening', { host: config.host, port, providers: config.providers.map((p) => p.name), auth: config.auth.mode });
  if (config.providers.length === 0) {
    log.warn(`no provider configured: /transcribe answers 503 until ${config.missingProviderHint} is set`);
  }
}

/**
 * The codec of a process or isolate: one WASM instance hosts every session's decoders. Loaded
 * on first use; a failed load is tried again by the next caller.
 */
export function sharedCodec(load: () => Promise<WebAssembly.Module>): () => Promise<OpusCodec> {
  return memoizeUntilFailure(() => load().then((module) => OpusCodec.instantiate(module)));
}
