/**
 * Session resumption's parts on a manual clock (docs/PROTOCOL.md §4.9): the registry of
 * detached sessions (grace, matching, order), and what the session shell holds for a client
 * that is away. The whole, over real sockets, is in test/e2e/survival.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import type { TranscriptionResult } from '../../src/protocol/outbound.ts';
import type { ClientSocket } from '../../src/session/ports.ts';
import { DetachedSessions, resumeMismatch } from '../../src/session/resumption.ts';
import { HELD_FINALS_LIMIT, RESEND_WINDOW_MS, SessionShell } from '../../src/session/shell.ts';
import { ManualClock } from '../helpers/clock.ts';
import type { TranscribeParams } from '../../src/protocol/query.ts';
import { transcribeParams } from '../helpers/params.ts';

const params = transcribeParams;

interface LogRecord {
  msg: string;
  [field: string]: unknown;
}

function logger(): { log: Logger; lines: LogRecord[] } {
  const lines: LogRecord[] = [];
  return { log: createLogger('debug', (_level, line) => lines.push(JSON.parse(line) as LogRecord)), lines };
}

function fakeSession(p: TranscribeParams, log: Logger) {
  return { params: p, log: log.child({ session: p.sessionId }) };
}

describe('DetachedSessions', () => {
  function setup(graceMs = 1000) {
    const clock = new ManualClock();
    const metrics = createMetrics();
    const expired: unknown[] = [];
    const registry = new DetachedSessions<ReturnType<typeof fakeSession>>(graceMs, { metrics, timers: clock }, (s) => expired.push(s));
    return { clock, metrics, expired, registry, ...logger() };
  }

  it('gives a parked session back to a socket with its sessionId within the grace, once, and counts it', () => {
    const { clock, metrics, expired, registry, log } = setup();
    const session = fakeSession(params(), log);
    registry.park(session);
    expect(metrics.state.detachedSessions).toBe(1);
    clock.advance(999);
    expect(registry.take(params({ sendBackInterim: true }))).toBe(session);
    expect(registry.take(params())).toBeUndefined();
    expect(metrics.state.detachedSessions).toBe(0);
    expect(metrics.sessionsResumed.get()).toBe(1);
    clock.advance(10_000);
    expect(expired).toEqual([]);
    expect(clock.pending()).toEqual([]);
  });

  it('expires a session at the end of its grace, logging it, and forgets it', () => {
    const { clock, metrics, expired, registry, log, lines } = setup(1000);
    const session = fakeSession(params(), log);
    registry.park(session);
    clock.advance(1000);
    expect(expired).toEqual([session]);
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'session expired', session: 'conf', graceMs: 1000 }));
    expect(metrics.state.detachedSessions).toBe(0);
    expect(registry.take(params())).toBeUndefined();
  });

  it('never gives a session to a socket asking for another provider, language or dispatcher choice', () => {
    const { registry, log, lines } = setup();
    const session = fakeSession(params({ lang: 'en', useDispatcher: true }), log);
    registry.park(session);
    expect(registry.take(params({ sessionId: 'other', lang: 'en', useDispatcher: true }))).toBeUndefined();
    expect(registry.take(params({ lang: 'fr', useDispatcher: true }))).toBeUndefined();
    expect(registry.take(params({ lang: 'en', useDispatcher: undefined }))).toBeUndefined();
    expect(registry.take(params({ provider: 'deepgram', lang: 'en', useDispatcher: true }))).toBeUndefined();
    expect(lines.filter((l) => l.msg.startsWith('session not resumed')).map((l) => l.differs)).toEqual(['lang', 'useDispatcher', 'provider']);
    expect(registry.take(params({ lang: 'en', useDispatcher: true, sendBack: false, encoding: 'ogg-opus' }))).toBe(session);
    expect(resumeMismatch(params(), params({ sendBackInterim: true, encoding: 'l16' }))).toBeUndefined();
  });

  it('resumes the session detached first when several share a sessionId, each once', () => {
    const { clock, registry, log } = setup();
    const first = fakeSession(params(), log);
    const second = fakeSession(params(), log);
    registry.park(first);
    clock.advance(500);
    registry.park(second);
    expect(registry.take(params())).toBe(first);
    expect(registry.take(params())).toBe(second);
    expect(registry.take(params())).toBeUndefined();
  });

  it('takes out of the registry a session parked after another of the same sessionId, which stays', () => {
    const { clock, metrics, expired, registry, log } = setup(1000);
    const en = fakeSession(params({ lang: 'en' }), log);
    const fr = fakeSession(params({ lang: 'fr' }), log);
    registry.park(en);
    registry.park(fr);
    expect(registry.take(params({ lang: 'fr' }))).toBe(fr);
    expect(metrics.state.detachedSessions).toBe(1);
    expect(clock.pending()).toHaveLength(1);
    clock.advance(1000);
    expect(expired).toEqual([en]);
    expect(metrics.state.detachedSessions).toBe(0);
  });

  it('hands every session over at shutdown, its timer cleared', () => {
    const { clock, metrics, expired, registry, log } = setup();
    const a = fakeSession(params(), log);
    const b = fakeSession(params({ sessionId: 'other' }), log);
    registry.park(a);
    registry.park(b);
    expect(registry.clear()).toEqual([a, b]);
    expect(metrics.state.detachedSessions).toBe(0);
    expect(clock.pending()).toEqual([]);
    clock.advance(5000);
    expect(expired).toEqual([]);
  });
});

describe('SessionShell while its client is away', () => {
  function socket() {
    const sent: Record<string, unknown>[] = [];
    const closes: [number | undefined, string | undefined][] = [];
    const client: ClientSocket = { send: (text) => void sent.push(JSON.parse(text) as Record<string, unknown>), close: (code, reason) => void closes.push([code, reason]) };
    return { client, sent, closes };
  }
  let n = 0;
  const result = (isInterim: boolean, text = `t${++n}`): TranscriptionResult => ({
    event: 'transcription-result',
    type: 'transcription-result',
    transcript: [{ text }],
    is_interim: isInterim,
    message_id: `m${n}`,
    participant: { id: 'abc', tag: 'abc-1' },
    timestamp: 1,
  });
  const base = { application: 'opus-transcriber-proxy', version: '0', runtime: 'node' as const, providersAvailable: ['openai'] };

  it('holds finals, not interims, pongs or errors, and sends them on the next socket after its info, under its flags', () => {
    const { log } = logger();
    const shell = new SessionShell(params(), socket().client, { log, metrics: createMetrics() });
    shell.detach();
    expect(shell.attached).toBe(false);
    const finals = [result(false), result(false)];
    shell.clientSink.deliver(result(true));
    shell.clientSink.deliver(finals[0]!);
    shell.pong(1);
    shell.refuse('invalid_json', 'message is not JSON');
    shell.clientSink.deliver(finals[1]!);
    const next = socket();
    shell.attach(params({ sendBackInterim: true }), next.client);
    expect(next.sent).toEqual([]);
    shell.info(base);
    const later = result(true);
    shell.clientSink.deliver(later);
    expect(next.sent).toEqual([expect.objectContaining({ event: 'info', sessionId: 'conf' }), ...finals, later]);
  });

  it('applies the new socket\'s flags to what it held: none back without sendBack', () => {
    const { log } = logger();
    const shell = new SessionShell(params(), socket().client, { log, metrics: createMetrics() });
    shell.detach();
    shell.clientSink.deliver(result(false));
    const next = socket();
    shell.attach(params({ sendBack: false, useDispatcher: true }), next.client);
    shell.info(base);
    expect(next.sent.map((m) => m.event)).toEqual(['info']);
  });

  it(`holds at most ${HELD_FINALS_LIMIT} finals, the newest, and says how many were dropped`, () => {
    const { log, lines } = logger();
    const shell = new SessionShell(params(), socket().client, { log, metrics: createMetrics() });
    shell.detach();
    const all = Array.from({ length: HELD_FINALS_LIMIT + 5 }, () => result(false));
    for (const r of all) shell.clientSink.deliver(r);
    const next = socket();
    shell.attach(params(), next.client);
    shell.info(base);
    expect(next.sent.slice(1)).toEqual(all.slice(5));
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'finals held for the client dropped', dropped: 5 }));
  });

  it('is not resumable once the proxy closed the socket itself, or the session ended', () => {
    const { log } = logger();
    const closedByUs = new SessionShell(params(), socket().client, { log, metrics: createMetrics() });
    expect(closedByUs.resumable).toBe(true);
    closedByUs.close(1008, 'participant limit of 1 reached');
    expect(closedByUs.resumable).toBe(false);
    const ended = new SessionShell(params(), socket().client, { log, metrics: createMetrics() });
    ended.closed({});
    expect(ended.resumable).toBe(false);
  });
  it(`sends again, first and with the same message_id, the finals it sent in the last ${RESEND_WINDOW_MS} ms before the drop (they may have died with the socket), not older ones or interims`, () => {
    const { log, lines } = logger();
    const clock = new ManualClock();
    const first = socket();
    const shell = new SessionShell(params({ sendBackInterim: true }), first.client, { log, metrics: createMetrics(), timers: clock });
    const old = result(false);
    shell.clientSink.deliver(old);
    clock.advance(RESEND_WINDOW_MS + 1);
    const recent = [result(false), result(false)];
    shell.clientSink.deliver(recent[0]!);
    shell.clientSink.deliver(result(true));
    clock.advance(RESEND_WINDOW_MS - 1);
    shell.clientSink.deliver(recent[1]!);
    clock.advance(1);
    shell.detach();
    const whileAway = result(false);
    shell.clientSink.deliver(whileAway);
    const next = socket();
    shell.attach(params(), next.client);
    shell.info(base);
    expect(first.sent.filter((m) => m.is_interim === false)).toEqual([old, ...recent]);
    expect(next.sent.slice(1)).toEqual([...recent, whileAway]);
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'finals sent just before the drop will be sent again', finals: 2 }));
  });
});
