import { Observable, skip } from 'rxjs';
import { InvalidArgumentError } from './errors.js';
import type { Locker } from './locker.js';
import { type LockerLockOptions, resolveLockerLockOptions, validateLockId } from './locker-options.js';
import { show } from './options.js';
import type { LockState } from './state.js';

/** What `locker.lock$(id)` emits: the states of {@link lock$}, with the lock's `lockId`. */
export type LockerStreamState = LockState & { lockId: string };

/** Options of `locker.lock$(id, options)`: those of `lock(id)` (`wait` defaults to true here), and `onRelease`. */
export interface LockerStreamOptions extends LockerLockOptions {
  /**
   * Called once, when the stream ends (unsubscribe, error, loss, completion), with a promise that settles once etcd
   * has the release: this stream's key deleted, if it was the last to want it. It never rejects.
   */
  onRelease?: (released: Promise<void>) => void;
}

/** What the stream needs of its locker: the public methods, and when the deletes of an id under way are done. */
export interface LockerPort {
  locker: Locker;
  /** Settles once every delete of the id's keys that is under way has reached etcd; at once if none is. */
  released: (lockId: string) => Promise<void>;
}

/**
 * `locker.lock$(id)`: one lock of a locker as a {@link lock$}-like stream, on the locker's long-lived session.
 * Subscribing calls `lock(id)` (waiting by default, as `lock$`); the stream emits `acquiring`, `held`, then
 * `refreshed` at each keepalive of the session's lease, and `lost` followed by the error when the lock is lost.
 * Unsubscribing releases the lock, or withdraws from the queue.
 *
 * It is built on the locker's public methods, plus `released` for `onRelease`. The locker holds one lock per id, shared by every `lock(id)`
 * call and stream for that id: the stream completes when someone else releases that lock (`release(id)`,
 * another stream's unsubscribe, `close()`).
 *
 * @throws InvalidArgumentError at once for a bad id or option.
 */
export function lockerLock$(
  { locker, released }: LockerPort,
  id: string | number,
  options?: LockerStreamOptions,
): Observable<LockerStreamState> {
  const lockId = validateLockId(id);
  const { onRelease, ...lockOptions } = options ?? {};
  // Validation only (lock() resolves them again); what is not an object fails there as it would in lock().
  resolveLockerLockOptions(typeof options === 'object' && options !== null ? lockOptions : options);
  if (onRelease !== undefined && typeof onRelease !== 'function') {
    throw new InvalidArgumentError(`Expected \`onRelease\` to be a function, got ${show(onRelease)}`);
  }
  const signal = lockOptions.signal;
  const callOptions: LockerLockOptions = { ...lockOptions, wait: lockOptions.wait ?? true };

  return new Observable<LockerStreamState>((subscriber) => {
    /** `waiting` until the lock is held; `over` once this stream no longer owns anything to give back. */
    let phase: 'waiting' | 'held' | 'over' = 'waiting';
    let held: Extract<LockerStreamState, { kind: 'held' }> | undefined;
    const subscription = locker.lockState$(lockId).subscribe((state) => {
      switch (state.kind) {
        case 'idle':
          // Before `held`, a failed lock() call is reported by its rejection below. After it, someone released
          // the lock this stream shares.
          if (phase === 'held') {
            phase = 'over';
            subscriber.complete();
          }
          return;
        case 'acquiring':
          if (phase === 'waiting') subscriber.next(state);
          return;
        case 'held':
          phase = 'held';
          held = state;
          subscriber.next(state);
          return;
        case 'lost':
          phase = 'over';
          subscriber.next(state);
          subscriber.error(state.error);
          return;
      }
    });
    subscription.add(
      // skip(1): the session's current state, which may be an earlier `refreshed`.
      locker.state$.pipe(skip(1)).subscribe((session) => {
        if (session.kind !== 'refreshed' || phase !== 'held' || !held || session.leaseId !== held.leaseId) return;
        const { key, id: holderId, fencingToken } = held;
        subscriber.next({ kind: 'refreshed', key, id: holderId, fencingToken, ttl: session.ttl, lockId });
      }),
    );
    if (subscriber.closed) return subscription;

    if (signal?.aborted) {
      subscriber.error(signal.reason);
      return subscription;
    }
    const onAbort = () => subscriber.error(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });

    // Our own signal for the call: withdrawing this stream's wait must not cancel other callers of lock(id).
    const withdraw = new AbortController();
    locker.lock(lockId, { ...callOptions, signal: withdraw.signal }).then(
      () => undefined,
      (err: unknown) => {
        if (phase !== 'waiting') return;
        phase = 'over';
        subscriber.error(err);
      },
    );

    return () => {
      signal?.removeEventListener('abort', onAbort);
      subscription.unsubscribe();
      const was = phase;
      phase = 'over';
      let done: Promise<void>;
      if (was === 'held') {
        done = locker.release(lockId).catch(() => undefined);
      } else {
        // Withdrawing deletes our queued key at once if no other caller wants the lock; after an end that was not
        // ours (a loss, a failure, a release by someone else), the locker is deleting or has deleted the key.
        if (was === 'waiting') withdraw.abort();
        done = released(lockId);
      }
      onRelease?.(done);
    };
  });
}
