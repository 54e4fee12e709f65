import type { LockLostError, UnavailableError } from './errors.js';
import type { AcquiringState, HeldState, LostState } from './state.js';

/**
 * The state of a locker's session (its one lease), as `locker.state$` reports it. `connecting` comes first, and
 * again after a loss (a new session is created at once) or before each retry; `failed` and `closed` are final.
 */
export type LockerState =
  | {
      kind: 'connecting';
      name: string;
      /** 1 for the first try, up to `maxRetries + 1`. */
      attempt: number;
      /** Why the previous try failed (absent on the first). */
      error?: UnavailableError;
    }
  | { kind: 'ready'; name: string; leaseId: string; ttl: number }
  | { kind: 'refreshed'; name: string; leaseId: string; ttl: number }
  | {
      kind: 'lost';
      name: string;
      leaseId: string;
      /** Every lock held on the session was reported lost with a `LockLostError` whose `cause` is this. */
      error: LockLostError;
    }
  | { kind: 'failed'; name: string; error: UnavailableError }
  | { kind: 'closed'; name: string };

/** Not held by this locker, and not being acquired. */
export interface IdleState {
  kind: 'idle';
  key: string;
  id: string;
}

/**
 * What the locker reports about one lock: the states of {@link lock$} (`key` is the lock, `${name}/${lockId}`;
 * `id` is the locker's `holderId`), plus `lockId`, and `idle` when this locker neither holds nor wants it.
 */
export type LockerLockState = (IdleState | AcquiringState | HeldState | LostState) & { lockId: string };

/** What `locker.lock(id)` resolves with: a `held` state, usable wherever a {@link HeldState} is. */
export type LockerHeld = HeldState & { lockId: string };

/** One held lock that was lost, as `locker.lost$` reports it. */
export type LockerLost = LostState & { lockId: string };
