/** Injected so that idle commits, backoff and rotation can run on a test clock. */
export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const systemTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as ReturnType<typeof setInterval>),
};

/** Resolves after `ms`, or at once when `ms` is 0. */
export function sleep(timers: Timers, ms: number): Promise<void> {
  return new Promise((resolve) => timers.setTimeout(resolve, ms));
}

/**
 * `promise`, or once `ms` have passed on `timers`, whatever `onTimeout` returns or throws
 * (undefined without it): for every "wait for this, but give up after a while". The timer
 * is cleared when `promise` settles first.
 */
export function withDeadline<T, U = undefined>(promise: Promise<T>, ms: number, timers: Timers, onTimeout?: () => U): Promise<T | U> {
  return new Promise<T | U>((resolve, reject) => {
    const timer = timers.setTimeout(() => {
      try {
        resolve(onTimeout ? onTimeout() : (undefined as U));
      } catch (error) {
        reject(error);
      }
    }, Math.max(0, ms));
    promise.then(
      (value) => {
        timers.clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        timers.clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** Exponential backoff with full jitter in [base/2, base]. */
export function backoffMs(attempt: number, minMs: number, maxMs: number): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base / 2 + (Math.random() * base) / 2);
}
