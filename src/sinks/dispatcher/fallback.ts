import type { Logger } from '../../log.ts';
import { backoffMs, type Timers } from '../../util/timers.ts';
import type { Outgoing } from './queue.ts';
import type { DispatchTransport } from './transport.ts';

/**
 * Tries transports in priority order for each final: one that fails hands that final to
 * the next, and is skipped for a backoff period so that a dead transport does not cost
 * every final a failed attempt. The last transport is never skipped: with nothing after
 * it, the sink's own retry decides when to try again.
 */
export class FallbackTransport implements DispatchTransport {
  readonly name = 'fallback';
  private readonly cooldown = new Map<DispatchTransport, { failures: number; until: number }>();

  constructor(
    private readonly transports: readonly DispatchTransport[],
    private readonly timers: Timers,
    private readonly log: Logger,
  ) {}

  async send(item: Outgoing): Promise<void> {
    let lastError: unknown = new Error('no dispatcher transport configured');
    for (let i = 0; i < this.transports.length; i++) {
      const transport = this.transports[i]!;
      const next = this.transports[i + 1];
      const cool = this.cooldown.get(transport);
      if (next && cool && this.timers.now() < cool.until) continue;
      try {
        await transport.send(item);
        this.cooldown.delete(transport);
        return;
      } catch (error) {
        lastError = error;
        const failures = (cool?.failures ?? 0) + 1;
        this.cooldown.set(transport, { failures, until: this.timers.now() + backoffMs(failures, 1_000, 30_000) });
        if (next) {
          this.log.info('dispatcher transport failed; falling back', { from: transport.name, to: next.name, messageId: item.message.messageId });
        }
      }
    }
    throw lastError;
  }

  async close(deadline: number): Promise<void> {
    await Promise.all(this.transports.map((t) => t.close(deadline)));
  }
}
