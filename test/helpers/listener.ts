/**
 * What a provider connection reports to its stream, recorded for tests that drive a provider
 * directly (test/providers/), against the real-protocol fakes.
 */
import type { ConnectionListener, ProviderError, Transcript } from '../../src/providers/provider.ts';

/** Events over 127.0.0.1 take milliseconds: a wait that takes seconds is a failure (and fails fast under Stryker). */
export const FAST = 5_000;

export interface Seen {
  transcripts: Transcript[];
  errors: ProviderError[];
  closed: ProviderError[];
}

export function recorder(): { seen: Seen; listener: ConnectionListener } {
  const seen: Seen = { transcripts: [], errors: [], closed: [] };
  return {
    seen,
    listener: {
      transcript: (t) => void seen.transcripts.push(t),
      error: (e) => void (seen.errors = [...seen.errors, e]),
      closed: (e) => void seen.closed.push(e),
      expiring: () => undefined,
    },
  };
}
