import { Observable, skip } from 'rxjs';
import type { Locker } from './locker.js';
import { type LockerLockOptions, resolveLockerLockOptions, validateLockId } from './locker-options.js';
import type { LockState } from './state.js';

/** What `locker.lock$(id)` emits: the states of {@link lock$}, with the lock's `lockId`. */
export type LockerStreamState = LockState & { lockId: string };

/**
 * `locker.lock$(id)`: one lock of a locker as a {@link lock$}-like stream, on the locker's long-lived session.
 * Subscribing calls `lock(id)` (waiting by default, as `lock$`); the stream emits `acquiring`, `held`, then
 * `refreshed` at each keepalive of the session's lease, and `lost` followed by the error when the lock is lost.
 * Unsubscribing releases the lock, or withdraws from the queue.
 *
 * It is built on the locker's public methods only. The locker holds one lock per id, shared by every `lock(id)`
 * call and stream for that id: the stream completes when someone else releases that lock (`release(id)`,
 * another stream's unsubscribe, `close()`).
 *
 * @throws InvalidArgumentError at once for a bad id or option.
 */
export function lockerLock$(
  locker: Locker,
  id: string | number,
  options?: LockerLockOptions,
): Observable<LockerStreamState> {
  const lockId = validateLockId(id);
  resolveLockerLockOptions(options); // validation only: the call below resolves them again
  const signal = options?.signal;
  const callOptions: LockerLockOptions = { ...options, wait: options?.wait ?? true };

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
      if (was === 'waiting') withdraw.abort();
      else if (was === 'held') void locker.release(lockId).catch(() => undefined);
    };
  });
}
