import { Container, type State, type StopParams } from '@cloudflare/containers';
import type { DurableObject } from 'cloudflare:workers';
import { createLogger, type Logger, type LogLevel } from '../../log.ts';
import { CONTAINER_PORT, containerEnvVars, loadContainerSettings, workerVars } from './container-settings.ts';
import { installContainerOverride } from './container-override.ts';

/** The server's /health fields (status, runtime, version, providers, sessions…); RPC needs a concrete type. */
export type HealthFields = Record<string, string | number | boolean | null | string[]>;

/** What the Worker's /health reports about one container instance. */
export interface ContainerReport {
  /** The Durable Object id of the instance. */
  id: string;
  state: State['status'];
  /** Whether the server in the container answered its /health. */
  answers: boolean;
  /** That answer (the Node server's providers, sessions, version). */
  health?: HealthFields;
  error?: string;
  /** The names (never the values) of the variables the container is started with. */
  env: string[];
}

/** The header that names, to the server, the container instance a request came through. */
export const INSTANCE_HEADER = 'x-transcriber-instance';

export const POOL_PREFIX = 'pool-';

const LEVELS: readonly string[] = ['debug', 'info', 'warn', 'error'];

/**
 * The transcription container of one session: a Durable Object (`idFromName(sessionId)`)
 * that owns a container running the Node server image (Dockerfile). The Worker relays the
 * session's socket through it; reconnects with the same sessionId come back here.
 */
export class TranscriberContainer extends Container<Record<string, unknown>> {
  private readonly log: Logger;
  private readonly forwarded: string[];
  /** The name the instance was reached by (idFromName), else its id. */
  private readonly instance: string;

  constructor(ctx: DurableObject['ctx'], env: Record<string, unknown>) {
    const vars = workerVars(env);
    const { settings, errors } = loadContainerSettings(vars);
    if (!settings) throw new Error(`invalid container configuration: ${errors.join('; ')}`);
    if (settings.urlOverride !== undefined) installContainerOverride(ctx, settings.urlOverride);
    const envVars = containerEnvVars(vars);
    super(ctx, env, { defaultPort: CONTAINER_PORT, sleepAfter: settings.sleepAfterSeconds, envVars });
    const level = vars.LOG_LEVEL !== undefined && LEVELS.includes(vars.LOG_LEVEL) ? (vars.LOG_LEVEL as LogLevel) : 'info';
    this.log = createLogger(level).child({ container: ctx.id.toString() });
    this.forwarded = Object.keys(envVars).sort();
    this.instance = ctx.id.name ?? ctx.id.toString();
    if (settings.urlOverride !== undefined) this.log.debug('reaching the server at CONTAINER_URL_OVERRIDE', { url: settings.urlOverride });
  }

  /**
   * Renews the idle timer. The Worker calls it while a client socket is live, because
   * WebSocket traffic is not activity the Container class reliably sees.
   */
  keepAlive(): void {
    this.renewActivityTimeout();
  }

  /**
   * Starts the container if it is not running and renews its idle timer: the autoscale
   * coordinator keeps its containers warm while they wait for sessions.
   */
  async warm(): Promise<void> {
    if (!this.ctx.container?.running) await this.startAndWaitForPorts();
    this.renewActivityTimeout();
  }

  /** Stops the container: the coordinator retires it (it carries no session). */
  async retire(): Promise<void> {
    if (this.ctx.container?.running) await this.stop();
  }

  /**
   * Requests reach the server with this instance's name (`pool-3`, `auto-0`, a sessionId),
   * so its logs and the tests can tell which container a session landed on.
   */
  override async fetch(request: Request): Promise<Response> {
    const named = new Request(request);
    named.headers.set(INSTANCE_HEADER, this.instance);
    return super.fetch(named);
  }

  /** The instance's state and its server's /health; the container is started first only if `start`. */
  async inspect(start: boolean): Promise<ContainerReport> {
    const report: ContainerReport = {
      id: this.ctx.id.toString(),
      state: (await this.getState()).status,
      answers: false,
      env: this.forwarded,
    };
    if (!start && report.state !== 'healthy' && report.state !== 'running') return report;
    try {
      // containerFetch starts the container and counts as activity; a look at a session's
      // instance must do neither, or polling it would keep it awake.
      const response = start
        ? await this.containerFetch('http://container/health')
        : await this.ctx.container!.getTcpPort(CONTAINER_PORT).fetch('http://container/health', { signal: AbortSignal.timeout(5_000) });
      const body = await response.text();
      const health = parseHealth(body);
      // A 503 with the server's health is an answer (its providers are failing), not silence.
      report.answers = response.ok || (response.status === 503 && health.status === 'degraded');
      if (report.answers) report.health = health;
      else report.error = `HTTP ${response.status}: ${body.slice(0, 200)}`;
    } catch (error) {
      report.error = error instanceof Error ? error.message : String(error);
    }
    report.state = (await this.getState()).status;
    return report;
  }

  override onStart(): void {
    // Names only: the values include the providers' API keys.
    this.log.info('container started', { env: this.forwarded });
  }

  override onStop(params: StopParams): void {
    this.log.info('container stopped', { exitCode: params.exitCode, reason: params.reason });
  }

  override async onActivityExpired(): Promise<void> {
    if (!this.ctx.container?.running) return;
    // A pool member stays up for the sessions hashed to it: a cold start is what ROUTING=pool avoids.
    if (this.instance.startsWith(POOL_PREFIX)) return;
    this.log.info('container idle; stopping it');
    await this.stop();
  }

  override onError(error: unknown): unknown {
    this.log.error('container error', { error: error instanceof Error ? error.message : String(error) });
    throw error;
  }
}

function parseHealth(text: string): HealthFields {
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as HealthFields;
  } catch {
    // reported below
  }
  return { body: text.slice(0, 200) };
}
