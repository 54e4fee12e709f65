/**
 * Records what a lock stream does, for tests: every state with the time it came, the error, and the
 * promise that settles when its key and lease are gone (from `onRelease`).
 */
import { performance } from 'node:perf_hooks';
import type { Observable, Subscription } from 'rxjs';
import type { LockState } from '../../lib/state.js';

export interface Recorded {
  readonly states: Array<LockState & { at: number }>;
  error: unknown;
  /** Resolves with the first state of this kind that arrives (or has arrived); rejects on error or after `timeoutMs`. */
  next(kind: LockState['kind'], timeoutMs?: number): Promise<LockState & { at: number }>;
  /** Resolves with the stream's error; rejects after `timeoutMs`. */
  failed(timeoutMs?: number): Promise<unknown>;
  /** Unsubscribes and resolves once the release finished in etcd. */
  release(): Promise<void>;
  /** Settles when the key and lease are gone (after unsubscribe, error or loss). */
  released(): Promise<void>;
  readonly subscription: Subscription;
}

/**
 * Subscribes to `stream(onRelease)` and records it.
 *
 * @example
 * const a = record((onRelease) => lock$(client, key, { id: 'a', onRelease }));
 * await a.next('held');
 * await a.release();
 */
export function record(stream: (onRelease: (released: Promise<void>) => void) => Observable<LockState>): Recorded {
  const states: Array<LockState & { at: number }> = [];
  const waiters = new Set<() => void>();
  let releasedPromise: Promise<void> | undefined;
  const notify = () => {
    for (const waiter of [...waiters]) waiter();
  };
  const recorded: Recorded = {
    states,
    error: undefined,
    subscription: undefined as unknown as Subscription,
    next: (kind, timeoutMs = 20_000) =>
      until(
        () => {
          const found = states.find((state) => state.kind === kind);
          if (found) return found;
          if (recorded.error !== undefined)
            throw new Error(`stream failed before "${kind}"`, { cause: recorded.error });
          return undefined;
        },
        `state "${kind}"`,
        timeoutMs,
      ),
    failed: (timeoutMs = 20_000) =>
      until(() => (recorded.error !== undefined ? { error: recorded.error } : undefined), 'an error', timeoutMs).then(
        (box) => box.error,
      ),
    release: async () => {
      recorded.subscription.unsubscribe();
      await recorded.released();
    },
    released: () => until(() => releasedPromise, 'onRelease', 20_000).then((p) => p),
  };
  function until<T>(probe: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        try {
          const value = probe();
          if (value === undefined) return;
          cleanup();
          resolve(value);
        } catch (err) {
          cleanup();
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for ${what}; states: ${states.map((s) => s.kind).join(', ')}`,
          ),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  }
  (recorded as { subscription: Subscription }).subscription = stream((released) => {
    releasedPromise = released;
    notify();
  }).subscribe({
    next: (state) => {
      states.push({ ...state, at: performance.now() });
      notify();
    },
    error: (err: unknown) => {
      recorded.error = err;
      notify();
    },
  });
  return recorded;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
