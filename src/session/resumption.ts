import type { Logger } from '../log.ts';
import type { TranscribeParams } from '../protocol/query.ts';
import type { SessionContext } from './ports.ts';

/** What the registry needs of a session whose client went away. */
export interface Detachable {
  readonly params: TranscribeParams;
  readonly log: Logger;
}

/**
 * Why a client coming back with a session's sessionId cannot take it over: the parameters
 * that shape its provider streams and sinks must be the same. undefined when it can.
 */
export function resumeMismatch(detached: TranscribeParams, comer: TranscribeParams): string | undefined {
  if (detached.provider !== comer.provider) return 'provider';
  if (detached.lang !== comer.lang) return 'lang';
  if (detached.useDispatcher !== comer.useDispatcher) return 'useDispatcher';
  return undefined;
}

interface Entry<S> {
  session: S;
  timer: unknown;
}

/**
 * Sessions whose client socket went away, by sessionId, each kept `graceMs` for the client to
 * come back (docs/PROTOCOL.md §4.9). Only detached sessions are here: a socket never takes a
 * session another socket still holds.
 */
export class DetachedSessions<S extends Detachable> {
  private readonly bySessionId = new Map<string, Entry<S>[]>();

  constructor(
    readonly graceMs: number,
    private readonly ctx: Pick<SessionContext, 'metrics' | 'timers'>,
    /** The grace is over: the session ends as it would have without resumption. */
    private readonly expire: (session: S) => void,
  ) {}

  /** Keeps `session` (which has a sessionId) until a client takes it back or the grace expires. */
  park(session: S): void {
    const id = session.params.sessionId!;
    const entry: Entry<S> = { session, timer: undefined };
    entry.timer = this.ctx.timers.setTimeout(() => {
      entry.timer = undefined;
      if (!this.remove(id, entry)) return;
      session.log.info('session expired', { graceMs: this.graceMs });
      this.expire(session);
    }, this.graceMs);
    const list = this.bySessionId.get(id);
    if (list) list.push(entry);
    else this.bySessionId.set(id, [entry]);
    this.ctx.metrics.state.detachedSessions++;
  }

  /** The session detached longest ago that a client with `params` may resume, taken out of the registry. */
  take(params: TranscribeParams): S | undefined {
    const id = params.sessionId;
    const list = id === undefined ? undefined : this.bySessionId.get(id);
    if (!list) return undefined;
    const entry = list.find((e) => resumeMismatch(e.session.params, params) === undefined);
    if (!entry) {
      const first = list[0]!.session;
      first.log.info('session not resumed: the new socket asks for different parameters', { differs: resumeMismatch(first.params, params) });
      return undefined;
    }
    this.remove(id!, entry);
    this.ctx.metrics.sessionsResumed.inc();
    return entry.session;
  }

  /** Shutdown: every session leaves the registry, for the caller to end. */
  clear(): S[] {
    const all = [...this.bySessionId.values()].flat();
    for (const entry of all) this.remove(entry.session.params.sessionId!, entry);
    return all.map((e) => e.session);
  }

  private remove(id: string, entry: Entry<S>): boolean {
    const list = this.bySessionId.get(id);
    const i = list?.indexOf(entry) ?? -1;
    if (i < 0) return false;
    list!.splice(i, 1);
    if (list!.length === 0) this.bySessionId.delete(id);
    if (entry.timer !== undefined) this.ctx.timers.clearTimeout(entry.timer);
    entry.timer = undefined;
    this.ctx.metrics.state.detachedSessions--;
    return true;
  }
}
