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
export { whileHeld, type LockGrant } from './while-held.js';
export { withLock } from './with-lock.js';
