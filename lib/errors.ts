/**
 * Every failure this package reports is a {@link LockError} with a stable `code`, so callers can
 * `switch (err.code)` instead of matching messages.
 */

/** The codes a {@link LockError} can carry. */
export type LockErrorCode =
  | 'ETCDLOCK_LOST'
  | 'ETCDLOCK_NOT_HELD'
  | 'ETCDLOCK_BUSY'
  | 'ETCDLOCK_TIMEOUT'
  | 'ETCDLOCK_INVALID_ARGUMENT'
  | 'ETCDLOCK_UNAVAILABLE';

// A registry symbol, so that `isLockError` still recognises errors made by a second copy of this
// package (two versions in one node_modules tree), where `instanceof` would say no.
const brand = Symbol.for('etcd-lock.LockError');

/**
 * The base of every error this package throws or emits.
 *
 * @example
 * ```ts
 * try { await lock.lock(); } catch (err) {
 *   if (isLockError(err) && err.code === 'ETCDLOCK_UNAVAILABLE') console.error('etcd is down', err.cause);
 * }
 * ```
 */
export class LockError extends Error {
  readonly code: LockErrorCode;
  readonly [brand] = true;

  constructor(code: LockErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Why a held lock was lost: `expired` (the lease could not be kept alive in time, or is gone), `deleted`
 * (our key was deleted by someone else), `changed` (our key was overwritten by someone else). */
export type LossReason = 'expired' | 'deleted' | 'changed';

/**
 * The lock was lost while held (or our queued key vanished while waiting).
 *
 * @example
 * ```ts
 * lock.on('error', (err: LockLostError) => console.error(`lost ${err.key}: ${err.reason}`));
 * ```
 */
export class LockLostError extends LockError {
  constructor(
    readonly key: string,
    readonly reason: LossReason,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super('ETCDLOCK_LOST', `Lost the lock ${JSON.stringify(key)} (${reason}): ${detail}`, options);
  }
}

/** `unlock()` or `release()` was called for a lock that is not held. */
export class NotHeldError extends LockError {
  constructor(
    readonly key: string,
    message = `The lock ${JSON.stringify(key)} is not held`,
  ) {
    super('ETCDLOCK_NOT_HELD', message);
  }
}

/** A try-once acquisition (`wait: false`) found the lock held by someone else. */
export class LockBusyError extends LockError {
  constructor(
    readonly key: string,
    readonly holder?: { id: string; fencingToken: string },
  ) {
    super(
      'ETCDLOCK_BUSY',
      `The lock ${JSON.stringify(key)} is held` +
        (holder ? ` by ${JSON.stringify(holder.id)} (fencing token ${holder.fencingToken})` : ''),
    );
  }
}

/** Waiting for the lock took longer than the `timeout` option allowed. */
export class LockTimeoutError extends LockError {
  constructor(
    readonly key: string,
    readonly timeoutMs: number,
  ) {
    super('ETCDLOCK_TIMEOUT', `Timed out after ${timeoutMs} ms waiting for the lock ${JSON.stringify(key)}`);
  }
}

/** An argument or option was invalid; thrown before any network call. */
export class InvalidArgumentError extends LockError {
  constructor(message: string) {
    super('ETCDLOCK_INVALID_ARGUMENT', message);
  }
}

/** etcd could not be reached, or refused a request; `cause` holds the etcd3 or gRPC error. */
export class UnavailableError extends LockError {
  constructor(message: string, cause: unknown) {
    super('ETCDLOCK_UNAVAILABLE', `${message}: ${describe(cause)}`, { cause });
  }
}

/**
 * True for any error made by this package, even by another copy of it.
 *
 * @example
 * ```ts
 * if (isLockError(err)) switch (err.code) { case 'ETCDLOCK_BUSY': return; default: throw err; }
 * ```
 */
export function isLockError(value: unknown): value is LockError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
