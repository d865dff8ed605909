/**
 * The Cloudflare Worker in front of the transcription containers (wrangler-container.jsonc).
 *
 * The app is the same as on Node (routes, query validation, refusals, `info` first,
 * /metrics), but each session is relayed to a container chosen by its sessionId, which
 * runs the Node server image. Transcripts come back unchanged; the Worker applies the
 * client's sendBack flags and dispatches finals through the Cloudflare bindings
 * (DISPATCHER_DO, TRANSCRIPTION_QUEUE, TRANSCRIPTION_DISPATCHER). /health answers here and
 * says whether a container answers.
 */
import { waitUntil } from 'cloudflare:workers';
import { Hono } from 'hono';
import { PROVIDERS } from '../backends/registry.ts';
import { loadConfig } from '../config.ts';
import { createLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import { cloudflareDispatcherSinks, hasDispatcherBinding, type CloudflareDispatcherBindings } from '../sinks/dispatcher/cloudflare.ts';
import { systemTimers } from '../util/timers.ts';
import { createWorkerdApp, workerVars } from './workerd/app.ts';
import { containerBackend, HEALTH_INSTANCE, inspectContainer, type ContainerNamespace } from './workerd/container-backend.ts';
import { loadContainerSettings } from './workerd/container-settings.ts';

export { TranscriberContainer } from './workerd/container.ts';

export type Env = CloudflareDispatcherBindings & {
  /** The TranscriberContainer Durable Object namespace (one instance per sessionId). */
  CONTAINER?: ContainerNamespace;
  /** Variables and secrets (strings), alongside the bindings. */
  [name: string]: unknown;
};

/** How long /health waits for a container; a cold start can take longer, and says so. */
const HEALTH_TIMEOUT_MS = 15_000;

type Built = { app: Hono } | { errors: string[] };

let built: Built | undefined;

/** The Worker's app, from its environment; every configuration problem is listed at once. */
function build(env: Env): Built {
  const vars = workerVars(env);
  const loaded = loadConfig(vars, PROVIDERS);
  const container = loadContainerSettings(vars);
  const errors = [...(loaded.ok ? [] : loaded.errors), ...container.errors];
  const namespace = env.CONTAINER;
  if (namespace === undefined) {
    errors.push('CONTAINER: no Durable Object binding for the TranscriberContainer class (deploy with -c wrangler-container.jsonc)');
  }
  if (loaded.ok && loaded.config.useDispatcher && !hasDispatcherBinding(env)) {
    errors.push('USE_DISPATCHER: true, but no DISPATCHER_DO, TRANSCRIPTION_QUEUE or TRANSCRIPTION_DISPATCHER binding exists');
  }
  if (!loaded.ok || !container.settings || namespace === undefined || errors.length) {
    console.error(JSON.stringify({ level: 'error', msg: 'invalid configuration', errors }));
    return { errors };
  }

  const { config } = loaded;
  const settings = container.settings;
  const log = createLogger(config.logLevel).child({ worker: 'front' });
  const metrics = createMetrics();
  const timers = systemTimers;
  const sessions = createWorkerdApp({
    config,
    log,
    metrics,
    sinks: cloudflareDispatcherSinks({ bindings: env, config: config.dispatcher, log, metrics, timers, waitUntil }),
    dispatcherAvailable: hasDispatcherBinding(env),
    backend: containerBackend({
      namespace,
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
  app.get('/health', async (c) => {
    const own = (await (await sessions.request('/health')).json()) as Record<string, unknown>;
    const sessionId = c.req.query('sessionId');
    // A session's instance is looked at, not woken; the probe instance is started if asleep.
    const instance = sessionId ?? HEALTH_INSTANCE;
    const report = await inspectContainer(namespace, instance, sessionId === undefined, HEALTH_TIMEOUT_MS, timers);
    const healthy = sessionId !== undefined || report.answers;
    return c.json({ ...own, status: healthy ? 'ok' : 'degraded', container: { instance, ...report } }, healthy ? 200 : 503);
  });
  app.route('/', sessions);
  if (settings.urlOverride !== undefined) {
    log.warn('CONTAINER_URL_OVERRIDE is set: sessions go to the server at that URL, not to containers', { url: settings.urlOverride });
  }
  log.info('worker ready', {
    providers: config.providers.map((p) => p.name),
    dispatcher: hasDispatcherBinding(env),
    sleepAfterSeconds: settings.sleepAfterSeconds,
  });
  return { app };
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
