/**
 * The app on workerd for tests: the seams of src/runtime/workerd/ wired the way a Worker
 * entry wires them (the production entry, src/runtime/workerd.ts, adds Cloudflare routing
 * and sinks). Configuration comes from the Worker's string variables.
 */
import type { Hono } from 'hono';
import { PROVIDERS } from '../../../src/backends/registry.ts';
import { loadConfig } from '../../../src/config.ts';
import { createLogger } from '../../../src/log.ts';
import { createMetrics } from '../../../src/metrics.ts';
import { createWorkerdApp, workerVars } from '../../../src/runtime/workerd/app.ts';

let app: Hono | undefined;

function build(env: Record<string, unknown>): Hono {
  const result = loadConfig(workerVars(env), PROVIDERS);
  if (!result.ok) throw new Error(`invalid configuration: ${result.errors.join('; ')}`);
  const config = result.config;
  return createWorkerdApp({ config, log: createLogger(config.logLevel), metrics: createMetrics() });
}

export default {
  fetch(request, env: Record<string, unknown>, ctx) {
    app ??= build(env);
    return app.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Record<string, unknown>>;
