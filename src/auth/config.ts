import * as v from 'valibot';
import { envNumber, envOptionalString, parseEnvWith, urlString } from '../util/env-schema.ts';

/** Algorithms a JWT may be signed with; `none` is never among them. */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'HS256', 'HS384', 'HS512'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

/** Where a JWT's signature is checked against: exactly one is configured. */
export type JwtKeySource =
  | { kind: 'secret'; secret: string }
  | { kind: 'public-key'; pem: string }
  | { kind: 'jwks'; url: string };

export interface JwtAuthConfig {
  key: JwtKeySource;
  algorithms: JwtAlgorithm[];
  /** Accepted `iss` values; unset: not checked. */
  issuers: string[] | undefined;
  /** Accepted `aud` values (Jitsi: often "jitsi" or the app id); unset: not checked. */
  audiences: string[] | undefined;
  /** A claim (Jitsi: `room`) that must equal the session's sessionId; `*` matches any. */
  sessionClaim: string | undefined;
  clockToleranceSeconds: number;
}

/** Who may open `/transcribe` (docs/PROTOCOL.md §2.1). */
export type AuthConfig = { mode: 'off' } | { mode: 'token'; token: string } | { mode: 'jwt'; jwt: JwtAuthConfig };

/** The shortest shared secret accepted: a short one can be guessed over the network. */
const MIN_TOKEN_LENGTH = 16;

const list = (name: string, allowed?: readonly string[]) =>
  v.optional(
    v.pipe(
      v.string(),
      v.transform((s) =>
        s
          .split(',')
          .map((p) => p.trim())
          .filter(Boolean),
      ),
      v.check((items) => items.length > 0, `${name} must list at least one value`),
      v.check(
        (items) => allowed === undefined || items.every((i) => allowed.includes(i)),
        `must be a comma-separated list of ${allowed?.join(', ') ?? ''}`,
      ),
    ),
  );

const AuthEnv = v.object({
  AUTH_MODE: v.optional(v.picklist(['off', 'token', 'jwt'], 'must be off, token or jwt'), 'off'),
  AUTH_TOKEN: envOptionalString,
  AUTH_JWT_SECRET: envOptionalString,
  AUTH_JWT_PUBLIC_KEY: envOptionalString,
  /** Read by the Node and Deno entries into AUTH_JWT_PUBLIC_KEY (the core reads no files). */
  AUTH_JWT_PUBLIC_KEY_FILE: envOptionalString,
  AUTH_JWT_JWKS_URL: v.optional(urlString(['https:', 'http:'])),
  AUTH_JWT_ALGORITHMS: list('AUTH_JWT_ALGORITHMS', JWT_ALGORITHMS),
  AUTH_JWT_ISSUER: list('AUTH_JWT_ISSUER'),
  AUTH_JWT_AUDIENCE: list('AUTH_JWT_AUDIENCE'),
  AUTH_JWT_SESSION_CLAIM: v.optional(v.pipe(v.string(), v.trim(), v.regex(/^[\w.-]{1,64}$/, 'must be a claim name such as room'))),
  AUTH_JWT_CLOCK_TOLERANCE: envNumber(30, 0, 600),
});

const isHmac = (alg: string) => alg.startsWith('HS');

/**
 * Validates the AUTH_* variables; every problem is listed as `NAME: message`, and no
 * message ever quotes a secret's value.
 */
export function loadAuthConfig(env: Readonly<Record<string, string | undefined>>): { config?: AuthConfig; errors: string[] } {
  const { output, errors } = parseEnvWith(AuthEnv, env);
  if (!output) return { errors };
  if (output.AUTH_MODE === 'off') {
    // Credentials without the switch would look like protection and be none: only an explicit `off` leaves them unused.
    const given = ['AUTH_TOKEN', 'AUTH_JWT_SECRET', 'AUTH_JWT_PUBLIC_KEY', 'AUTH_JWT_PUBLIC_KEY_FILE', 'AUTH_JWT_JWKS_URL'].filter((name) => env[name]?.trim());
    if (given.length && !env.AUTH_MODE?.trim()) {
      return { errors: [`AUTH_MODE: ${given.join(', ')} set but AUTH_MODE is not: set AUTH_MODE=token or jwt to require it (or AUTH_MODE=off to leave it unused)`] };
    }
    return { config: { mode: 'off' }, errors };
  }
  if (output.AUTH_MODE === 'token') {
    const token = output.AUTH_TOKEN;
    if (token === undefined) return { errors: ['AUTH_TOKEN: required when AUTH_MODE is token (the shared secret clients send)'] };
    if (token.length < MIN_TOKEN_LENGTH) return { errors: [`AUTH_TOKEN: must be at least ${MIN_TOKEN_LENGTH} characters`] };
    return { config: { mode: 'token', token }, errors };
  }
  if (output.AUTH_JWT_PUBLIC_KEY_FILE !== undefined) {
    // Only reached where no runtime entry read the file (the Worker has no file system).
    return { errors: ['AUTH_JWT_PUBLIC_KEY_FILE: not readable here (no file system); put the PEM text in AUTH_JWT_PUBLIC_KEY'] };
  }
  const sources: JwtKeySource[] = [];
  if (output.AUTH_JWT_SECRET !== undefined) sources.push({ kind: 'secret', secret: output.AUTH_JWT_SECRET });
  if (output.AUTH_JWT_PUBLIC_KEY !== undefined) sources.push({ kind: 'public-key', pem: output.AUTH_JWT_PUBLIC_KEY });
  if (output.AUTH_JWT_JWKS_URL !== undefined) sources.push({ kind: 'jwks', url: output.AUTH_JWT_JWKS_URL });
  if (sources.length !== 1) {
    return {
      errors: [
        `AUTH_MODE: jwt needs exactly one of AUTH_JWT_SECRET (HS256), AUTH_JWT_PUBLIC_KEY or AUTH_JWT_PUBLIC_KEY_FILE (PEM), AUTH_JWT_JWKS_URL (${sources.length} set)`,
      ],
    };
  }
  const key = sources[0]!;
  if (key.kind === 'public-key' && !/-----BEGIN PUBLIC KEY-----/.test(key.pem)) {
    return { errors: ['AUTH_JWT_PUBLIC_KEY: must be a PEM public key (-----BEGIN PUBLIC KEY-----)'] };
  }
  const algorithms = (output.AUTH_JWT_ALGORITHMS ?? (key.kind === 'secret' ? ['HS256'] : ['RS256', 'ES256'])) as JwtAlgorithm[];
  // An HMAC algorithm with a public key would let anyone who has the key sign tokens.
  if (algorithms.some((alg) => isHmac(alg) !== (key.kind === 'secret'))) {
    return {
      errors: [
        key.kind === 'secret'
          ? 'AUTH_JWT_ALGORITHMS: AUTH_JWT_SECRET verifies HS256, HS384 or HS512 only'
          : 'AUTH_JWT_ALGORITHMS: a public key or JWKS verifies asymmetric algorithms only (RS256, ES256…), not HS*',
      ],
    };
  }
  if (key.kind === 'secret' && key.secret.length < 32) {
    return { errors: ['AUTH_JWT_SECRET: must be at least 32 characters (HS256 needs a 256-bit secret)'] };
  }
  return {
    errors,
    config: {
      mode: 'jwt',
      jwt: {
        key,
        algorithms,
        issuers: output.AUTH_JWT_ISSUER,
        audiences: output.AUTH_JWT_AUDIENCE,
        sessionClaim: output.AUTH_JWT_SESSION_CLAIM,
        clockToleranceSeconds: output.AUTH_JWT_CLOCK_TOLERANCE,
      },
    },
  };
}
