/**
 * The sessions of a Node or Deno server (localSessions), as clients see them: the session
 * limit, resumption after a socket that went away (RESUME_GRACE_MS, on the manual clock),
 * the drain at shutdown, and /health learning of a refused key from the sessions' own attempts.
 */
import { describe, expect, it } from 'vitest';
import type { TestClient } from '../helpers/client.ts';
import { settle } from '../helpers/clock.ts';
import { clockedOpenAI } from '../helpers/clocked-server.ts';
import { until } from '../helpers/wait.ts';

const start = clockedOpenAI();

function l16(ms = 20): string {
  const n = (24_000 * ms) / 1000;
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 24_000)), i * 2);
  return b.toString('base64');
}

/** One second of a tone from `tag`, l16 at 24 kHz. */
function speak(client: TestClient, tag = 'abc-1') {
  client.send({ event: 'start', start: { tag, mediaFormat: { encoding: 'l16', sampleRate: 24000 } } });
  for (let i = 0; i < 50; i++) client.send({ event: 'media', media: { tag, payload: l16() } });
}

describe('localSessions', () => {
  it(`refuses a session beyond MAX_SESSIONS with 503 and says why, and takes one again once a session ended`, async () => {
    const { server: s } = await start({ MAX_SESSIONS: '1' });
    const first = await s.connect();
    const refused = await s.connect().catch((e: { status: number; body: string }) => e);
    expect(refused).toMatchObject({ status: 503, body: 'session limit of 1 reached on this server (MAX_SESSIONS); try again later or another instance' });
    expect(s.metrics.refused.get({ reason: 'max_sessions' })).toBe(1);
    await first.close();
    await until(() => s.metrics.state.sessions === 0, 'the first session to end');
    const again = await s.connect();
    await again.waitFor(() => again.messages.length === 1, 'info');
    expect(again.messages[0]!.event).toBe('info');
  });

  it('keeps a session whose socket went away for RESUME_GRACE_MS, holds its finals, and gives them to the client that comes back', async () => {
    const { server: s, fake: f } = await start({ RESUME_GRACE_MS: '3000', FORCE_COMMIT_TIMEOUT: '1' });
    const first = await s.connect({ sessionId: 'resume-me' });
    speak(first);
    await f.waitFor(() => f.connections[0]?.audioMs === 1000, 'the audio at the provider');
    first.ws.close(4000, 'network blip');
    await until(() => s.metrics.state.detachedSessions === 1, 'the session detached');
    expect(s.metrics.state.sessions).toBe(1);
    // The idle commit goes on while the client is away; its final is held.
    s.clock.advance(1_000);
    await f.waitFor(() => f.connections[0]!.completed().length === 1, 'the final at the provider');
    await settle();
    s.clock.advance(1_999);
    const back = await s.connect({ sessionId: 'resume-me' });
    await back.waitFor(() => back.finals().length === 1, 'the held final');
    expect(back.messages[0]).toMatchObject({ event: 'info', sessionId: 'resume-me' });
    expect(back.finals()[0]!.transcript[0]!.text).toBe(f.connections[0]!.completed()[0]);
    expect(s.metrics.sessionsResumed.get()).toBe(1);
    expect(s.metrics.state.detachedSessions).toBe(0);
    expect(s.metrics.state.sessions).toBe(1);
    // Still the same provider stream.
    expect(f.connections).toHaveLength(1);
    await back.close();
    await until(() => s.metrics.state.sessions === 0, 'the session to end');
    expect(s.metrics.state.detachedSessions).toBe(0);
  });

  it('ends a detached session at the end of its grace on the clock, not before', async () => {
    const { server: s, fake: f } = await start({ RESUME_GRACE_MS: '3000' });
    const first = await s.connect({ sessionId: 'gone' });
    speak(first);
    await f.waitFor(() => f.connections[0]?.audioMs === 1000, 'the audio at the provider');
    first.ws.close(4001, 'away');
    await until(() => s.metrics.state.detachedSessions === 1, 'the session detached');
    s.clock.advance(2_999);
    await settle();
    expect(s.metrics.state.sessions).toBe(1);
    s.clock.advance(1);
    await until(() => s.metrics.state.sessions === 0, 'the session to end');
    expect(s.metrics.state.detachedSessions).toBe(0);
    await f.waitFor(() => f.connections[0]!.closedWith !== undefined, 'the provider stream closed');
    const later = await s.connect({ sessionId: 'gone' });
    await later.waitFor(() => later.messages.length === 1, 'info');
    expect(s.metrics.sessionsResumed.get()).toBe(0);
  });

  it('a normal closure (1000) ends the session at once: nothing to resume', async () => {
    const { server: s } = await start({ RESUME_GRACE_MS: '3000' });
    const client = await s.connect({ sessionId: 'done' });
    await client.close();
    await until(() => s.metrics.state.sessions === 0, 'the session to end');
    expect(s.metrics.state.detachedSessions).toBe(0);
  });

  it('without RESUME_GRACE_MS a socket that went away ends its session', async () => {
    const { server: s } = await start({ RESUME_GRACE_MS: '0' });
    const client = await s.connect({ sessionId: 'x' });
    client.ws.close(4000, 'blip');
    await until(() => s.metrics.state.sessions === 0, 'the session to end');
    expect(s.metrics.state.detachedSessions).toBe(0);
  });

  it('at shutdown, a session commits its pending audio and gets its final from the provider; a detached one ends', async () => {
    const { server: s, fake: f } = await start({ RESUME_GRACE_MS: '60000' });
    const away = await s.connect({ sessionId: 'away' });
    away.ws.close(4000, 'blip');
    await until(() => s.metrics.state.detachedSessions === 1, 'the session detached');
    const client = await s.connect();
    speak(client);
    await f.waitFor(() => f.connections[0]?.audioMs === 1000, 'the audio at the provider');
    await s.close();
    // Drained, not dropped: the audio was committed and transcribed before the stream closed.
    expect(f.connections[0]!.commits).toBe(1);
    expect(f.connections[0]!.completed()).toHaveLength(1);
    expect(s.metrics.state.sessions).toBe(0);
    expect(s.metrics.state.detachedSessions).toBe(0);
  });

  it('/health is degraded once the provider refused the key of a session', async () => {
    const { server: s, fake: f } = await start();
    const health = async () => {
      const res = await fetch(`http://127.0.0.1:${s.port}/health`);
      return { status: res.status, body: (await res.json()) as { status: string; reasons?: string[] } };
    };
    expect((await health()).status).toBe(200);
    f.faults.refuseHandshake = 401;
    const client = await s.connect();
    speak(client);
    await until(() => s.connector.attempts.length >= 1 && f.refused >= 1, 'the refused attempt');
    await until(async () => (await health()).status === 503, 'degraded');
    const { body } = await health();
    expect(body.status).toBe('degraded');
    expect(body.reasons).toHaveLength(1);
    expect(body.reasons![0]).toMatch(/^openai: the API key was refused \(OpenAI refused the connection: HTTP 401/);
  });
});
