import type { Etcd3 } from 'etcd3';
import type { Observable, Subscription } from 'rxjs';
import { InvalidArgumentError, NotHeldError } from './errors.js';
import { lock$ } from './lock-stream.js';
import { type LockOptions, show } from './options.js';
import type { LockState } from './state.js';
import type { LockGrant } from './while-held.js';

/**
 * Takes the lock, runs `fn` with the grant, releases the lock, and resolves with what `fn` returned once the
 * release has reached etcd.
 *
 * - Acquiring fails (busy, timeout, etcd unreachable, `signal` aborted): rejects with that error; `fn` never runs.
 * - `fn` throws or rejects: the lock is released, then `withLock` rejects with that error.
 * - The lock is lost while `fn` runs: `grant.signal` aborts at once with the {@link LockLostError}; `withLock`
 *   waits until `fn` settles (so two runs never overlap on this side) and then rejects with that error, whatever
 *   `fn` returned, since its work was not exclusive to the end.
 *
 * @throws InvalidArgumentError at once for a bad client, key, option, or an `fn` that is not a function
 *
 * @example
 * ```ts
 * const rows = await withLock(client, '/jobs/reindex', async ({ fencingToken, signal }) =>
 *   reindex({ fencingToken, signal }), { ttl: 30 });
 * ```
 */
export function withLock<T>(
  client: Etcd3,
  key: string,
  fn: (grant: LockGrant) => T | PromiseLike<T>,
  options: LockOptions = {},
): Promise<T> {
  if (typeof fn !== 'function') throw new InvalidArgumentError(`Expected \`fn\` to be a function, got ${show(fn)}`);
  let released: Promise<void> = Promise.resolve();
  const stream$ = lock$(client, key, {
    ...options,
    onRelease: (done) => {
      released = done;
      options.onRelease?.(done);
    },
  });
  return runUnderLock(stream$, fn, () => released);
}

/**
 * The heart of {@link withLock}, on any stream of lock states (for tests in virtual time): runs `fn` at the first
 * `held`, unsubscribes once it settles, and settles once `released()` (read after the unsubscribe) has.
 */
export function runUnderLock<T>(
  state$: Observable<LockState>,
  fn: (grant: LockGrant) => T | PromiseLike<T>,
  released: () => Promise<void>,
): Promise<T> {
  return new Promise<T>((resolve, rejectWith) => {
    // Whatever failed is passed on as it is: a LockError, fn's own error, or the reason of the user's signal.
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- fn may throw anything
    const reject = (err: unknown) => rejectWith(err);
    const controller = new AbortController();
    let running = false;
    let lossError: unknown;
    /** Releases (if still subscribed), waits until the release is done, then settles. */
    const finish = (key: string, settle: () => void) => {
      if (!controller.signal.aborted) {
        controller.abort(new NotHeldError(key, `The lock ${JSON.stringify(key)} is released: fn has settled`));
      }
      subscription.unsubscribe(); // assigned by then: fn's outcome arrives in a later microtask
      void released().then(settle);
    };
    const subscription: Subscription = state$.subscribe({
      next: (state) => {
        if (state.kind !== 'held' || running) return;
        running = true;
        const { key, id, fencingToken, leaseId, holderKey } = state;
        const grant: LockGrant = { key, id, fencingToken, leaseId, holderKey, signal: controller.signal };
        new Promise<T>((run) => run(fn(grant))).then(
          (value) => finish(key, () => (lossError === undefined ? resolve(value) : reject(lossError))),
          (err: unknown) => finish(key, () => reject(lossError ?? err)),
        );
      },
      error: (err: unknown) => {
        controller.abort(err);
        if (running) lossError = err;
        // The stream's teardown hands over the release right after this callback: wait for it, then reject.
        else void Promise.resolve().then(() => released().then(() => reject(err)));
      },
    });
  });
}
