/**
 * The Worker's settings for its transcription container, and the environment the container
 * starts with. Cloudflare passes none of a Worker's variables or secrets to its containers:
 * what the Node server inside must see is forwarded here, by name, and nothing else.
 */
import * as v from 'valibot';
import { SERVER_PROVIDERS } from '../../providers/registry.ts';
import { envInt, parseEnvWith, urlString } from '../../util/env-schema.ts';
import type { AutoscaleLimits } from './routing/autoscale.ts';

/**
 * The Worker's string variables: a Worker's env mixes them with bindings (Durable Object
 * namespaces, queues, services), which configuration must not see.
 */
export function workerVars(env: Readonly<Record<string, unknown>>): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (typeof value === 'string') vars[key] = value;
  return vars;
}

/** The port the image's server listens on, and the one the Container class reaches. */
export const CONTAINER_PORT = 8080;

/** The server's own variables. DISPATCHER_* stay behind: the Worker dispatches. */
const SERVER_VARIABLES: ReadonlySet<string> = new Set([
  'LOG_LEVEL',
  'PROVIDERS_PRIORITY',
  'FORCE_COMMIT_TIMEOUT',
  'MAX_MESSAGE_BYTES',
  'PROVIDER_QUEUE_MS',
  'PROVIDER_REPLAY_SECONDS',
  'FINISH_TIMEOUT_MS',
  'MAX_PARTICIPANTS',
  'DRAIN_TIMEOUT_MS',
  'RESUME_GRACE_MS',
  'MAX_SESSIONS',
  'MAX_PROVIDER_CONNECTIONS',
  'MAX_SESSION_BUFFER_MB',
  'PCM_BATCH_MS',
  'PASS_THROUGH_BATCH_MS',
  'SILENCE_GATE',
  'SILENCE_GATE_THRESHOLD_DB',
  'SILENCE_GATE_PREROLL_MS',
  'SILENCE_GATE_HANGOVER_MS',
  'MAX_EVENT_LOOP_LAG_MS',
  'MAX_EVENT_LOOP_UTILIZATION',
]);

/**
 * A provider's variables share its key's prefix (OPENAI_API_KEY: OPENAI_MODEL, OPENAI_BASE_URL…);
 * the container runs the Node server, so `local`'s (LOCAL_*) go too.
 */
const PROVIDER_PREFIXES = SERVER_PROVIDERS.map((p) => p.keyVariable.slice(0, p.keyVariable.indexOf('_') + 1));

/** The container's environment, from the Worker's string variables and secrets. Holds secrets: never log the values. */
export function containerEnvVars(vars: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(vars)) {
    if (value === '') continue;
    if (SERVER_VARIABLES.has(name) || PROVIDER_PREFIXES.some((prefix) => name.startsWith(prefix))) env[name] = value;
  }
  // The server answers the Container class on its port, and leaves dispatching to the Worker,
  // which applies each client's useDispatcher itself.
  env.PORT = String(CONTAINER_PORT);
  env.HOST = '0.0.0.0';
  env.USE_DISPATCHER = 'false';
  return env;
}

/**
 * How sessions are spread over containers (README, "Routing sessions to containers"):
 * one container per sessionId, a fixed pool chosen by hashing the sessionId, or as many
 * containers as the load needs, placed by the coordinator Durable Object.
 */
export type Routing =
  | { mode: 'session' }
  | { mode: 'pool'; size: number }
  | { mode: 'autoscale'; limits: Omit<AutoscaleLimits, 'leaseMs'> };

export const ROUTING_MODES = ['session', 'pool', 'autoscale'] as const;

export interface ContainerSettings {
  /** Idle time after which the container is stopped (the Container class's sleepAfter). */
  sleepAfterSeconds: number;
  /** How often the Worker renews the idle timer while a client socket is live. */
  keepAliveMs: number;
  /**
   * Local development and tests, where no container runtime exists: the Container class
   * reaches the server at this URL instead (see container-override.ts).
   */
  urlOverride: string | undefined;
  routing: Routing;
}

/**
 * How long the coordinator keeps a socket its Worker stopped renewing: several renewals
 * (keepAliveMs apart) may be lost before a live session is forgotten.
 */
export const leaseMs = (keepAliveMs: number): number => Math.max(30_000, keepAliveMs * 3);

const DURATION = /^(\d+)([smh]?)$/;
const UNIT_SECONDS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600 };

const Settings = v.object({
  CONTAINER_SLEEP_AFTER: v.optional(
    v.pipe(
      v.string(),
      v.trim(),
      v.regex(DURATION, 'must be a duration such as 90s, 5m or 1h'),
      v.transform((s) => {
        const [, n, unit] = DURATION.exec(s)!;
        return Number(n) * UNIT_SECONDS[unit!]!;
      }),
      v.minValue(1, 'must be at least 1s'),
    ),
    '5m',
  ),
  CONTAINER_URL_OVERRIDE: v.optional(urlString(['http:', 'https:'], 'must be an http:// or https:// URL, e.g. http://127.0.0.1:8080')),
  ROUTING: v.optional(v.pipe(v.string(), v.trim(), v.picklist(ROUTING_MODES, `must be ${ROUTING_MODES.join(', ')}`)), 'session'),
  POOL_SIZE: envInt(3, 1, 1000),
  AUTOSCALE_MAX_SESSIONS_PER_CONTAINER: envInt(4, 1, 10_000),
  AUTOSCALE_MIN_WARM: envInt(1, 0, 1000),
  AUTOSCALE_MAX_CONTAINERS: envInt(10, 1, 1000),
  AUTOSCALE_IDLE_RETIRE_S: envInt(300, 1, 86_400),
});

function routingOf(output: v.InferOutput<typeof Settings>): Routing {
  switch (output.ROUTING) {
    case 'session':
      return { mode: 'session' };
    case 'pool':
      return { mode: 'pool', size: output.POOL_SIZE };
    case 'autoscale':
      return {
        mode: 'autoscale',
        limits: {
          maxSessionsPerContainer: output.AUTOSCALE_MAX_SESSIONS_PER_CONTAINER,
          minWarm: output.AUTOSCALE_MIN_WARM,
          maxContainers: output.AUTOSCALE_MAX_CONTAINERS,
          idleRetireMs: output.AUTOSCALE_IDLE_RETIRE_S * 1000,
        },
      };
  }
}

/** Reads CONTAINER_SLEEP_AFTER, CONTAINER_URL_OVERRIDE and the routing; every problem is listed as `NAME: message`. */
export function loadContainerSettings(vars: Readonly<Record<string, string>>): { settings?: ContainerSettings; errors: string[] } {
  const { output, errors } = parseEnvWith(Settings, vars);
  if (!output) return { errors };
  if (output.ROUTING === 'autoscale' && output.AUTOSCALE_MIN_WARM > output.AUTOSCALE_MAX_CONTAINERS) {
    return { errors: [`AUTOSCALE_MIN_WARM: must be at most AUTOSCALE_MAX_CONTAINERS (${output.AUTOSCALE_MAX_CONTAINERS})`] };
  }
  const sleepAfterMs = output.CONTAINER_SLEEP_AFTER * 1000;
  return {
    errors,
    settings: {
      sleepAfterSeconds: output.CONTAINER_SLEEP_AFTER,
      // Several renewals fit in one idle period, so a late or failed one costs nothing.
      keepAliveMs: Math.max(250, Math.min(60_000, Math.floor(sleepAfterMs / 4))),
      urlOverride: output.CONTAINER_URL_OVERRIDE,
      routing: routingOf(output),
    },
  };
}
