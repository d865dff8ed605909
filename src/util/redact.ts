/**
 * A function that masks the given secrets (provider API keys, dispatcher header values)
 * wherever they appear in a text, for anything that goes into a log line, an error message
 * or a message to the client. A value like "Bearer abc" is masked whole and by its parts,
 * as a library error may quote either.
 */
export function secretRedactor(secrets: Iterable<string>): (text: string) => string {
  const parts = new Set<string>();
  for (const secret of secrets) {
    for (const part of [secret, ...secret.split(/\s+/)]) if (part.length >= 4) parts.add(part);
  }
  // Longest first, so a whole value is masked before its parts.
  const ordered = [...parts].sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const part of ordered) out = out.split(part).join('***');
    return out;
  };
}

/** `text` with every occurrence of `secret` masked, for error messages built from what a server echoed. */
export function maskSecret(text: string, secret: string): string {
  return secretRedactor([secret])(text);
}

/** `text` (a URL, or a message quoting one) with credentials in its query masked. */
export function redactUrl(text: string): string {
  return text.replace(/([?&](?:key|api_key|token|access_token)=)[^&]*/gi, '$1***');
}

/** A URL for logs: no user info, and credential-like query values masked. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    for (const key of [...u.searchParams.keys()]) {
      if (/key|token|secret|auth|password|signature/i.test(key)) u.searchParams.set(key, '***');
    }
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}
