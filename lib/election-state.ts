import type { LockLostError, LossReason } from './errors.js';
import type { Holder } from './state.js';

/**
 * Running for leader, not leading yet: emitted first, and again each time the candidate just ahead of us leaves
 * and we still do not lead.
 */
export interface CandidateState {
  kind: 'candidate';
  /** The election's name: every candidate owns one key under `${name}/`. */
  name: string;
  /** Our proposal: the value of our key. */
  id: string;
  /** Who leads now, once we know someone is ahead of us (`id` is empty for a candidate that stores no value). */
  leader?: Holder;
  /** How many candidates are ahead of us (the leader included), once known. */
  ahead?: number;
  /**
   * Withdraws from the election: the stream completes, our lease is revoked (our key goes with it), and the
   * promise resolves once etcd has that. The same as unsubscribing, but it completes the stream and tells you
   * when etcd has seen it. Never rejects; calling it again (or after the stream ended) returns the same promise.
   */
  resign(): Promise<void>;
}

/** We lead. `fencingToken` is our key's create revision, as a decimal string: it rises from leader to leader. */
export interface LeaderState {
  kind: 'leader';
  name: string;
  /** Our proposal, as we campaigned with it (a later {@link LeaderState.proclaim} does not change this object). */
  id: string;
  fencingToken: string;
  /** Our lease, in lower-case hex as in our key's name. */
  leaseId: string;
  /** Our key in etcd: `${name}/${leaseId}`. */
  leaderKey: string;
  /** Hands leadership on: see {@link CandidateState.resign}. The next candidate in line leads once etcd has it. */
  resign(): Promise<void>;
  /**
   * Announces a new value without a new election (Go's `Election.Proclaim`): our key's value becomes `value`, in a
   * transaction that checks that our key still has our create revision. Observers (`leader$`, `etcdctl elect -l`)
   * see the new value; our fencing token stays. Rejects with `ETCDLOCK_NOT_HELD` once we no longer lead,
   * `ETCDLOCK_INVALID_ARGUMENT` for a value that is not a non-empty string, `ETCDLOCK_UNAVAILABLE` if etcd fails.
   */
  proclaim(value: string): Promise<void>;
}

/** We led, and no longer do: the stream errors with `error` right after this state. */
export interface LeadershipLostState {
  kind: 'lost';
  name: string;
  id: string;
  /** The token of the leadership that was lost. */
  fencingToken: string;
  reason: LossReason;
  error: LockLostError;
}

/** The states of one candidate, discriminated on `kind`. */
export type ElectionState = CandidateState | LeaderState | LeadershipLostState;

/** Who leads an election, as {@link leader$} reports it. */
export interface Leader {
  /** The leader's proposal: the value of its key (`etcdctl elect`'s proposal; updated by a proclaim). */
  id: string;
  /** The leader key's create revision, a decimal string: it rises from one leader to the next. */
  fencingToken: string;
  /** The leader's lease in lower-case hex (`'0'` for a key on no lease). */
  leaseId: string;
  /** The leader's key in etcd, `${name}/<lease hex>` for every candidate that follows the protocol. */
  leaderKey: string;
}
