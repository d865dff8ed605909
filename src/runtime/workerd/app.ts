import type { Hono } from 'hono';
import { createApp } from '../../app.ts';
import type { Config } from '../../config.ts';
import type { Logger } from '../../log.ts';
import type { Metrics } from '../../metrics.ts';
import { localSessions } from '../../session/local.ts';
import type { SessionFactory, SinkFactory } from '../../session/ports.ts';
import { workerdConnector } from './connector.ts';
import { loadOpusModule } from './wasm.ts';
import { upgradeWebSocket } from './websocket.ts';
import { sharedCodec } from '../server.ts';

export interface WorkerdAppOptions {
  /** Loaded by the Worker entry with loadConfig(workerVars(env), PROVIDERS). */
  config: Config;
  log: Logger;
  metrics: Metrics;
  sinks?: SinkFactory;
  dispatcherAvailable?: boolean;
  /** Where sessions run (the Worker in front of its containers relays them); by default in this isolate. */
  sessions?: SessionFactory;
}

const codec = sharedCodec(loadOpusModule);

/** The app wired with workerd's seams; the Worker entry owns config, sinks and routing to it. */
export function createWorkerdApp(options: WorkerdAppOptions): Hono {
  const { config, log, metrics } = options;
  return createApp({
    config,
    runtime: 'workerd',
    upgradeWebSocket,
    log,
    metrics,
    sinks: options.sinks,
    dispatcherAvailable: options.dispatcherAvailable,
    // No resumption in an isolate: a provider socket opened for one request cannot be used from
    // another's (workerd's I/O isolation), so a session cannot outlive its client's socket here.
    sessions: options.sessions ?? localSessions({ config: { ...config, resumeGraceMs: 0 }, codec, connector: workerdConnector, log, metrics }),
  });
}
