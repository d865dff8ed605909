import { createRemoteJWKSet, errors, importSPKI, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { AuthConfig, JwtAlgorithm, JwtAuthConfig } from './config.ts';

/** Why a request was refused: the `reason` label of transcriber_auth_refused_total. */
export type RefusalReason =
  | 'missing_token'
  | 'bad_token'
  | 'malformed_token'
  | 'bad_signature'
  | 'bad_algorithm'
  | 'unknown_key'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'bad_claims'
  | 'wrong_session'
  | 'keys_unavailable';

export type AuthVerdict = { ok: true } | { ok: false; status: 401 | 403 | 503; reason: RefusalReason; message: string };

/** Checks one request's credentials for the session it opens. */
export type Authenticator = (request: Request, sessionId: string | undefined) => Promise<AuthVerdict>;

const refuse = (status: 401 | 403 | 503, reason: RefusalReason, message: string): AuthVerdict => ({ ok: false, status, reason, message });

const NO_TOKEN = refuse(401, 'missing_token', 'unauthorized: no token (send Authorization: Bearer <token>, or ?token=<token> where headers cannot be set)');

/**
 * The credential of a request: `Authorization: Bearer`, else the `token` query parameter
 * (Jitsi's convention, and for clients that cannot set headers on a WebSocket).
 */
export function requestToken(request: Request): string | undefined {
  const header = request.headers.get('authorization');
  const bearer = header ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
  if (bearer) return bearer;
  const query = new URL(request.url).searchParams.get('token');
  return query ? query : undefined;
}

const encoder = new TextEncoder();

/**
 * Constant-time equality: both sides are hashed first, so the comparison runs over 32 bytes
 * whatever the lengths, and neither length nor the first differing byte shows in the timing.
 * Web Crypto has no timingSafeEqual on every runtime (Node's lives in node:crypto).
 */
const sha256 = async (text: string) => new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(text)));

async function sameSecret(given: string, expected: Promise<Uint8Array>): Promise<boolean> {
  const a = await sha256(given);
  const b = await expected;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

function tokenAuthenticator(secret: string): Authenticator {
  const expected = sha256(secret);
  return async (request) => {
    const token = requestToken(request);
    if (token === undefined) return NO_TOKEN;
    return (await sameSecret(token, expected)) ? { ok: true } : refuse(401, 'bad_token', 'unauthorized: the token is not accepted');
  };
}

/** The key a token's signature is checked with, by the algorithm its header names (already allowed). */
function keyResolver(jwt: JwtAuthConfig): JWTVerifyGetKey | Uint8Array {
  const { key } = jwt;
  if (key.kind === 'secret') return encoder.encode(key.secret);
  if (key.kind === 'jwks') return createRemoteJWKSet(new URL(key.url), { timeoutDuration: 5_000, cooldownDuration: 30_000 });
  // One PEM, imported once per algorithm it is asked for: an RSA key cannot serve ES256 (that import fails).
  const imported = new Map<string, Promise<CryptoKey>>();
  return async (header) => {
    const alg = header.alg as JwtAlgorithm;
    let pending = imported.get(alg);
    if (!pending) {
      pending = importSPKI(key.pem, alg);
      imported.set(alg, pending);
    }
    try {
      return await pending;
    } catch {
      throw new errors.JOSEAlgNotAllowed(`the configured public key cannot verify ${alg}`);
    }
  };
}

/** A jose failure as the refusal it means; the token's content is never quoted. */
function refusalOf(error: unknown): AuthVerdict {
  if (error instanceof errors.JWTExpired) return refuse(401, 'expired', 'unauthorized: the token has expired');
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case 'iss':
        return refuse(401, 'wrong_issuer', 'unauthorized: the token was issued by an issuer this server does not accept (iss)');
      case 'aud':
        return refuse(401, 'wrong_audience', 'unauthorized: the token is meant for another audience (aud)');
      case 'nbf':
        return refuse(401, 'not_yet_valid', 'unauthorized: the token is not valid yet (nbf)');
      case 'exp':
        return refuse(401, 'expired', 'unauthorized: the token has no expiry (exp is required)');
      default:
        return refuse(401, 'bad_claims', `unauthorized: the token's ${error.claim} claim is invalid`);
    }
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) return refuse(401, 'bad_signature', 'unauthorized: the token signature does not verify');
  if (error instanceof errors.JOSEAlgNotAllowed) return refuse(401, 'bad_algorithm', 'unauthorized: the token is signed with an algorithm this server does not accept');
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return refuse(401, 'unknown_key', 'unauthorized: no key of the key set matches the token (kid/alg)');
  }
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid || !(error instanceof errors.JOSEError)) {
    // The key set could not be fetched (or a bug): the client is not at fault, and may retry.
    return refuse(503, 'keys_unavailable', 'cannot verify tokens right now: the signing keys are unavailable');
  }
  return refuse(401, 'malformed_token', 'unauthorized: the token is not a valid JWT');
}

function jwtAuthenticator(jwt: JwtAuthConfig): Authenticator {
  const key = keyResolver(jwt);
  const options = {
    algorithms: jwt.algorithms,
    issuer: jwt.issuers,
    audience: jwt.audiences,
    clockTolerance: jwt.clockToleranceSeconds,
    // A token without expiry would be a permanent key to the provider budget.
    requiredClaims: ['exp'],
  };
  return async (request, sessionId) => {
    const token = requestToken(request);
    if (token === undefined) return NO_TOKEN;
    let payload: JWTPayload;
    try {
      // Two overloads (a key or a resolver); the union needs picking.
      payload = (typeof key === 'function' ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options)).payload;
    } catch (error) {
      return refusalOf(error);
    }
    const claim = jwt.sessionClaim;
    if (claim === undefined) return { ok: true };
    const value = payload[claim];
    // Jitsi's `room` claim: "*" grants every room.
    if (value === '*' || (sessionId !== undefined && value === sessionId)) return { ok: true };
    return refuse(
      403,
      'wrong_session',
      sessionId === undefined
        ? `forbidden: the token is for one session (${claim}); give it as sessionId`
        : `forbidden: the token's ${claim} claim does not match sessionId`,
    );
  };
}

/** The request check of AUTH_MODE; undefined when it is off. */
export function createAuthenticator(config: AuthConfig): Authenticator | undefined {
  switch (config.mode) {
    case 'off':
      return undefined;
    case 'token':
      return tokenAuthenticator(config.token);
    case 'jwt':
      return jwtAuthenticator(config.jwt);
  }
}
