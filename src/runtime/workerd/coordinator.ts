/**
 * ROUTING=autoscale: the one Durable Object (`idFromName('coordinator')`) that knows how many
 * sessions each `auto-<i>` container carries. The Worker asks it where a new socket goes and
 * tells it when the socket closes; it keeps the warm ones awake, and an alarm retires the
 * ones idle for AUTOSCALE_IDLE_RETIRE_S. The bookkeeping is the pure Autoscaler
 * (routing/autoscale.ts); its snapshot is stored after every change, so a restarted
 * coordinator places sessions where their state is.
 */
import { getContainer } from '@cloudflare/containers';
import { DurableObject } from 'cloudflare:workers';
import { createLogger, type Logger, type LogLevel } from '../../log.ts';
import type { ContainerNamespace } from './container-sessions.ts';
import { leaseMs, loadContainerSettings, workerVars } from './container-settings.ts';
import { Autoscaler, type AutoscaleSnapshot, type ContainerCount, type Placement } from './routing/autoscale.ts';

const STATE_KEY = 'autoscale';
export const COORDINATOR_NAME = 'coordinator';

const LEVELS: readonly string[] = ['debug', 'info', 'warn', 'error'];

export class ContainerCoordinator extends DurableObject<Record<string, unknown>> {
  private scaler!: Autoscaler;
  private readonly containers: ContainerNamespace;
  private readonly warmEveryMs: number;
  private readonly log: Logger;

  constructor(ctx: DurableObjectState, env: Record<string, unknown>) {
    super(ctx, env);
    const vars = workerVars(env);
    const { settings, errors } = loadContainerSettings(vars);
    if (!settings) throw new Error(`invalid container configuration: ${errors.join('; ')}`);
    if (settings.routing.mode !== 'autoscale') throw new Error('the coordinator serves ROUTING=autoscale only');
    if (env.CONTAINER === undefined) throw new Error('the coordinator needs the CONTAINER binding');
    this.containers = env.CONTAINER as ContainerNamespace;
    this.warmEveryMs = settings.keepAliveMs;
    const limits = { ...settings.routing.limits, leaseMs: leaseMs(settings.keepAliveMs) };
    const level = vars.LOG_LEVEL !== undefined && LEVELS.includes(vars.LOG_LEVEL) ? (vars.LOG_LEVEL as LogLevel) : 'info';
    this.log = createLogger(level).child({ coordinator: 'autoscale' });
    void ctx.blockConcurrencyWhile(async () => {
      const snapshot = await ctx.storage.get<AutoscaleSnapshot>(STATE_KEY);
      this.scaler = new Autoscaler(limits, Date.now, snapshot);
      await this.schedule();
    });
  }

  /** Where a new socket of `sessionKey` goes. */
  async place(sessionKey: string, socketId: string): Promise<Placement> {
    const placement = this.scaler.place(sessionKey, socketId);
    if (placement.added) this.log.info('container added', { instance: placement.instance, containers: this.scaler.counts().length });
    if (placement.overfull) this.log.warn('every container is full and no more may be added; overfilling the least loaded', { instance: placement.instance });
    await this.save();
    return placement;
  }

  async renew(socketId: string, sessionKey: string, instance: string): Promise<void> {
    this.scaler.renew(socketId, sessionKey, instance);
    await this.save();
  }

  /** The socket closed; its session stays placed for `lingerMs` if it was the last (RESUME_GRACE_MS). */
  async release(socketId: string, lingerMs: number): Promise<void> {
    this.scaler.release(socketId, lingerMs);
    await this.save();
  }

  locate(sessionKey: string): string | undefined {
    return this.scaler.locate(sessionKey);
  }

  counts(): ContainerCount[] {
    return this.scaler.counts();
  }

  override async alarm(): Promise<void> {
    const tick = this.scaler.tick();
    if (tick.expired) this.log.warn('sockets forgotten: their Worker stopped renewing them', { sockets: tick.expired });
    await this.ctx.storage.put(STATE_KEY, this.scaler.snapshot());
    await Promise.all([
      ...tick.retire.map(async (instance) => {
        this.log.info('retiring an idle container', { instance });
        try {
          await getContainer(this.containers, instance).retire();
        } catch (error) {
          // It sleeps by itself after CONTAINER_SLEEP_AFTER anyway.
          this.log.warn('could not stop a retired container', { instance, error: error instanceof Error ? error.message : String(error) });
        }
        this.scaler.stopped(instance);
      }),
      // An idle container would sleep after CONTAINER_SLEEP_AFTER; the coordinator decides instead.
      ...this.scaler.counts().map(async ({ instance }) => {
        try {
          await getContainer(this.containers, instance).warm();
        } catch (error) {
          this.log.warn('could not keep a container warm', { instance, error: error instanceof Error ? error.message : String(error) });
        }
      }),
    ]);
    await this.save(true);
  }

  private async save(afterAlarm = false): Promise<void> {
    await this.ctx.storage.put(STATE_KEY, this.scaler.snapshot());
    await this.schedule(afterAlarm);
  }

  /** The next alarm: a retirement or a lease due, or the next keep-warm round. */
  private async schedule(afterAlarm = false): Promise<void> {
    const now = Date.now();
    const next = [this.scaler.nextAt(), this.scaler.counts().length ? now + this.warmEveryMs : undefined].filter((t) => t !== undefined);
    if (!next.length) return;
    const at = Math.max(now, Math.min(...next));
    // The alarm that is running is spent, whatever getAlarm says while it runs.
    const current = afterAlarm ? null : await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }
}
