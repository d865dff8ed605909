/**
 * What every session engine does the same way for its client socket (SessionShell): the
 * opening `info`, pongs, the sendBack filter, the session counters, backpressure, and refused
 * input counted and answered without flooding the log or the client. What it holds while
 * the client is away is in resumption.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import type { TranscriptionResult } from '../../src/protocol/outbound.ts';
import type { ClientSocket } from '../../src/session/ports.ts';
import { SessionShell } from '../../src/session/shell.ts';
import { transcribeParams } from '../helpers/params.ts';

const params = transcribeParams;

interface Line {
  level: string;
  msg: string;
  [k: string]: unknown;
}

function setup(p = params()) {
  const sent: Record<string, unknown>[] = [];
  const calls: string[] = [];
  const client: ClientSocket = {
    send: (text) => void sent.push(JSON.parse(text) as Record<string, unknown>),
    close: (code, reason) => void calls.push(`close ${code} ${reason}`),
    pause: () => void calls.push('pause'),
    resume: () => void calls.push('resume'),
  };
  const lines: Line[] = [];
  const log = createLogger('debug', (level, line) => void lines.push({ level, ...(JSON.parse(line) as { msg: string }) }));
  const metrics = createMetrics();
  const shell = new SessionShell(p, client, { log, metrics });
  return { shell, sent, calls, lines, metrics, client };
}

let n = 0;
const result = (isInterim: boolean): TranscriptionResult => ({
  event: 'transcription-result',
  type: 'transcription-result',
  transcript: [{ text: `t${++n}` }],
  is_interim: isInterim,
  message_id: `m${n}`,
  participant: { id: 'abc', tag: 'abc-1' },
  timestamp: 1,
});

const base = { application: 'opus-transcriber-proxy', version: '1.2.3', runtime: 'node' as const, providersAvailable: ['openai', 'deepgram'] };

describe('SessionShell', () => {
  it('counts the session once opened and once closed, logging its end with the fields given', () => {
    const { shell, metrics, lines } = setup();
    expect(metrics.sessionsTotal.get()).toBe(1);
    expect(metrics.state.sessions).toBe(1);
    shell.closed({ reason: 'client closed', finals: 3 });
    shell.closed({ reason: 'again' });
    expect(metrics.state.sessions).toBe(0);
    expect(metrics.sessionsTotal.get()).toBe(1);
    expect(lines.filter((l) => l.msg === 'session closed')).toEqual([
      expect.objectContaining({ level: 'info', session: 'conf', reason: 'client closed', finals: 3 }),
    ]);
  });

  it('opens with info: the server, the provider and the sessionId (null when none)', () => {
    const a = setup();
    a.shell.info(base);
    expect(a.sent).toEqual([{ event: 'info', ...base, provider: 'openai', sessionId: 'conf' }]);
    const b = setup(params({ sessionId: undefined, provider: 'deepgram' }));
    b.shell.info(base);
    expect(b.sent).toEqual([{ event: 'info', ...base, provider: 'deepgram', sessionId: null }]);
    expect(b.lines).toEqual([]);
  });

  it('answers pings with their id, and refuses one nested too deeply to echo', () => {
    const { shell, sent, metrics } = setup();
    shell.pong(undefined);
    shell.pong(7);
    shell.pong({ a: [1] });
    let deep: unknown = 1;
    for (let i = 0; i < 20_000; i++) deep = [deep];
    shell.pong(deep);
    expect(sent).toEqual([
      { event: 'pong' },
      { event: 'pong', id: 7 },
      { event: 'pong', id: { a: [1] } },
      { event: 'error', code: 'invalid_ping', message: 'ping: its id is nested too deeply to echo' },
    ]);
    expect(metrics.inputErrors.get({ reason: 'invalid_ping' })).toBe(1);
  });

  it('sends results as far as the sendBack flags ask', () => {
    const all = setup(params({ sendBackInterim: true }));
    const both = [result(true), result(false)];
    for (const r of both) all.shell.clientSink.deliver(r);
    expect(all.sent).toEqual(both);
    expect([all.shell.wants(true), all.shell.wants(false)]).toEqual([true, true]);
    const finalsOnly = setup();
    const f = result(false);
    finalsOnly.shell.clientSink.deliver(result(true));
    finalsOnly.shell.clientSink.deliver(f);
    expect(finalsOnly.sent).toEqual([f]);
    expect([finalsOnly.shell.wants(true), finalsOnly.shell.wants(false)]).toEqual([false, true]);
    const none = setup(params({ sendBack: false, sendBackInterim: true }));
    none.shell.clientSink.deliver(result(true));
    none.shell.clientSink.deliver(result(false));
    expect(none.sent).toEqual([]);
    expect([none.shell.wants(true), none.shell.wants(false)]).toEqual([false, false]);
    expect(finalsOnly.shell.clientSink.outlivesClient).toBe(false);
  });

  it('a new socket flags apply from its attach on', () => {
    const { shell, sent } = setup(params({ sendBack: false }));
    expect(shell.wants(false)).toBe(false);
    const later: Record<string, unknown>[] = [];
    shell.attach(params({ sendBack: true, sendBackInterim: true }), { send: (t) => void later.push(JSON.parse(t) as Record<string, unknown>), close: () => undefined });
    expect(shell.attached).toBe(true);
    expect(shell.params.sendBackInterim).toBe(true);
    expect(shell.wants(true)).toBe(true);
    const r = result(true);
    shell.clientSink.deliver(r);
    expect(later).toEqual([r]);
    expect(sent).toEqual([]);
  });

  it('delivers nothing, and holds nothing, once its sink is closed', async () => {
    const { shell, sent } = setup();
    await shell.clientSink.close();
    shell.clientSink.deliver(result(false));
    shell.detach();
    shell.clientSink.deliver(result(false));
    const later: Record<string, unknown>[] = [];
    shell.attach(params(), { send: (t) => void later.push(JSON.parse(t) as Record<string, unknown>), close: () => undefined });
    shell.info(base);
    expect(sent).toEqual([]);
    expect(later.map((m) => m.event)).toEqual(['info']);
  });

  it('passes text, closes and backpressure to the socket attached, and nothing while none is', () => {
    const { shell, sent, calls } = setup();
    shell.send('{"event":"x"}');
    shell.readFromClient(false);
    shell.readFromClient(true);
    shell.close(1008, 'no');
    expect(sent).toEqual([{ event: 'x' }]);
    expect(calls).toEqual(['pause', 'resume', 'close 1008 no']);
    shell.detach();
    shell.send('{"event":"y"}');
    shell.readFromClient(false);
    shell.pong(1);
    shell.refuse('invalid_json', 'x');
    shell.close(1000, 'bye');
    expect(sent).toEqual([{ event: 'x' }]);
    expect(calls).toEqual(['pause', 'resume', 'close 1008 no']);
    // A socket that cannot stop reading is simply read.
    shell.attach(params(), { send: () => undefined, close: () => undefined });
    shell.readFromClient(false);
    shell.readFromClient(true);
  });

  it('refused input: counted every time, logged and answered the first five times and then every power of ten, per reason', () => {
    const { shell, sent, lines, metrics } = setup();
    for (let i = 0; i < 100; i++) shell.refuse('invalid_json', `bad ${i}`, 'tag-1');
    shell.refuse('binary_frame', 'other reason');
    expect(metrics.inputErrors.get({ reason: 'invalid_json' })).toBe(100);
    expect(metrics.inputErrors.get({ reason: 'binary_frame' })).toBe(1);
    const answered = sent.filter((m) => m.code === 'invalid_json');
    expect(answered.map((m) => m.message)).toEqual(['bad 0', 'bad 1', 'bad 2', 'bad 3', 'bad 4', 'bad 9', 'bad 99']);
    expect(answered[0]).toEqual({ event: 'error', code: 'invalid_json', message: 'bad 0', tag: 'tag-1' });
    expect(sent.filter((m) => m.code === 'binary_frame')).toEqual([{ event: 'error', code: 'binary_frame', message: 'other reason' }]);
    const logged = lines.filter((l) => l.msg === 'input refused' && l.reason === 'invalid_json');
    expect(logged.map((l) => l.occurrences)).toEqual([1, 2, 3, 4, 5, 10, 100]);
    expect(logged[5]).toMatchObject({ level: 'warn', session: 'conf', detail: 'bad 9', tag: 'tag-1' });
  });

  it('refused input counted elsewhere, or not to be logged, is still answered', () => {
    const { shell, sent, lines, metrics } = setup();
    shell.refuse('invalid_json', 'counted by another metric', undefined, { count: false });
    shell.refuse('invalid_json', 'not logged', undefined, { log: false });
    expect(metrics.inputErrors.get({ reason: 'invalid_json' })).toBe(1);
    expect(sent.map((m) => m.message)).toEqual(['counted by another metric', 'not logged']);
    expect(lines.filter((l) => l.msg === 'input refused').map((l) => l.detail)).toEqual(['counted by another metric']);
    expect(shell.countRefusal('opus_decode_failed', false)).toBe(1);
    expect(shell.countRefusal('opus_decode_failed')).toBe(2);
    expect(metrics.inputErrors.get({ reason: 'opus_decode_failed' })).toBe(1);
  });
});
