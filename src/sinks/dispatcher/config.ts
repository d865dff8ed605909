import * as v from 'valibot';
import { envInt, envJson, parseEnvWith } from '../../util/env-schema.ts';

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

const wsUrl = v.optional(
  v.pipe(
    v.string(),
    v.trim(),
    v.check((s) => {
      try {
        return ['ws:', 'wss:', 'http:', 'https:'].includes(new URL(s).protocol);
      } catch {
        return false;
      }
    }, 'must be a URL starting with ws://, wss://, http:// or https://'),
    // Operators often paste the https URL of the service.
    v.transform((s) => s.replace(/^http(s?):\/\//i, 'ws$1://')),
  ),
);

export const DispatcherEnv = v.object({
  DISPATCHER_WS_URL: wsUrl,
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
