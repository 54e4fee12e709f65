import type { LockLostError, LossReason } from './errors.js';

/** Who is ahead of a waiting contender. */
export interface Holder {
  id: string;
  fencingToken: string;
}

/** Subscribed and queued (or about to be): emitted first, and again each time the wait is re-examined. */
export interface AcquiringState {
  kind: 'acquiring';
  key: string;
  id: string;
  /**
   * The current holder, once we know someone is ahead of us. With a `limit` above 1 (a semaphore), the oldest
   * of the holders: the one that has held the longest, not necessarily the next to leave.
   */
  waitingFor?: Holder;
  /**
   * How many contenders are ahead of us (the holders included), once known. With a `limit`, we hold once it
   * drops below the limit: `ahead - limit + 1` of them must leave first.
   */
  ahead?: number;
}

/** We hold the lock. `fencingToken` is our key's create revision, as a decimal string. */
export interface HeldState {
  kind: 'held';
  key: string;
  id: string;
  fencingToken: string;
  /** Our lease, in lower-case hex as in our key's name. */
  leaseId: string;
  /** Our key in etcd: `<key>/<leaseId>`. */
  holderKey: string;
}

/** A keepalive was acknowledged while we hold the lock. */
export interface RefreshedState {
  kind: 'refreshed';
  key: string;
  id: string;
  fencingToken: string;
  /** The TTL etcd granted with this keepalive, in seconds. */
  ttl: number;
}

/** The lock was lost; the stream errors with `error` right after this state. */
export interface LostState {
  kind: 'lost';
  key: string;
  id: string;
  fencingToken: string;
  reason: LossReason;
  error: LockLostError;
}

/** The states of one contender, discriminated on `kind`. */
export type LockState = AcquiringState | HeldState | RefreshedState | LostState;

/** True while the state means the lock is ours (`held` or `refreshed`). */
export function isHeld(state: LockState | undefined): state is HeldState | RefreshedState {
  return state?.kind === 'held' || state?.kind === 'refreshed';
}
