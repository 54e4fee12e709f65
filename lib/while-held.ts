import {
  defer,
  EMPTY,
  finalize,
  mergeMap,
  type ObservableInput,
  type OperatorFunction,
  Subject,
  takeUntil,
  tap,
} from 'rxjs';
import { InvalidArgumentError, NotHeldError } from './errors.js';
import { show } from './options.js';
import type { LockState } from './state.js';

/** What work done under a lock is given: the grant, and a signal that aborts once the lock is no longer held. */
export interface LockGrant {
  key: string;
  id: string;
  /** Pass it with every write the lock protects (see docs/safety.md). */
  fencingToken: string;
  leaseId: string;
  holderKey: string;
  /**
   * Aborts when the lock is lost (reason: the {@link LockLostError}), released, or the work is over (reason: a
   * {@link NotHeldError}). Hand it to whatever takes one (`fetch`, streams, timers) so that it stops in time.
   */
  signal: AbortSignal;
}

/**
 * Runs `work` once, when the lock is first held, and emits what it emits. The work is torn down, and its signal
 * aborted, when the lock is lost (the result then errors with the {@link LockLostError}) or when you
 * unsubscribe (which releases the lock). When the work completes, the result completes and the lock is released;
 * when it errors, the result errors with that error and the lock is released.
 *
 * @throws InvalidArgumentError at once unless `work` is a function
 *
 * @example
 * ```ts
 * lock$(client, '/jobs/reindex').pipe(
 *   whileHeld(({ fencingToken, signal }) => reindex(fencingToken, signal)),
 * ).subscribe({ error: (err) => console.error('reindex stopped:', err) });
 * ```
 */
export function whileHeld<T>(work: (grant: LockGrant) => ObservableInput<T>): OperatorFunction<LockState, T> {
  if (typeof work !== 'function') {
    throw new InvalidArgumentError(`Expected \`work\` to be a function, got ${show(work)}`);
  }
  return (source) =>
    defer(() => {
      let controller: AbortController | undefined;
      let lockKey = '';
      const abort = (reason: unknown) => {
        if (controller && !controller.signal.aborted) controller.abort(reason);
      };
      const workDone = new Subject<void>();
      return source.pipe(
        // A loss aborts the signal first; the error right after it tears the work down.
        tap({ next: (state) => state.kind === 'lost' && abort(state.error), error: abort }),
        mergeMap((state) => {
          if (state.kind !== 'held' || controller) return EMPTY;
          controller = new AbortController();
          lockKey = state.key;
          const { key, id, fencingToken, leaseId, holderKey } = state;
          const grant: LockGrant = { key, id, fencingToken, leaseId, holderKey, signal: controller.signal };
          return defer(() => work(grant)).pipe(tap({ complete: () => workDone.next() }));
        }),
        takeUntil(workDone),
        // Unsubscribed, or the work ended: the signal says so, unless a loss said it first.
        finalize(() =>
          abort(new NotHeldError(lockKey, `The lock ${JSON.stringify(lockKey)} is released: the work is over`)),
        ),
      );
    });
}
