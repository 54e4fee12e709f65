/**
 * etcd-lock 2: distributed locks on etcd v3.
 *
 * @example
 * ```ts
 * import { Etcd3 } from 'etcd3';
 * import { lock$, Lock, isLockError } from 'etcd-lock';
 * ```
 * @packageDocumentation
 */
export { lock$ } from './lock-stream.js';
export { Lock, type FacadeState } from './facade.js';
export {
  LockError,
  LockLostError,
  NotHeldError,
  LockBusyError,
  LockTimeoutError,
  InvalidArgumentError,
  UnavailableError,
  isLockError,
  type LockErrorCode,
  type LossReason,
} from './errors.js';
export type { LockOptions } from './options.js';
export {
  isHeld,
  type LockState,
  type AcquiringState,
  type HeldState,
  type RefreshedState,
  type LostState,
  type Holder,
} from './state.js';
export { createLocker, type Locker } from './locker.js';
export type { LockerOptions, LockerLockOptions } from './locker-options.js';
export type { LockerState, LockerLockState, LockerHeld, LockerLost, IdleState } from './locker-state.js';
export type { LockerStreamState, LockerStreamOptions } from './locker-stream.js';
export { whileHeld, type LockGrant } from './while-held.js';
export { withLock } from './with-lock.js';
export { campaign$ } from './election.js';
export { leader$ } from './election-leader.js';
export type { CampaignOptions } from './election-options.js';
export type { ElectionState, CandidateState, LeaderState, LeadershipLostState, Leader } from './election-state.js';
export { holders, type LockContender, type HoldersOptions } from './holders.js';
export { lockFaultHandling, EtcdRefusedError } from './fault-handling.js';
