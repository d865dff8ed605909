/**
 * Secrets never reach a log line, an error message or the client: the dispatcher's handshake
 * headers (and credentials in its URL), and the Gemini key (which travels in the URL).
 *
 * - The redaction helpers, directly.
 * - The Gemini provider's own masking (src/providers/gemini.ts), built without the registry's
 *   redacting wrapper, against the fake Live API echoing the key back.
 * - End to end through the real Node server: fakes that echo the secret back (the dispatcher
 *   answering 503 with the header value in its body and closing with it as the close reason;
 *   Gemini quoting the key, and the URL with `?key=`, in close reasons and errors), with
 *   every log line, every client message, /metrics and /health scanned for any piece of it.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { deepgram } from '../../src/providers/deepgram.ts';
import { createGemini, type GeminiConfig } from '../../src/providers/gemini.ts';
import { openai } from '../../src/providers/openai.ts';
import { ProviderError, type ConnectionListener, type ProviderConnection } from '../../src/providers/provider.ts';
import { createLogger } from '../../src/log.ts';
import { ConnectError, type SocketConnector } from '../../src/net.ts';
import { nodeBase64 } from '../../src/runtime/node/base64.ts';
import { nodeConnector } from '../../src/runtime/node/connector.ts';
import { maskSecret, redactUrl, safeUrl, secretRedactor } from '../../src/util/redact.ts';
import { FakeDispatcher } from '../fakes/dispatcher.ts';
import { FakeGeminiLive, LIVE_PATH, type GeminiFaults } from '../fakes/gemini-live.ts';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { TAG_A, replayJvb, type TestClient } from '../helpers/client.ts';
import { ManualClock } from '../helpers/clock.ts';
import { readCapture } from '../helpers/fixtures.ts';
import { onlyTag, startProviderServer, type ProviderServer } from '../helpers/provider-server.ts';
import { until } from '../helpers/wait.ts';

/** Every `size`-character piece of `secret`: a partial leak is a leak. */
function pieces(secret: string, size = 10): string[] {
  const out: string[] = [];
  for (let i = 0; i + size <= secret.length; i++) out.push(secret.slice(i, i + size));
  return out;
}

/** Fails naming the first text that holds a piece of one of `secrets`. */
function expectNoSecret(texts: readonly string[], secrets: readonly string[]): void {
  for (const secret of secrets) {
    for (const piece of pieces(secret)) {
      const found = texts.find((t) => t.includes(piece));
      expect(found, `"${piece}" (from a secret) appears in: ${found}`).toBeUndefined();
    }
  }
}

/** A key in Google's format (AIza + 35 of [A-Za-z0-9_-]), random so that any piece of it is telling. */
const googleKey = () => `AIza${randomBytes(27).toString('base64url').slice(0, 35)}`;

describe('redaction helpers', () => {
  it('secretRedactor masks a header value whole and by its parts, longest first, leaving short parts alone', () => {
    const token = `tok-${randomUUID()}`;
    const redact = secretRedactor([`Bearer ${token}`, 'abc', 'k3y-value']);
    expect(redact(`Authorization: Bearer ${token}`)).toBe('Authorization: ***');
    // A library may quote the token alone.
    expect(redact(`token ${token} refused`)).toBe('token *** refused');
    expect(redact('x k3y-value y k3y-value')).toBe('x *** y ***');
    // Parts under 4 characters would mask half of any text: left alone.
    expect(redact('abc is fine')).toBe('abc is fine');
    expect(secretRedactor([])('nothing to hide')).toBe('nothing to hide');
    expect(secretRedactor([''])('nothing to hide')).toBe('nothing to hide');
  });

  it('safeUrl drops user info and masks credential-like query values, keeping the rest', () => {
    const safe = safeUrl('wss://user:pa55word@dispatch.example/ingest?region=eu&token=t0k&api_key=k3y&X-Signature=s1g&sessionId=s1');
    expect(safe).not.toMatch(/user|pa55word|t0k|k3y|s1g/);
    const u = new URL(safe);
    expect(u.searchParams.get('region')).toBe('eu');
    expect(u.searchParams.get('sessionId')).toBe('s1');
    expect(u.searchParams.get('token')).toBe('***');
    expect(safeUrl('not a url at all')).toBe('(unparsable URL)');
  });

  it('maskSecret and redactUrl mask a provider key, raw or as a URL parameter', () => {
    const key = googleKey();
    expect(maskSecret(`API key not valid: ${key}.`, key)).toBe('API key not valid: ***.');
    expect(maskSecret('no key here', '')).toBe('no key here');
    expect(redactUrl(`wss://h/p?key=${encodeURIComponent('a+b/c')}&alt=ws`)).toBe('wss://h/p?key=***&alt=ws');
    expect(redactUrl('wss://h/p?alt=ws&access_token=xyz')).toBe('wss://h/p?alt=ws&access_token=***');
  });
});

describe('Gemini provider masks its key in what it raises', () => {
  let fake: FakeGeminiLive | undefined;
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });

  interface Seen {
    errors: ProviderError[];
    closed: ProviderError[];
  }
  const listener = (seen: Seen): ConnectionListener => ({
    transcript: () => undefined,
    error: (e) => void seen.errors.push(e),
    closed: (e) => void seen.closed.push(e),
    expiring: () => undefined,
  });

  async function gemini(apiKey: string, connector: SocketConnector = nodeConnector) {
    fake = await FakeGeminiLive.start({ apiKey });
    const config: GeminiConfig = { apiKey, baseUrl: fake.baseUrl, model: 'gemini-3.5-transcribe-live' };
    // Built directly: the registry's redacting wrapper is not in the way.
    return createGemini(config, { connector, base64: nodeBase64, timers: new ManualClock() });
  }
  const connect = (provider: Awaited<ReturnType<typeof gemini>>, seen: Seen): Promise<ProviderConnection> =>
    provider.connect({ format: { kind: 'pcm16', sampleRate: 16000 }, log: createLogger('error') }, listener(seen));
  const refusal = (p: Promise<unknown>) =>
    p.then(
      () => {
        throw new Error('connected');
      },
      (e: unknown) => e as ProviderError,
    );

  it('in a handshake error that quotes the URL, even with a key that URL-encoding changes', async () => {
    // A runtime whose handshake errors quote the URL (the key is URL-encoded there).
    const key = `AIza+${randomUUID()}/x=y`;
    const quoting: SocketConnector = {
      supportsHeaders: nodeConnector.supportsHeaders,
      connect: (url, options, handlers) =>
        nodeConnector.connect(url, options, handlers).catch((e: ConnectError) => {
          throw new ConnectError(`${e.message} for ${url}`, e.status, e.refusal);
        }),
    };
    const provider = await gemini(key, quoting);
    fake!.faults.refuseHandshake = 503;
    const err = await refusal(connect(provider, { errors: [], closed: [] }));
    expect(err.message).toContain('handshake refused with HTTP 503 for ws://127.0.0.1');
    expect(err.message).toContain('?key=***');
    expectNoSecret([err.message], [key, encodeURIComponent(key)]);
  });

  it('in a handshake error that quotes the raw key', async () => {
    const key = googleKey();
    const quoting: SocketConnector = {
      supportsHeaders: nodeConnector.supportsHeaders,
      connect: (url, options, handlers) =>
        nodeConnector.connect(url, options, handlers).catch((e: ConnectError) => {
          throw new ConnectError(`${e.message} (credentials ${key})`, e.status, e.refusal);
        }),
    };
    const provider = await gemini(key, quoting);
    fake!.faults.refuseHandshake = 503;
    const err = await refusal(connect(provider, { errors: [], closed: [] }));
    expect(err.message).toContain('(credentials ***)');
    expectNoSecret([err.message], [key]);
  });

  it('in a setup refusal whose close reason quotes the key', async () => {
    const key = googleKey();
    const provider = await gemini(key);
    fake!.faults.refuseSetup = { code: 1007, reason: `API key not valid: ${key}` };
    const err = await refusal(connect(provider, { errors: [], closed: [] }));
    expect(err).toMatchObject({ kind: 'auth', message: 'Gemini refused the session (1007 API key not valid: ***)' });
  });

  it('in a close, mid-stream, whose reason quotes the URL with ?key=', async () => {
    const key = googleKey();
    const provider = await gemini(key);
    fake!.faults.closeAfterAudio = { messages: 3, code: 1011, reason: `Internal error for ?key=${key}&alt=ws` };
    const seen: Seen = { errors: [], closed: [] };
    const conn = await connect(provider, seen);
    for (let i = 0; i < 3; i++) conn.send(new Uint8Array(640), 20);
    await until(() => seen.closed.length > 0, 'the close');
    expect(seen.closed[0]!.message).toContain('1011 Internal error for ?key=***');
    expectNoSecret([seen.closed[0]!.message], [key]);
  });

  it('in an error message that quotes the URL, wherever the key falls in it (even across the clipping of long messages)', async () => {
    const key = googleKey();
    const provider = await gemini(key);
    const url = `wss://generativelanguage.googleapis.com${LIVE_PATH}?key=${key}`;
    // A long explanation, so that the 200-character clip of the detail falls inside the key.
    fake!.faults.errorAfterSetup = `Request contains an invalid argument (quota project not set for ${url}); see the documentation`;
    expect(fake!.faults.errorAfterSetup.indexOf(key)).toBeLessThan(200);
    expect(fake!.faults.errorAfterSetup.indexOf(key) + key.length).toBeGreaterThan(200);
    const seen: Seen = { errors: [], closed: [] };
    await connect(provider, seen);
    await until(() => seen.errors.length > 0, 'the error');
    expect(seen.errors[0]!.message).toMatch(/^Gemini error: Request contains an invalid argument/);
    expectNoSecret([seen.errors[0]!.message], [key]);
  });
});

describe('a provider refusal quoting the key, as the registry builds each provider', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  /** Refuses every upgrade with 401 and `body(key)`, as a service echoing the credentials it got. */
  async function refusingServer(body: string): Promise<string> {
    server = createServer((_req, res) => res.writeHead(426).end());
    server.on('upgrade', (_req, socket: Duplex) => {
      socket.end(`HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    return `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  }

  /** A long explanation putting the key across the 200-character clip of the detail. */
  const explanation = (key: string) => `${'Incorrect API key provided. '.repeat(6)}You sent ${key}; check your credentials.`;

  for (const { module, keyVar, baseVar, key, body } of [
    { module: openai, keyVar: 'OPENAI_API_KEY', baseVar: 'OPENAI_BASE_URL', key: `sk-proj-${randomUUID()}`, body: (k: string) => JSON.stringify({ error: { message: explanation(k), type: 'invalid_request_error' } }) },
    { module: deepgram, keyVar: 'DEEPGRAM_API_KEY', baseVar: 'DEEPGRAM_BASE_URL', key: randomBytes(20).toString('hex'), body: (k: string) => JSON.stringify({ err_code: 'INVALID_AUTH', err_msg: explanation(k) }) },
  ]) {
    it(`${module.name}: in the refusal's explanation, wherever the clip falls`, async () => {
      const text = body(key);
      const at = explanation(key).indexOf(key);
      expect(at).toBeLessThan(200);
      expect(at + key.length).toBeGreaterThan(200);
      const baseUrl = await refusingServer(text);
      const provider = module.load({ [keyVar]: key, [baseVar]: baseUrl }).create!({ connector: nodeConnector, base64: nodeBase64, timers: new ManualClock() });
      const listen: ConnectionListener = { transcript: () => undefined, error: () => undefined, closed: () => undefined, expiring: () => undefined };
      const err = await provider.connect({ format: provider.formatFor('opus'), log: createLogger('error') }, listen).then(
        () => undefined,
        (e: unknown) => e as ProviderError,
      );
      expect(err).toMatchObject({ kind: 'auth' });
      expect(err!.message).toContain('Incorrect API key provided.');
      expectNoSecret([err!.message], [key]);
    });
  }
});

describe('end to end: fakes echoing the secret back', () => {
  const records = readCapture();
  let proxy: ProviderServer | undefined;
  let gem: FakeGeminiLive | undefined;
  let oai: FakeOpenAI | undefined;
  let dispatcher: FakeDispatcher | undefined;
  afterEach(async () => {
    await proxy?.close();
    await gem?.close();
    await oai?.close();
    await dispatcher?.close();
    proxy = gem = oai = dispatcher = undefined;
  });

  /** Everything an operator or a client could see. */
  async function everything(p: ProviderServer, clients: TestClient[]): Promise<string[]> {
    const health = await fetch(p.url('/health')).then((r) => r.text());
    return [...p.logs.map((l) => JSON.stringify(l)), ...clients.flatMap((c) => c.messages.map((m) => JSON.stringify(m))), await p.metrics(), health];
  }

  it('the dispatcher’s header value and URL token: echoed in a 503 body and in a close reason', async () => {
    const token = `dsp-${randomUUID()}`;
    const apiKey = randomUUID();
    const urlToken = randomUUID();
    oai = await FakeOpenAI.start();
    dispatcher = await FakeDispatcher.start();
    const d = dispatcher;
    // A dispatcher that quotes the credentials it was sent.
    d.refusalBody = (req) => `unavailable; your credentials were ${String(req.headers.authorization)} / ${String(req.headers['x-api-key'])}`;
    d.refuse();
    proxy = await startProviderServer({
      OPENAI_API_KEY: oai.apiKey,
      OPENAI_BASE_URL: oai.baseUrl,
      PROVIDER_QUEUE_MS: '60000',
      FORCE_COMMIT_TIMEOUT: '0.5',
      DISPATCHER_WS_URL: d.url(`/ingest?token=${urlToken}`),
      DISPATCHER_HEADERS: JSON.stringify({ Authorization: `Bearer ${token}`, 'X-Api-Key': apiKey }),
    });
    const client = await proxy.connect({ sessionId: 'conf-secret', useDispatcher: 'true' });
    await replayJvb(client, { pace: 'fast', records: onlyTag(records, TAG_A) });
    client.send({ event: 'stop', stop: { tag: TAG_A } });
    await client.waitFor(() => client.finals().length > 0, 'a final');
    await d.waitFor(() => d.refusals > 0, 'a refused handshake');
    const p = proxy;
    await until(() => p.logs.some((l) => l.msg === 'Dispatcher connection failed'), 'the failure in the log');

    // Back up: connected (the URL is logged), then closed by the dispatcher quoting the header.
    d.accept();
    await d.waitFor(() => d.received.length > 0, 'a final at the dispatcher');
    expect(d.connections[0]!.headers.authorization).toBe(`Bearer ${token}`);
    d.closeConnections(4001, `credentials Bearer ${token} revoked`);
    await until(() => p.logs.some((l) => l.msg === 'Dispatcher connection closed' && l.code === 4001), 'the close in the log');
    expect(p.logs.find((l) => l.msg === 'Dispatcher connection closed' && l.code === 4001)).toMatchObject({ reason: 'credentials *** revoked' });
    expect(p.logs.find((l) => l.msg === 'Connected to Dispatcher via WebSocket')?.url).toContain('token=***');

    expectNoSecret(await everything(p, [client]), [token, apiKey, urlToken]);
  });

  describe('the Gemini key', () => {
    /** The fake Gemini with faults made from the key it accepts. */
    async function start(faults: (key: string) => GeminiFaults) {
      const key = googleKey();
      gem = await FakeGeminiLive.start({ apiKey: key });
      gem.faults = faults(key);
      proxy = await startProviderServer({ GEMINI_API_KEY: key, GEMINI_BASE_URL: gem.baseUrl, PROVIDER_QUEUE_MS: '60000', FORCE_COMMIT_TIMEOUT: '0.5' });
      const client = await proxy.connect({ sendBackInterim: 'true' });
      return { key, client, proxy, gem };
    }

    it('quoted in the close reason refusing the setup', async () => {
      const s = await start((key) => ({ refuseSetup: { code: 1007, reason: `API key not valid: ${key}` } }));
      await replayJvb(s.client, { pace: 'fast', records: onlyTag(records, TAG_A).slice(0, 50) });
      await s.client.waitFor(() => s.client.messages.some((m) => m.event === 'error'), 'the error event');
      expect(s.proxy.logs.some((l) => l.msg === 'provider connection failed' && String(l.error).includes('API key not valid: ***'))).toBe(true);
      expectNoSecret(await everything(s.proxy, [s.client]), [s.key]);
    });

    it('quoted with the URL (?key=) in an error message and in the close reason of a live connection', async () => {
      const s = await start((key) => ({
        errorAfterSetup: `Request contains an invalid argument (quota project not set for wss://generativelanguage.googleapis.com${LIVE_PATH}?key=${key}); see the documentation`,
        // 100 ms messages (PCM_BATCH_MS): 0.4 s in.
        closeAfterAudio: { messages: 4, code: 1011, reason: `Internal error for ?key=${key}&alt=ws` },
      }));
      await replayJvb(s.client, { pace: 'fast', records: onlyTag(records, TAG_A).slice(0, 60) });
      await until(() => s.proxy.logs.some((l) => l.msg === 'provider connection lost'), 'the lost connection in the log');
      await until(() => s.proxy.logs.some((l) => l.msg === 'provider reported an error'), 'the error in the log');
      expect(s.client.messages.some((m) => m.event === 'error')).toBe(true);
      expectNoSecret(await everything(s.proxy, [s.client]), [s.key]);
    });
  });
});
