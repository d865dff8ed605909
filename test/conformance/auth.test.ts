/**
 * Ingress authentication on every runtime (Node, Deno, the Worker transcribing in its
 * isolate): jose's JWKS fetch and Web Crypto verification must behave the same on each. The
 * key set (one RS256 key, one ES256 key) is served by a real HTTP server on 127.0.0.1.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from '../helpers/client.ts';
import { LAUNCHERS, appBehindFakeOpenAI } from './launchers.ts';

let jwks: Server;
let jwksUrl: string;
let rsa: CryptoKey;
let ec: CryptoKey;

beforeAll(async () => {
  const rsaPair = await generateKeyPair('RS256');
  const ecPair = await generateKeyPair('ES256');
  rsa = rsaPair.privateKey;
  ec = ecPair.privateKey;
  const body = JSON.stringify({
    keys: [
      { ...(await exportJWK(rsaPair.publicKey)), kid: 'rsa', alg: 'RS256', use: 'sig' },
      { ...(await exportJWK(ecPair.publicKey)), kid: 'ec', alg: 'ES256', use: 'sig' },
    ],
  });
  jwks = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(body));
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
  jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
});

afterAll(() => new Promise((resolve) => jwks?.close(resolve)));

const sign = (key: CryptoKey, alg: 'RS256' | 'ES256', kid: string, claims: Record<string, unknown>, exp: string | number = '5m') =>
  new SignJWT(claims).setProtectedHeader({ alg, kid }).setExpirationTime(exp).sign(key);

describe.each(LAUNCHERS)('auth on $runtime', ({ start }) => {
  const running = appBehindFakeOpenAI(start, () => ({
    AUTH_MODE: 'jwt',
    AUTH_JWT_JWKS_URL: jwksUrl,
    AUTH_JWT_ISSUER: 'app',
    AUTH_JWT_AUDIENCE: 'jitsi',
    AUTH_JWT_SESSION_CLAIM: 'room',
  }));

  const connect = (sessionId: string, token?: string, headers: Record<string, string> = {}) => {
    const query = new URLSearchParams({ sessionId, sendBack: 'true', ...(token ? { token } : {}) });
    return TestClient.connect(`${running.app.origin.replace('http', 'ws')}/transcribe?${query}`, { headers }).then(
      (client) => client,
      (e: { status: number; body: string }) => ({ status: e.status, body: e.body }),
    );
  };

  it('accepts RS256 and ES256 tokens of the key set, as a header or ?token=', async () => {
    const claims = { iss: 'app', aud: 'jitsi', room: 'conf' };
    for (const client of [
      await connect('conf', undefined, { Authorization: `Bearer ${await sign(rsa, 'RS256', 'rsa', claims)}` }),
      await connect('conf', await sign(ec, 'ES256', 'ec', claims)),
    ]) {
      expect(client).toBeInstanceOf(TestClient);
      const open = client as TestClient;
      await open.waitFor(() => open.messages.some((m) => m.event === 'info'), 'info');
      await open.close();
    }
  });

  it('refuses with the same statuses and lines as Node', async () => {
    const claims = { iss: 'app', aud: 'jitsi', room: 'conf' };
    expect(await connect('conf')).toMatchObject({ status: 401, body: expect.stringMatching(/^unauthorized: no token/) });
    expect(await connect('conf', await sign(rsa, 'RS256', 'rsa', claims, Math.floor(Date.now() / 1000) - 600))).toEqual({
      status: 401,
      body: 'unauthorized: the token has expired',
    });
    expect(await connect('conf', await sign(ec, 'ES256', 'ec', { ...claims, aud: 'other' }))).toEqual({
      status: 401,
      body: 'unauthorized: the token is meant for another audience (aud)',
    });
    expect(await connect('other', await sign(rsa, 'RS256', 'rsa', claims))).toEqual({
      status: 403,
      body: "forbidden: the token's room claim does not match sessionId",
    });
    const metrics = await (await fetch(`${running.app.origin}/metrics`)).text();
    expect(metrics).toContain('transcriber_auth_refused_total{reason="wrong_session"} 1');
    expect(running.fake.connections.length).toBe(0);
  });
});
