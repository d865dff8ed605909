import * as v from 'valibot';
import type { LogLevel } from './log.ts';
import type { ProviderDeps, Provider, ProviderModule } from './providers/provider.ts';
import { toWebSocketScheme } from './net.ts';
import { loadAuthConfig, type AuthConfig } from './auth/config.ts';
import type { SilenceGateSettings } from './session/silence-gate.ts';
import { envBool, envInt, envJson, envNumber, envOptionalString, envString, parseEnvWith, urlString } from './util/env-schema.ts';

const Env = v.object({
  /** 0 picks a free port (tests, launchers). */
  PORT: envInt(8080, 0, 65535),
  HOST: envString('0.0.0.0'),
  LOG_LEVEL: v.optional(v.picklist(['debug', 'info', 'warn', 'error'], 'must be debug, info, warn or error'), 'info'),
  /** Comma-separated provider names; the registry's order when unset. */
  PROVIDERS_PRIORITY: v.optional(v.string()),
  FORCE_COMMIT_TIMEOUT: envNumber(2, 0.1, 600),
  USE_DISPATCHER: envBool(false),
  /** Largest client frame accepted; larger ones are refused and counted, the session goes on. */
  MAX_MESSAGE_BYTES: envInt(256 * 1024, 1024, 64 * 1024 * 1024),
  /** Audio held per participant while its provider connects or backs off. */
  PROVIDER_QUEUE_MS: envInt(10_000, 100, 120_000),
  /** Audio kept since a participant's last final, sent again on the next connection if its connection dies (0: none). */
  PROVIDER_REPLAY_SECONDS: envNumber(30, 0, 300),
  /** At session end, how long in-flight utterances get to produce their finals. */
  FINISH_TIMEOUT_MS: envInt(5_000, 0, 60_000),
  /** Live participant streams per session (0: none); the default protects the provider bill. */
  MAX_PARTICIPANTS: envInt(32, 0, 100_000),
  /** Sessions open in this process (0: none); beyond, upgrades are refused with 503. */
  MAX_SESSIONS: envInt(100, 0, 1_000_000),
  /** Live provider streams in this process, all sessions together (0: none). */
  MAX_PROVIDER_CONNECTIONS: envInt(200, 0, 1_000_000),
  /** Audio all of one session's provider queues may hold together (MB); beyond, the oldest is dropped. */
  MAX_SESSION_BUFFER_MB: envNumber(64, 1, 4096),
  /** Shutdown (SIGTERM/SIGINT): how long the sessions' pending finals get before the sockets are closed. */
  DRAIN_TIMEOUT_MS: envInt(10_000, 0, 600_000),
  /** How long a session whose client went away waits for it to come back with the same sessionId (0: never). */
  RESUME_GRACE_MS: envInt(15_000, 0, 600_000),
  /** The in-process synthetic monitor: seconds between probes of our own /transcribe (0: off). */
  MONITOR_INTERVAL_S: envNumber(0, 0, 86_400),
  MONITOR_FILE: envString('samples/speech.ogg'),
  MONITOR_TIMEOUT_MS: envInt(30_000, 1_000, 600_000),
  /** Words a probe's finals must contain (comma or space separated); none: any final passes. */
  MONITOR_EXPECT: envOptionalString,
  /** Sent as `Authorization: Bearer` when AUTH_MODE is on (AUTH_TOKEN is used in token mode when unset). */
  MONITOR_TOKEN: envOptionalString,
  /** Node: a directory where each session's frames are dumped as JSON lines (unset: no dumps). */
  DUMP_DIR: envOptionalString,
  /** `local` provider: recognisers (one worker thread each) at once in this process (0: no limit). */
  LOCAL_MAX_STREAMS: envInt(2, 0, 1_000),
  /** `local` provider: a directory holding en-us/ (acoustic model), en-us.lm.bin and cmudict-en-us.dict; the npm package's model when unset. */
  LOCAL_MODEL_DIR: envOptionalString,
  /** PCM providers: audio gathered into one upstream message (ms); 0 or 20: one message per frame. */
  PCM_BATCH_MS: envInt(100, 0, 1_000),
  /** Opus passed through to a provider that takes Ogg (Deepgram): packets gathered into one Ogg page per message (ms); 0: one raw packet per message. */
  PASS_THROUGH_BATCH_MS: envInt(100, 0, 1_000),
  /** PCM providers: only voice (and its pre-roll and hang-over) is sent; false: every frame. */
  SILENCE_GATE: envBool(true),
  SILENCE_GATE_THRESHOLD_DB: envNumber(-50, -90, 0),
  SILENCE_GATE_PREROLL_MS: envInt(200, 0, 2_000),
  SILENCE_GATE_HANGOVER_MS: envInt(400, 0, 10_000),
  /** New sessions are refused with 503 while the event loop lags more than this (ms); 0: never. */
  MAX_EVENT_LOOP_LAG_MS: envInt(200, 0, 60_000),
  /** New sessions and streams are refused while the event loop is busier than this (0–1), where the runtime measures it (Node); 0: never. */
  MAX_EVENT_LOOP_UTILIZATION: envNumber(0.9, 0, 1),
});

export interface Config {
  port: number;
  host: string;
  logLevel: LogLevel;
  forceCommitMs: number;
  useDispatcher: boolean;
  /** The dispatcher's variables (DISPATCHER_*), validated at start-up like the rest. */
  dispatcher: DispatcherConfig;
  maxMessageBytes: number;
  providerQueueMs: number;
  providerReplayMs: number;
  finishTimeoutMs: number;
  maxParticipants: number;
  maxSessions: number;
  maxProviderConnections: number;
  maxSessionBufferBytes: number;
  /** Shutdown: how long every session's pending finals get, delivered to the client still attached. */
  drainTimeoutMs: number;
  /** How long a session outlives its client's socket, for a client that reconnects with its sessionId (0: never). */
  resumeGraceMs: number;
  /** Who may open /transcribe (AUTH_*). */
  auth: AuthConfig;
  /** The in-process synthetic monitor (MONITOR_*); off at intervalMs 0. */
  monitor: MonitorConfig;
  /** Node: where session dumps are written; undefined when sessions are not dumped. */
  dumpDir: string | undefined;
  /**
   * Configured providers in priority order, ready to be built with the runtime's deps.
   * `failover`: a participant whose provider fails may move to this one (`local` only when
   * PROVIDERS_PRIORITY names it: nobody paying for a cloud provider expects PocketSphinx's text).
   */
  providers: { name: string; create: (deps: ProviderDeps) => Provider; failover: boolean }[];
  /** The `local` provider's recognisers (Node, Deno): how many at once, and the model's directory. */
  local: { maxStreams: number; modelDir: string | undefined };
  pcmBatchMs: number;
  passThroughBatchMs: number;
  silenceGate: SilenceGateSettings | undefined;
  /** New sessions are refused while the event loop lags more than this (ms; 0: never). */
  maxEventLoopLagMs: number;
  /** New sessions and streams are refused while the loop is busier than this fraction (0: never). */
  maxEventLoopUtilization: number;
  /** The variable to set when no provider is configured. */
  missingProviderHint: string;
  /** Every provider the proxy knows (the registry), configured or not, with the variable that switches it on. */
  knownProviders: { name: string; keyVariable: string }[];
}

export interface MonitorConfig {
  intervalMs: number;
  /** Read by the server entry (Node, Deno); the Worker has no schedule of its own. */
  file: string;
  timeoutMs: number;
  expect: string[];
  /** Never logged. */
  token: string | undefined;
}

export interface DispatcherConfig {
  /** Node and Deno: the dispatcher's WebSocket endpoint; `?sessionId=` is appended per session. */
  wsUrl: string | undefined;
  /** Handshake headers (credentials): never logged. */
  headers: Record<string, string>;
  /** A connection older than this is replaced by a fresh one (0: never). */
  reconnectIntervalMs: number;
  connectTimeoutMs: number;
  /** Finals held per session while the dispatcher is unreachable, by count and by bytes. */
  queueLimit: number;
  queueMaxBytes: number;
  /** At session end, how long the queue gets to flush before the rest is dropped (counted). */
  drainTimeoutMs: number;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const isHeaderObject = (value: unknown): value is Record<string, string> =>
  typeof value === 'object' &&
  value !== null &&
  !Array.isArray(value) &&
  Object.values(value).every((header) => typeof header === 'string');

const DispatcherEnv = v.object({
  DISPATCHER_WS_URL: v.optional(
    v.pipe(urlString(['ws:', 'wss:', 'http:', 'https:'], 'must be a URL starting with ws://, wss://, http:// or https://'), v.transform(toWebSocketScheme)),
  ),
  // The message never quotes the value: it holds credentials.
  DISPATCHER_HEADERS: envJson(isHeaderObject, 'a JSON object of header names to string values, e.g. {"Authorization":"Bearer …"}'),
  DISPATCHER_RECONNECT_INTERVAL: envInt(1_800_000, 0, 7 * 86_400_000),
  DISPATCHER_CONNECT_TIMEOUT: envInt(10_000, 100, 120_000),
  DISPATCHER_QUEUE_LIMIT: envInt(1_000, 1, 1_000_000),
  DISPATCHER_QUEUE_MAX_BYTES: envInt(1 << 20, 1024, 1 << 30),
  DISPATCHER_DRAIN_TIMEOUT: envInt(5_000, 0, 600_000),
});

/** Validates the dispatcher's variables; every problem is listed as `NAME: message`. */
export function loadDispatcherConfig(env: Readonly<Record<string, string | undefined>>): {
  config?: DispatcherConfig;
  errors: string[];
} {
  const { output, errors } = parseEnvWith(DispatcherEnv, env);
  const headers = output?.DISPATCHER_HEADERS ?? {};
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name)) errors.push(`DISPATCHER_HEADERS: "${name.slice(0, 40)}" is not a valid header name`);
    if (/[\r\n\0]/.test(value)) errors.push(`DISPATCHER_HEADERS: the value of "${name.slice(0, 40)}" contains a line break`);
  }
  if (!output || errors.length) return { errors };
  return {
    errors,
    config: {
      wsUrl: output.DISPATCHER_WS_URL,
      headers,
      reconnectIntervalMs: output.DISPATCHER_RECONNECT_INTERVAL,
      connectTimeoutMs: output.DISPATCHER_CONNECT_TIMEOUT,
      queueLimit: output.DISPATCHER_QUEUE_LIMIT,
      queueMaxBytes: output.DISPATCHER_QUEUE_MAX_BYTES,
      drainTimeoutMs: output.DISPATCHER_DRAIN_TIMEOUT,
    },
  };
}

/** Start-up refused: every bad variable, one per line, for the entrypoint to print. */
export class ConfigError extends Error {
  constructor(readonly errors: string[]) {
    super(`invalid configuration:\n${errors.map((e) => `  - ${e}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export type ConfigResult = { ok: true; config: Config } | { ok: false; errors: string[] };

/** Validates the environment at start-up, listing every bad variable at once. */
export function loadConfig(env: Readonly<Record<string, string | undefined>>, modules: readonly ProviderModule[]): ConfigResult {
  const { output, errors } = parseEnvWith(Env, env);
  const dispatcher = loadDispatcherConfig(env);
  errors.push(...dispatcher.errors);
  const auth = loadAuthConfig(env);
  errors.push(...auth.errors);
  const loaded = modules.map((m) => ({ module: m, ...m.load(env) }));
  for (const l of loaded) errors.push(...l.errors);

  const known = new Set(modules.map((m) => m.name));
  // Read raw so that an unknown name is reported even when other variables are bad.
  const priority = (env.PROVIDERS_PRIORITY ?? modules.map((m) => m.name).join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const name of priority) {
    if (!known.has(name)) errors.push(`PROVIDERS_PRIORITY: unknown provider "${name}" (known: ${[...known].join(', ')})`);
  }
  if (errors.length || !output || !dispatcher.config || !auth.config) return { ok: false, errors };

  // Providers named in the priority list come first, in its order; any others follow.
  const rank = (name: string) => {
    const i = priority.indexOf(name);
    return i === -1 ? priority.length : i;
  };
  const providers = loaded
    .filter((l) => l.create)
    .sort((a, b) => rank(a.module.name) - rank(b.module.name))
    .map((l) => ({ name: l.module.name, create: l.create!, failover: l.module.name !== 'local' || env.PROVIDERS_PRIORITY !== undefined && priority.includes('local') }));

  return {
    ok: true,
    config: {
      port: output.PORT,
      host: output.HOST,
      logLevel: output.LOG_LEVEL,
      forceCommitMs: Math.round(output.FORCE_COMMIT_TIMEOUT * 1000),
      useDispatcher: output.USE_DISPATCHER,
      dispatcher: dispatcher.config,
      maxMessageBytes: output.MAX_MESSAGE_BYTES,
      providerQueueMs: output.PROVIDER_QUEUE_MS,
      providerReplayMs: Math.round(output.PROVIDER_REPLAY_SECONDS * 1000),
      finishTimeoutMs: output.FINISH_TIMEOUT_MS,
      maxParticipants: output.MAX_PARTICIPANTS,
      maxSessions: output.MAX_SESSIONS,
      maxProviderConnections: output.MAX_PROVIDER_CONNECTIONS,
      maxSessionBufferBytes: Math.round(output.MAX_SESSION_BUFFER_MB * (1 << 20)),
      drainTimeoutMs: output.DRAIN_TIMEOUT_MS,
      resumeGraceMs: output.RESUME_GRACE_MS,
      auth: auth.config,
      monitor: {
        intervalMs: Math.round(output.MONITOR_INTERVAL_S * 1000),
        file: output.MONITOR_FILE,
        timeoutMs: output.MONITOR_TIMEOUT_MS,
        expect: output.MONITOR_EXPECT?.split(/[\s,]+/).filter(Boolean) ?? [],
        token: output.MONITOR_TOKEN ?? (auth.config.mode === 'token' ? auth.config.token : undefined),
      },
      dumpDir: output.DUMP_DIR,
      pcmBatchMs: output.PCM_BATCH_MS,
      passThroughBatchMs: output.PASS_THROUGH_BATCH_MS,
      silenceGate: output.SILENCE_GATE
        ? { thresholdDb: output.SILENCE_GATE_THRESHOLD_DB, preRollMs: output.SILENCE_GATE_PREROLL_MS, hangOverMs: output.SILENCE_GATE_HANGOVER_MS }
        : undefined,
      maxEventLoopLagMs: output.MAX_EVENT_LOOP_LAG_MS,
      maxEventLoopUtilization: output.MAX_EVENT_LOOP_UTILIZATION,
      providers,
      local: { maxStreams: output.LOCAL_MAX_STREAMS, modelDir: output.LOCAL_MODEL_DIR },
      missingProviderHint: modules.map((m) => m.enableHint ?? m.keyVariable).join(' or '),
      knownProviders: modules.map((m) => ({ name: m.name, keyVariable: m.keyVariable })),
    },
  };
}
