import type { MiddlewareHandler } from 'hono';
import { worthLogging, type Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Authenticator } from './verify.ts';

/**
 * Refuses a `/transcribe` request (under any prefix) whose credentials do not pass, before
 * the upgrade and before anything else is looked at: a refused client learns nothing about
 * the providers, and (on the Worker) wakes no container. `/health` and `/metrics` stay open.
 * The answer is one line; the token is neither logged nor echoed.
 */
export function transcribeAuth(authenticate: Authenticator, log: Logger, metrics: Metrics): MiddlewareHandler {
  return async (c, next) => {
    if (!c.req.path.endsWith('/transcribe')) return next();
    const sessionId = new URL(c.req.url).searchParams.get('sessionId') ?? undefined;
    const verdict = await authenticate(c.req.raw, sessionId);
    if (verdict.ok) return next();
    metrics.authRefused.inc({ reason: verdict.reason });
    if (worthLogging(metrics.authRefused.get({ reason: verdict.reason }))) {
      log.warn('session refused: authentication', { reason: verdict.reason, status: verdict.status, session: sessionId ?? null });
    }
    const headers: Record<string, string> =
      verdict.status === 401 ? { 'WWW-Authenticate': `Bearer error="invalid_token", error_description="${verdict.reason}"` } : {};
    return c.text(verdict.message, verdict.status, headers);
  };
}
