/**
 * Ingress authentication (AUTH_MODE, docs/PROTOCOL.md §2.1) on the Node server: each mode's
 * acceptance and refusals before the upgrade (status and one-line reason), counted in
 * /metrics, and the token never in a log line. The JWKS is served by a real HTTP server on
 * 127.0.0.1 started here; the ES256 key is read from a PEM file.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { PROVIDERS } from '../../src/providers/registry.ts';
import { TestClient } from '../helpers/client.ts';
import { metricValue, startProxy, type Proxy } from '../helpers/proxy.ts';

const SHARED = 'a-shared-secret-of-some-length-0123';
const HS_SECRET = 'an-hs256-secret-that-is-long-enough-for-the-check';

type Refusal = { status: number; body: string };

async function open(proxy: Proxy, query: Record<string, string>, headers: Record<string, string> = {}): Promise<TestClient | Refusal> {
  const url = `ws://127.0.0.1:${proxy.server.port}/transcribe?${new URLSearchParams({ sendBack: 'true', ...query })}`;
  return TestClient.connect(url, { headers }).then(
    (client) => client,
    (e: Refusal) => ({ status: e.status, body: e.body }),
  );
}

async function expectAccepted(proxy: Proxy, query: Record<string, string>, headers: Record<string, string> = {}): Promise<void> {
  const result = await open(proxy, query, headers);
  expect(result, JSON.stringify(result instanceof TestClient ? {} : result)).toBeInstanceOf(TestClient);
  const client = result as TestClient;
  // The session is really open: info first, as without auth.
  await client.waitFor(() => client.messages.some((m) => m.event === 'info'), 'info');
  await client.close();
}

const refused = (proxy: Proxy, reason: string) => proxy.metrics().then((text) => metricValue(text, 'transcriber_auth_refused_total', { reason }));

function expectNoSecretInLogs(proxy: Proxy, ...secrets: string[]): void {
  const text = JSON.stringify(proxy.logs);
  for (const secret of secrets) expect(text).not.toContain(secret);
}

describe('AUTH_MODE=off (the default)', () => {
  it('accepts any client, and configuration says off', async () => {
    const result = loadConfig({}, PROVIDERS);
    expect(result.ok && result.config.auth).toEqual({ mode: 'off' });
    const proxy = await startProxy();
    try {
      await expectAccepted(proxy, { sessionId: 'open' });
    } finally {
      await proxy.close();
    }
  });
});

describe('AUTH_MODE=token', () => {
  let proxy: Proxy;
  beforeAll(async () => {
    proxy = await startProxy({ AUTH_MODE: 'token', AUTH_TOKEN: SHARED });
  });
  afterAll(() => proxy.close());

  it('accepts the token as a Bearer header or as ?token=', async () => {
    await expectAccepted(proxy, { sessionId: 'hdr' }, { Authorization: `Bearer ${SHARED}` });
    await expectAccepted(proxy, { sessionId: 'qry', token: SHARED });
  });

  it('refuses no token and a wrong one with 401 and one line, counted, before any provider is touched', async () => {
    const before = proxy.fake.connections.length;
    expect(await open(proxy, { sessionId: 'none' })).toEqual({
      status: 401,
      body: 'unauthorized: no token (send Authorization: Bearer <token>, or ?token=<token> where headers cannot be set)',
    });
    expect(await open(proxy, { sessionId: 'bad' }, { Authorization: `Bearer ${SHARED}x` })).toEqual({
      status: 401,
      body: 'unauthorized: the token is not accepted',
    });
    expect(await open(proxy, { sessionId: 'short', token: SHARED.slice(0, -1) })).toMatchObject({ status: 401 });
    expect(await refused(proxy, 'missing_token')).toBe(1);
    expect(await refused(proxy, 'bad_token')).toBe(2);
    expect(proxy.fake.connections.length).toBe(before);
    expect(proxy.server.metrics.state.sessions).toBe(0);
  });

  it('leaves /health and /metrics open', async () => {
    expect((await fetch(proxy.url('/health'))).status).toBe(200);
    expect((await fetch(proxy.url('/metrics'))).status).toBe(200);
  });

  it('never logs the token, given or wrong', () => {
    expect(proxy.logs.some((l) => l.msg === 'session refused: authentication')).toBe(true);
    expectNoSecretInLogs(proxy, SHARED, SHARED.slice(0, -1));
  });

  it('refuses a token without AUTH_MODE at start-up, rather than run unprotected', () => {
    expect(loadConfig({ AUTH_TOKEN: SHARED }, PROVIDERS)).toEqual({
      ok: false,
      errors: ['AUTH_MODE: AUTH_TOKEN set but AUTH_MODE is not: set AUTH_MODE=token or jwt to require it (or AUTH_MODE=off to leave it unused)'],
    });
    expect(loadConfig({ AUTH_TOKEN: SHARED, AUTH_MODE: 'off' }, PROVIDERS)).toMatchObject({ ok: true, config: { auth: { mode: 'off' } } });
  });

  it('refuses a short AUTH_TOKEN at start-up, without quoting it', () => {
    const result = loadConfig({ AUTH_MODE: 'token', AUTH_TOKEN: 'short-one' }, PROVIDERS);
    expect(result).toEqual({ ok: false, errors: ['AUTH_TOKEN: must be at least 16 characters'] });
  });
});

describe('AUTH_MODE=jwt with HS256 (AUTH_JWT_SECRET)', () => {
  let proxy: Proxy;
  const secret = new TextEncoder().encode(HS_SECRET);
  const sign = (claims: Record<string, unknown>, exp: string | number = '5m') =>
    new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime(exp).sign(secret);
  beforeAll(async () => {
    proxy = await startProxy({
      AUTH_MODE: 'jwt',
      AUTH_JWT_SECRET: HS_SECRET,
      AUTH_JWT_ISSUER: 'my-app',
      AUTH_JWT_AUDIENCE: 'jitsi',
      AUTH_JWT_SESSION_CLAIM: 'room',
    });
  });
  afterAll(() => proxy.close());

  it("accepts a Jitsi-style token whose room is the sessionId, or '*'", async () => {
    const token = await sign({ iss: 'my-app', aud: 'jitsi', sub: 'meet.example.com', room: 'conf1', context: { user: { name: 'A' } } });
    await expectAccepted(proxy, { sessionId: 'conf1' }, { Authorization: `Bearer ${token}` });
    await expectAccepted(proxy, { sessionId: 'conf1', token });
    await expectAccepted(proxy, { sessionId: 'any-room', token: await sign({ iss: 'my-app', aud: 'jitsi', room: '*' }) });
  });

  it('refuses expired, wrong iss, wrong aud, bad signature, no exp (401) and another room (403)', async () => {
    const ok = { iss: 'my-app', aud: 'jitsi', room: 'conf1' };
    const cases: [string, string, Refusal][] = [
      ['expired', await sign(ok, Math.floor(Date.now() / 1000) - 3600), { status: 401, body: 'unauthorized: the token has expired' }],
      [
        'wrong_issuer',
        await sign({ ...ok, iss: 'someone-else' }),
        { status: 401, body: 'unauthorized: the token was issued by an issuer this server does not accept (iss)' },
      ],
      ['wrong_audience', await sign({ ...ok, aud: 'other' }), { status: 401, body: 'unauthorized: the token is meant for another audience (aud)' }],
      [
        'bad_signature',
        await new SignJWT(ok).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(`${HS_SECRET}!`)),
        { status: 401, body: 'unauthorized: the token signature does not verify' },
      ],
      [
        'expired',
        await new SignJWT(ok).setProtectedHeader({ alg: 'HS256' }).sign(secret),
        { status: 401, body: 'unauthorized: the token has no expiry (exp is required)' },
      ],
      ['malformed_token', 'not.a.jwt', { status: 401, body: 'unauthorized: the token is not a valid JWT' }],
      ['wrong_session', await sign({ ...ok, room: 'conf2' }), { status: 403, body: "forbidden: the token's room claim does not match sessionId" }],
    ];
    for (const [reason, token, expected] of cases) {
      const before = await refused(proxy, reason);
      expect(await open(proxy, { sessionId: 'conf1', token }), reason).toEqual(expected);
      expect(await refused(proxy, reason), reason).toBe(before + 1);
    }
    expectNoSecretInLogs(proxy, HS_SECRET, ...cases.map(([, token]) => token).filter((t) => t.length > 20));
  });
});

describe('AUTH_MODE=jwt with RS256 from a JWKS URL', () => {
  let proxy: Proxy;
  let jwks: Server;
  let privateKey: CryptoKey;
  let otherKey: CryptoKey;
  let fetches = 0;
  const sign = (key: CryptoKey, claims: Record<string, unknown>, kid = 'k1') =>
    new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid }).setIssuedAt().setExpirationTime('5m').sign(key);

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    privateKey = pair.privateKey;
    otherKey = (await generateKeyPair('RS256')).privateKey;
    const body = JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] });
    jwks = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    const { port } = jwks.address() as AddressInfo;
    proxy = await startProxy({
      AUTH_MODE: 'jwt',
      AUTH_JWT_JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json`,
      AUTH_JWT_AUDIENCE: 'jitsi',
    });
  });
  afterAll(async () => {
    await proxy.close();
    await new Promise((resolve) => jwks.close(resolve));
  });

  it('accepts a token signed by a key of the set, fetching the set once', async () => {
    await expectAccepted(proxy, { sessionId: 'r1' }, { Authorization: `Bearer ${await sign(privateKey, { aud: 'jitsi' })}` });
    await expectAccepted(proxy, { sessionId: 'r2', token: await sign(privateKey, { aud: 'jitsi' }) });
    expect(fetches).toBe(1);
  });

  it('refuses a token signed by another key, one with an unknown kid, and an HS256 one', async () => {
    expect(await open(proxy, { token: await sign(otherKey, { aud: 'jitsi' }) })).toEqual({
      status: 401,
      body: 'unauthorized: the token signature does not verify',
    });
    expect(await open(proxy, { token: await sign(privateKey, { aud: 'jitsi' }, 'k9') })).toMatchObject({ status: 401 });
    const hs = await new SignJWT({ aud: 'jitsi' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(HS_SECRET));
    expect(await open(proxy, { token: hs })).toEqual({
      status: 401,
      body: 'unauthorized: the token is signed with an algorithm this server does not accept',
    });
    expect(await refused(proxy, 'bad_algorithm')).toBe(1);
  });
});

describe('AUTH_MODE=jwt with ES256 from a key file (AUTH_JWT_PUBLIC_KEY_FILE)', () => {
  let proxy: Proxy;
  let dir: string;
  let privateKey: CryptoKey;
  beforeAll(async () => {
    const pair = await generateKeyPair('ES256');
    privateKey = pair.privateKey;
    dir = mkdtempSync(join(tmpdir(), 'auth-key-'));
    writeFileSync(join(dir, 'public.pem'), await exportSPKI(pair.publicKey));
    proxy = await startProxy({
      AUTH_MODE: 'jwt',
      AUTH_JWT_PUBLIC_KEY_FILE: join(dir, 'public.pem'),
      AUTH_JWT_ISSUER: 'issuer-a,issuer-b',
      AUTH_JWT_SESSION_CLAIM: 'room',
    });
  });
  afterAll(async () => {
    await proxy.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const sign = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).setExpirationTime('5m').sign(privateKey);

  it('accepts a token of either issuer for its room', async () => {
    await expectAccepted(proxy, { sessionId: 'room-7' }, { Authorization: `Bearer ${await sign({ iss: 'issuer-b', room: 'room-7' })}` });
  });

  it('refuses a room token without a sessionId (403) and a wrong issuer (401)', async () => {
    expect(await open(proxy, { token: await sign({ iss: 'issuer-a', room: 'room-7' }) })).toEqual({
      status: 403,
      body: 'forbidden: the token is for one session (room); give it as sessionId',
    });
    expect(await open(proxy, { sessionId: 'room-7', token: await sign({ iss: 'issuer-c', room: 'room-7' }) })).toMatchObject({ status: 401 });
  });

  it('says at start-up what is wrong with a missing file or two key sources', async () => {
    await expect(startProxy({ AUTH_MODE: 'jwt', AUTH_JWT_PUBLIC_KEY_FILE: join(dir, 'absent.pem') })).rejects.toMatchObject({
      errors: [expect.stringMatching(/^AUTH_JWT_PUBLIC_KEY_FILE: cannot read .*absent\.pem/)],
    });
    expect(loadConfig({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: HS_SECRET, AUTH_JWT_JWKS_URL: 'https://x/jwks' }, PROVIDERS)).toMatchObject({
      ok: false,
      errors: [expect.stringContaining('needs exactly one of')],
    });
    expect(loadConfig({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: HS_SECRET, AUTH_JWT_ALGORITHMS: 'RS256' }, PROVIDERS)).toMatchObject({ ok: false });
  });
});
