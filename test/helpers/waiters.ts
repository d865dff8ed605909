/**
 * Promises that resolve when a condition on some recorded state holds, re-checked whenever
 * the owner of that state says it changed (`notify`): for fakes and test clients, which
 * know exactly when something arrived, so nothing polls.
 */
export class Waiters {
  private readonly checks = new Set<() => void>();

  constructor(private readonly owner: string) {}

  waitFor(predicate: () => boolean, what: string, timeoutMs = 20_000, detail?: () => string): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!predicate()) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.owner}: timed out waiting for ${what}${detail ? `; ${detail()}` : ''}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.checks.delete(check);
      };
      this.checks.add(check);
    });
  }

  notify(): void {
    for (const check of [...this.checks]) check();
  }
}
