import type { Hono } from 'hono';
import { createApp, type AppDeps } from '../../app.ts';
import type { Config } from '../../config.ts';
import type { Logger } from '../../log.ts';
import type { Metrics } from '../../metrics.ts';
import { workerdConnector } from './connector.ts';
import { loadOpusModule } from './wasm.ts';
import { upgradeWebSocket } from './websocket.ts';
import { sharedCodec } from '../server.ts';

export interface WorkerdAppOptions {
  /** Loaded by the Worker entry with loadConfig(workerVars(env), PROVIDERS). */
  config: Config;
  log: Logger;
  metrics: Metrics;
  sinks?: AppDeps['sinks'];
  dispatcherAvailable?: boolean;
  /** Where sessions run (the Worker in front of its container relays them); by default in this isolate. */
  backend?: AppDeps['backend'];
}

const codec = sharedCodec(loadOpusModule);

/**
 * The Worker's string variables: a Worker's env mixes them with bindings (Durable Object
 * namespaces, queues, services), which configuration must not see.
 */
export function workerVars(env: Readonly<Record<string, unknown>>): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (typeof value === 'string') vars[key] = value;
  return vars;
}

/** The app wired with workerd's seams; the Worker entry owns config, sinks and routing to it. */
export function createWorkerdApp(options: WorkerdAppOptions): Hono {
  return createApp({
    config: options.config,
    runtime: 'workerd',
    upgradeWebSocket,
    codec,
    connector: workerdConnector,
    log: options.log,
    metrics: options.metrics,
    sinks: options.sinks,
    dispatcherAvailable: options.dispatcherAvailable,
    backend: options.backend,
  });
}
