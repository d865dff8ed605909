import { ProviderError, tapProvider, type Provider, type ProviderErrorKind } from './provider.ts';

/** Failures that mean a provider cannot work until someone acts: a refused key, or no route to it. */
const BLOCKING: Readonly<Partial<Record<ProviderErrorKind, string>>> = {
  auth: 'the API key was refused',
  unreachable: 'unreachable',
};

/**
 * What /health knows of each provider without touching one: the outcome of the sessions' own
 * connection attempts. A provider whose last attempt failed with a refused key or without an
 * answer, and that has accepted no connection since, is not usable; rate limits and other
 * refusals pass, and a provider nobody has tried yet is presumed usable.
 */
export class ProviderHealth {
  private readonly blocked = new Map<string, ProviderError>();

  /** `provider`, reporting the outcome of every connection to this record. */
  watch(provider: Provider): Provider {
    const note = <E>(err: E): E => {
      if (err instanceof ProviderError && BLOCKING[err.kind] !== undefined) this.blocked.set(provider.name, err);
      return err;
    };
    return tapProvider(provider, { closed: note, refused: note, connected: () => this.blocked.delete(provider.name) });
  }

  /** Why none of `names` is usable (one line each), or nothing while one of them is. */
  problems(names: readonly string[]): string[] {
    if (names.some((name) => !this.blocked.has(name))) return [];
    return names.map((name) => {
      const err = this.blocked.get(name)!;
      return `${name}: ${BLOCKING[err.kind]} (${err.message})`;
    });
  }
}
