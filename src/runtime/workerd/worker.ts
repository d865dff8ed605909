/**
 * The Cloudflare Worker in front of the transcription containers (wrangler-container.jsonc).
 *
 * The app is the same as on Node (routes, query validation, refusals, `info` first,
 * /metrics), but each session is relayed to a container chosen by its sessionId, which
 * runs the Node server image (ROUTING: one per session, a hashed pool, or autoscaled
 * containers placed by ContainerCoordinator). Transcripts come back unchanged; the Worker applies the
 * client's sendBack flags and dispatches finals through the Cloudflare bindings
 * (DISPATCHER_DO, TRANSCRIPTION_QUEUE, TRANSCRIPTION_DISPATCHER). /health answers here and
 * says whether a container answers.
 *
 * With TRANSCRIBE_IN_WORKER=true, or without a CONTAINER binding, the Worker transcribes by
 * itself instead: the WASM decoder in the isolate, providers over fetch-upgrade, the same
 * sinks. No container cold start; at most MAX_PARTICIPANTS (default 64) per connection.
 */
import { waitUntil } from 'cloudflare:workers';
import { Hono } from 'hono';
import { loadConfig, type Config } from '../../config.ts';
import { createLogger, type Logger } from '../../log.ts';
import { createMetrics, type Metrics } from '../../metrics.ts';
import { PROVIDERS, SERVER_PROVIDERS } from '../../providers/registry.ts';
import type { SinkFactory } from '../../session/ports.ts';
import { BOOLEAN_VALUES, parseBoolean } from '../../util/bool.ts';
import { systemTimers } from '../../util/timers.ts';
import { createWorkerdApp } from './app.ts';
import { containerRouter, warmContainers, type ContainerRouter, type CoordinatorNamespace } from './container-router.ts';
import { containerSessions, inspectContainer, type ContainerNamespace } from './container-sessions.ts';
import { loadContainerSettings, workerVars, type ContainerSettings } from './container-settings.ts';
import { cloudflareDispatcherSinks, hasDispatcherBinding, type CloudflareDispatcherBindings } from './dispatcher.ts';

export type Env = CloudflareDispatcherBindings & {
  /** The TranscriberContainer Durable Object namespace (an instance per sessionId, pool member or autoscaled container). */
  CONTAINER?: ContainerNamespace;
  /** ROUTING=autoscale: the ContainerCoordinator Durable Object namespace. */
  COORDINATOR?: CoordinatorNamespace;
  /** Variables and secrets (strings), alongside the bindings. */
  [name: string]: unknown;
};

/** How long /health waits for a container; a cold start can take longer, and says so. */
const HEALTH_TIMEOUT_MS = 15_000;

type Built = { app: Hono } | { errors: string[] };

let built: Built | undefined;

/**
 * Participants one Worker connection may carry when it transcribes by itself: what fits the
 * isolate's 128 MB next to its baseline, with margin (`npm run bench:worker`: 0.6-0.9 MB per
 * participant of workerd RSS, an upper bound). MAX_PARTICIPANTS overrides it.
 */
const IN_WORKER_MAX_PARTICIPANTS = 64;

/**
 * What one session's provider queues may hold in the isolate (MB): workerd cannot stop
 * reading a client (no backpressure), so a fast sender fills its queues up to this bound, and
 * the server's 64 MB would not leave the isolate's 128 MB room. MAX_SESSION_BUFFER_MB overrides it.
 */
const IN_WORKER_MAX_SESSION_BUFFER_MB = 16;

/** The Worker's app, from its environment; every configuration problem is listed at once. */
function build(env: Env): Built {
  const vars = workerVars(env);
  const errors: string[] = [];
  const flag = vars.TRANSCRIBE_IN_WORKER ? parseBoolean(vars.TRANSCRIBE_IN_WORKER) : undefined;
  if (vars.TRANSCRIBE_IN_WORKER && flag === undefined) errors.push(`TRANSCRIBE_IN_WORKER: must be ${BOOLEAN_VALUES}`);
  // Without a container to relay to, the isolate runs the whole pipeline itself.
  const inWorker = flag === true || env.CONTAINER === undefined;
  if (inWorker) {
    vars.MAX_PARTICIPANTS ??= String(IN_WORKER_MAX_PARTICIPANTS);
    vars.MAX_SESSION_BUFFER_MB ??= String(IN_WORKER_MAX_SESSION_BUFFER_MB);
  }
  // In front of containers, the providers are the containers' (the Node server's, `local` included).
  const loaded = loadConfig(vars, inWorker ? PROVIDERS : SERVER_PROVIDERS);
  if (!loaded.ok) errors.push(...loaded.errors);
  if (loaded.ok && loaded.config.useDispatcher && !hasDispatcherBinding(env)) {
    errors.push('USE_DISPATCHER: true, but no DISPATCHER_DO, TRANSCRIPTION_QUEUE or TRANSCRIPTION_DISPATCHER binding exists');
  }
  const container = inWorker ? undefined : loadContainerSettings(vars);
  if (container) errors.push(...container.errors);
  if (container?.settings?.routing.mode === 'autoscale' && env.COORDINATOR === undefined) {
    errors.push('ROUTING: autoscale needs the COORDINATOR Durable Object binding (class ContainerCoordinator)');
  }
  if (!loaded.ok || errors.length) {
    console.error(JSON.stringify({ level: 'error', msg: 'invalid configuration', errors }));
    return { errors };
  }
  const { config } = loaded;
  const log = createLogger(config.logLevel).child({ worker: inWorker ? 'transcriber' : 'front' });
  const metrics = createMetrics();
  const sinks = cloudflareDispatcherSinks({ bindings: env, config: config.dispatcher, log, metrics, timers: systemTimers, waitUntil });
  if (inWorker) {
    log.info('worker ready, transcribing in the isolate', { providers: config.providers.map((p) => p.name), maxParticipants: config.maxParticipants });
    return { app: createWorkerdApp({ config, log, metrics, sinks, dispatcherAvailable: hasDispatcherBinding(env) }) };
  }
  return { app: frontApp(env, env.CONTAINER!, config, container!.settings!, log, metrics, sinks) };
}

/** The Worker in front of the containers: sessions relayed by sessionId, /health asks a container. */
function frontApp(
  env: Env,
  namespace: ContainerNamespace,
  config: Config,
  settings: ContainerSettings,
  log: Logger,
  metrics: Metrics,
  sinks: SinkFactory,
): Hono {
  const timers = systemTimers;
  const router = containerRouter(settings.routing, { coordinator: env.COORDINATOR, lingerMs: config.resumeGraceMs });
  const sessions = createWorkerdApp({
    config,
    log,
    metrics,
    sinks,
    dispatcherAvailable: hasDispatcherBinding(env),
    sessions: containerSessions({
      namespace,
      router,
      providers: config.providers.map((p) => p.name),
      log,
      metrics,
      timers,
      keepAliveMs: settings.keepAliveMs,
      // Room for a cold start's worth of audio from a large conference.
      backlogBytes: config.maxMessageBytes * 16,
      // The container's own finish timeout (the same variable, forwarded), and the last final's trip.
      drainMs: config.finishTimeoutMs + 1_000,
      waitUntil,
    }),
  });

  const app = new Hono();
  // The pool's containers are started by the first request an isolate serves, not by the
  // first session hashed to each.
  let warming: Promise<void> | undefined;
  if (router.warm.length) {
    app.use(async (_c, next) => {
      warming ??= warmContainers(namespace, router.warm).catch((error: unknown) => {
        warming = undefined;
        log.warn('could not start the pool', { error });
      });
      waitUntil(warming);
      await next();
    });
  }
  app.get('/health', async (c) => {
    const own = (await (await sessions.request('/health')).json()) as Record<string, unknown>;
    const sessionId = c.req.query('sessionId');
    const routing = await describeRouting(router);
    // A session's instance is looked at, not woken; the probe instance is started if asleep.
    const instance = sessionId === undefined ? router.probe : await router.locate(sessionId).catch(() => undefined);
    const report =
      instance === undefined
        ? { answers: false as const, error: 'no live socket of this session' }
        : await inspectContainer(namespace, instance, sessionId === undefined, HEALTH_TIMEOUT_MS, timers);
    // The Worker's own reasons (no provider key), then, for the probe, the container's: the
    // containers do the transcribing, so their providers' health is the service's.
    const reasons = Array.isArray(own.reasons) ? own.reasons.map(String) : [];
    if (sessionId === undefined) {
      if (!report.answers) reasons.push(`container: ${report.error ?? 'no answer'}`);
      else if (report.health?.status !== 'ok') {
        const theirs = Array.isArray(report.health?.reasons) ? report.health.reasons : ['not ok'];
        reasons.push(...theirs.map((r) => `container: ${r}`));
      }
      if ('error' in routing) reasons.push(`routing: ${String(routing.error)}`);
    }
    const { reasons: _own, status: _status, ...fields } = own;
    const container = { instance: instance ?? null, ...report };
    if (reasons.length) return c.json({ status: 'degraded', reasons, ...fields, routing, container }, 503);
    return c.json({ status: 'ok', ...fields, routing, container });
  });
  app.route('/', sessions);
  if (settings.urlOverride !== undefined) {
    log.warn('CONTAINER_URL_OVERRIDE is set: sessions go to the server at that URL, not to containers', { url: settings.urlOverride });
  }
  log.info('worker ready', {
    providers: config.providers.map((p) => p.name),
    dispatcher: hasDispatcherBinding(env),
    sleepAfterSeconds: settings.sleepAfterSeconds,
    routing: settings.routing,
  });
  return app;
}

/** The routing as /health shows it; a coordinator that does not answer is a reason for 503. */
async function describeRouting(router: ContainerRouter): Promise<Record<string, unknown>> {
  try {
    return await router.describe();
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

export default {
  fetch(request, env, ctx) {
    built ??= build(env);
    if ('errors' in built) {
      return new Response(`invalid configuration:\n${built.errors.map((e) => `  - ${e}`).join('\n')}\n`, { status: 500 });
    }
    return built.app.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;
