/**
 * The relay a Worker runs for a session whose transcriber is elsewhere, on a manual clock:
 * what the client and the transcriber see of each other, the keep-alive while the session
 * lives, and the close codes when the transcriber cannot be had.
 */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import type { OutboundSocket, SocketHandlers } from '../../src/net.ts';
import type { TranscriptionResult } from '../../src/protocol/outbound.ts';
import type { TranscribeParams } from '../../src/protocol/query.ts';
import { RelaySession, transcriberQuery } from '../../src/runtime/workerd/relay.ts';
import type { TranscriptSink } from '../../src/session/ports.ts';
import { SessionShell } from '../../src/session/shell.ts';
import type { Timers } from '../../src/util/timers.ts';
import { transcribeParams } from '../helpers/params.ts';

class ManualClock implements Timers {
  private t = 0;
  private seq = 0;
  private readonly due = new Map<number, { at: number; fn: () => void; every?: number }>();
  now = () => this.t;
  setTimeout = (fn: () => void, ms: number) => this.add(fn, ms);
  setInterval = (fn: () => void, ms: number) => this.add(fn, ms, ms);
  clearTimeout = (h: unknown) => void this.due.delete(h as number);
  clearInterval = (h: unknown) => void this.due.delete(h as number);
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const next = [...this.due.entries()].filter(([, d]) => d.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!next) break;
      const [id, d] = next;
      this.t = d.at;
      if (d.every === undefined) this.due.delete(id);
      else d.at += d.every;
      d.fn();
    }
    this.t = end;
  }
  private add(fn: () => void, ms: number, every?: number): number {
    const id = ++this.seq;
    this.due.set(id, { at: this.t + ms, fn, every });
    return id;
  }
}

const PARAMS = transcribeParams({ sessionId: 'conf-1', lang: 'en' });

const result = (interim: boolean, text: string): string =>
  JSON.stringify({
    event: 'transcription-result',
    type: 'transcription-result',
    transcript: [{ text }],
    is_interim: interim,
    message_id: 'm-1',
    participant: { id: 'abc123', tag: 'abc123-a0' },
    timestamp: 1768341932350,
  } satisfies TranscriptionResult);

function setup(options: { params?: Partial<TranscribeParams>; backlogBytes?: number; dispatcher?: boolean } = {}) {
  const clock = new ManualClock();
  const metrics = createMetrics();
  const toClient: string[] = [];
  const client = { closed: undefined as { code?: number; reason?: string } | undefined };
  const toTranscriber: (string | Uint8Array)[] = [];
  const delivered: TranscriptionResult[] = [];
  let renewals = 0;
  let finished = 0;
  let handlers: SocketHandlers | undefined;
  let link: { resolve: (s: OutboundSocket) => void; reject: (e: Error) => void } | undefined;
  const upstream: OutboundSocket & { closed?: number } = {
    send: (data) => void toTranscriber.push(data),
    close: (code) => void (upstream.closed = code),
    bufferedAmount: 0,
  };
  const sinks: TranscriptSink[] = options.dispatcher
    ? [{ outlivesClient: true, deliver: (r) => void delivered.push(r), close: async () => {} }]
    : [];
  const shell = new SessionShell(
    { ...PARAMS, ...options.params },
    { send: (text) => void toClient.push(text), close: (code, reason) => void (client.closed = { code, reason }) },
    { log: createLogger('error'), metrics },
  );
  const relay = new RelaySession(
    shell,
    sinks,
    { metrics, timers: clock },
    {
      connect: (h) => {
        handlers = h;
        return new Promise((resolve, reject) => (link = { resolve, reject }));
      },
      keepAlive: { everyMs: 1_000, renew: async () => void renewals++ },
      backlogBytes: options.backlogBytes ?? 1 << 20,
      drainMs: 4_000,
      finished: async () => void finished++,
    },
  );
  return {
    relay,
    clock,
    metrics,
    toClient,
    client,
    toTranscriber,
    delivered,
    upstream,
    renewals: () => renewals,
    finished: () => finished,
    fromTranscriber: (text: string) => handlers!.message(text),
    transcriberCloses: (code: number, reason = '') => handlers!.close(code, reason),
    linked: async () => {
      link!.resolve(upstream);
      await Promise.resolve();
      await Promise.resolve();
    },
    unavailable: async () => {
      link!.reject(new Error('no container instance'));
      await new Promise((r) => setTimeout(r, 0));
    },
  };
}

const media = (tag: string, chunk: number) => JSON.stringify({ event: 'media', media: { tag, chunk, timestamp: chunk * 960, payload: 'AAAA' } });
const start = (tag: string) => JSON.stringify({ event: 'start', start: { tag, mediaFormat: { encoding: 'opus' } } });

describe('relay', () => {
  it('asks the transcriber for what the client or a sink may want, and never for its own dispatcher', () => {
    expect(Object.fromEntries(transcriberQuery(PARAMS))).toEqual({
      sessionId: 'conf-1',
      sendBack: 'true',
      useDispatcher: 'false',
      provider: 'openai',
      encoding: 'opus',
      lang: 'en',
    });
    expect(transcriberQuery({ ...PARAMS, sendBackInterim: true }).get('sendBackInterim')).toBe('true');
    // Interims go back only with sendBack too.
    expect(transcriberQuery({ ...PARAMS, sendBack: false, sendBackInterim: true }).get('sendBackInterim')).toBeNull();
  });

  it('holds frames until the transcriber answers, then sends them unchanged and in order; pings are answered here', async () => {
    const s = setup();
    s.relay.handle(start('a-1'));
    s.relay.handle('{"event":"ping","id":{"n":1}}');
    s.relay.handle(media('a-1', 1));
    expect(s.toClient).toEqual(['{"event":"pong","id":{"n":1}}']);
    expect(s.toTranscriber).toEqual([]);
    await s.linked();
    s.relay.handle(media('a-1', 2));
    expect(s.toTranscriber).toEqual([start('a-1'), media('a-1', 1), media('a-1', 2)]);
  });

  it('drops media beyond the backlog while the transcriber starts, but keeps start and stop', async () => {
    const s = setup({ backlogBytes: media('a-1', 1).length + media('a-1', 2).length });
    s.relay.handle(media('a-1', 1));
    s.relay.handle(media('a-1', 2));
    s.relay.handle(media('a-1', 3));
    s.relay.handle(start('b-1'));
    await s.linked();
    expect(s.toTranscriber).toEqual([media('a-1', 1), media('a-1', 2), start('b-1')]);
    expect(s.metrics.inputErrors.get({ reason: 'relay_backlog_full' })).toBe(1);
  });

  it('passes transcripts back byte for byte as the client asked, and hands every one to the sinks', async () => {
    const s = setup({ dispatcher: true });
    await s.linked();
    s.fromTranscriber('{"event":"info","runtime":"node"}');
    s.fromTranscriber(result(true, 'hel'));
    s.fromTranscriber(result(false, 'hello'));
    s.fromTranscriber('{"event":"pong","id":3}');
    expect(s.toClient).toEqual([result(false, 'hello'), '{"event":"pong","id":3}']);
    expect(s.delivered.map((r) => [r.is_interim, r.transcript[0].text])).toEqual([
      [true, 'hel'],
      [false, 'hello'],
    ]);
  });

  it('keeps the transcriber awake while the session lives, and stops when it ends', async () => {
    const s = setup();
    await s.linked();
    s.clock.advance(3_500);
    expect(s.renewals()).toBe(3);
    await s.relay.close();
    s.clock.advance(5_000);
    expect(s.renewals()).toBe(3);
    expect(s.upstream.closed).toBe(1000);
  });

  it('closes the client with 1012 when the link dies, 1008 when the transcriber refuses on policy', async () => {
    const lost = setup();
    await lost.linked();
    lost.transcriberCloses(1000);
    expect(lost.client.closed).toEqual({ code: 1012, reason: 'transcription container restarted; reconnect' });
    expect(lost.metrics.relayErrors.get({ reason: 'lost' })).toBe(1);

    const policy = setup();
    await policy.linked();
    policy.transcriberCloses(1008, 'participant limit of 2 reached');
    expect(policy.client.closed).toEqual({ code: 1008, reason: 'participant limit of 2 reached' });
  });

  it('closes the client with 1013 when no transcriber can be reached', async () => {
    const s = setup();
    s.relay.handle(media('a-1', 1));
    await s.unavailable();
    expect(s.client.closed).toEqual({ code: 1013, reason: 'transcription container unavailable; try again later' });
    expect(s.metrics.relayErrors.get({ reason: 'unavailable' })).toBe(1);
  });

  it('when the client leaves with finals due to a sink, stops its streams and waits for them', async () => {
    const s = setup({ dispatcher: true });
    await s.linked();
    s.relay.handle(start('a-1'));
    s.relay.handle(media('b-1', 1));
    const closed = s.relay.close();
    await Promise.resolve();
    await Promise.resolve();
    expect(s.toTranscriber.slice(2).map((f) => JSON.parse(f as string))).toEqual([
      { event: 'stop', stop: { tag: 'a-1' } },
      { event: 'stop', stop: { tag: 'b-1' } },
    ]);
    s.fromTranscriber(result(false, 'last words'));
    expect(s.delivered.map((r) => r.transcript[0].text)).toEqual(['last words']);
    expect(s.toClient).toEqual([]);
    expect(s.upstream.closed).toBeUndefined();
    s.clock.advance(4_000);
    await closed;
    expect(s.upstream.closed).toBe(1000);
  });

  it('says once that the session is over, however it ends: the router frees its place', async () => {
    const left = setup();
    await left.linked();
    await left.relay.close();
    await left.relay.close();
    expect(left.finished()).toBe(1);

    const lost = setup();
    await lost.linked();
    lost.transcriberCloses(1006);
    await new Promise((r) => setTimeout(r, 0));
    expect(lost.client.closed?.code).toBe(1012);
    expect(lost.finished()).toBe(1);

    const never = setup();
    await never.unavailable();
    expect(never.client.closed?.code).toBe(1013);
    expect(never.finished()).toBe(1);
  });
});
