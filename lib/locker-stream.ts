import { Observable, type Subscriber } from 'rxjs';
import { InvalidArgumentError } from './errors.js';
import type { Locker } from './locker.js';
import { type LockerLockOptions, resolveLockerLockOptions, validateLockId } from './locker-options.js';
import { show } from './options.js';
import type { LockerHeld, LockerLockState } from './locker-state.js';
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

/** `lock(id)` as the stream makes it: the call's outcome, and a way to withdraw this call alone while it waits. */
export interface LockRequest {
  held: Promise<LockerHeld>;
  withdraw: (reason: unknown) => void;
}

/** What the locker tells an observer of one lock: its states, the end of the locker, and (if asked) keepalives. */
export interface LockObserver {
  next(state: LockerLockState): void;
  complete(): void;
  /** Each keepalive of the session's lease `leaseId` (hex), with the TTL etcd gave it. */
  refreshed?(leaseId: string, ttl: number): void;
}

/**
 * What the stream needs of its locker: its public methods, and in plain callbacks what `lockState$`, `state$` and
 * `lock(id, { signal })` would give through rxjs subscribers and an AbortController each (about 3 KB per stream).
 */
export interface LockerPort {
  locker: Locker;
  /** Settles once every delete of the id's keys that is under way has reached etcd; at once if none is. */
  released: (lockId: string) => Promise<void>;
  request: (lockId: string, options: LockerLockOptions) => LockRequest;
  /** Registers `observer` for the lock `lockId`; it is told the current state at once. Returns the unregister. */
  observe: (lockId: string, observer: LockObserver) => () => void;
}

/**
 * `locker.lock$(id)`: one lock of a locker as a {@link lock$}-like stream, on the locker's long-lived session.
 * Subscribing calls `lock(id)` (waiting by default, as `lock$`); the stream emits `acquiring`, `held`, then
 * `refreshed` at each keepalive of the session's lease, and `lost` followed by the error when the lock is lost.
 * Unsubscribing releases the lock, or withdraws from the queue.
 *
 * The locker holds one lock per id, shared by every `lock(id)` call and stream for that id: the stream completes
 * when someone else releases that lock (`release(id)`, another stream's unsubscribe, `close()`).
 *
 * @throws InvalidArgumentError at once for a bad id or option.
 */
export function lockerLock$(
  port: LockerPort,
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
  // The caller's signal is the stream's (it errors the stream); the call is withdrawn by the stream alone.
  const { signal, ...rest } = lockOptions;
  const callOptions: LockerLockOptions = { ...rest, wait: rest.wait ?? true };
  return new Observable<LockerStreamState>((subscriber) =>
    new LockerStream(port, lockId, callOptions, signal, onRelease, subscriber).start(),
  );
}

/**
 * One subscription of `locker.lock$(id)`, as one object: thousands may be alive at once, and methods cost nothing
 * per subscription where closures do. It is the locker's observer of the lock, the listener of the caller's
 * signal (`handleEvent`) and the subscription's teardown (`unsubscribe`).
 */
class LockerStream implements LockObserver {
  /** `waiting` until the lock is held; `over` once this stream no longer owns anything to give back. */
  #phase: 'waiting' | 'held' | 'over' = 'waiting';
  #held: Extract<LockerStreamState, { kind: 'held' }> | undefined;
  #request: LockRequest | undefined;
  #stopObserving: (() => void) | undefined;

  constructor(
    private readonly port: LockerPort,
    private readonly lockId: string,
    private readonly callOptions: LockerLockOptions,
    private readonly signal: AbortSignal | undefined,
    private readonly onRelease: ((released: Promise<void>) => void) | undefined,
    private readonly subscriber: Subscriber<LockerStreamState>,
  ) {}

  start(): this {
    this.#stopObserving = this.port.observe(this.lockId, this);
    if (this.subscriber.closed) return this;
    const signal = this.signal;
    if (signal?.aborted) {
      this.subscriber.error(signal.reason);
      return this;
    }
    signal?.addEventListener('abort', this, { once: true });
    // Already held (the locker holds the id for another caller): this stream shares it, with no call to make.
    if (this.#phase !== 'waiting') return this;
    // Withdrawing this stream's wait must not cancel other callers of lock(id): the call has no signal of its own.
    this.#request = this.port.request(this.lockId, this.callOptions);
    this.#request.held.catch((err: unknown) => {
      if (this.#phase !== 'waiting') return;
      this.#phase = 'over';
      this.subscriber.error(err);
    });
    return this;
  }

  next(state: LockerLockState): void {
    const subscriber = this.subscriber;
    switch (state.kind) {
      case 'idle':
        // Before `held`, a failed lock() call is reported by its rejection. After it, someone released the lock
        // this stream shares.
        if (this.#phase === 'held') {
          this.#phase = 'over';
          subscriber.complete();
        }
        return;
      case 'acquiring':
        if (this.#phase === 'waiting') subscriber.next(state);
        return;
      case 'held':
        this.#phase = 'held';
        this.#held = state;
        // Nothing to withdraw any more; letting go of the call lets go of everything it kept (its callbacks).
        this.#request = undefined;
        subscriber.next(state);
        return;
      case 'lost':
        this.#phase = 'over';
        subscriber.next(state);
        subscriber.error(state.error);
        return;
    }
  }

  /** The locker finished: what was held or wanted has been reported already (idle, or the call's rejection). */
  complete(): void {}

  refreshed(leaseId: string, ttl: number): void {
    const held = this.#held;
    if (this.#phase !== 'held' || !held || leaseId !== held.leaseId) return;
    const { key, id, fencingToken } = held;
    this.subscriber.next({ kind: 'refreshed', key, id, fencingToken, ttl, lockId: this.lockId });
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    this.subscriber.error(this.signal?.reason);
  }

  /** The teardown: releases what this stream holds, or withdraws its wait. */
  unsubscribe(): void {
    this.signal?.removeEventListener('abort', this);
    this.#stopObserving?.();
    const was = this.#phase;
    this.#phase = 'over';
    const { locker, released } = this.port;
    let done: Promise<void>;
    if (was === 'held') {
      done = locker.release(this.lockId).catch(() => undefined);
    } else {
      // Withdrawing deletes our queued key at once if no other caller wants the lock; after an end that was not
      // ours (a loss, a failure, a release by someone else), the locker is deleting or has deleted the key.
      if (was === 'waiting') this.#request?.withdraw(new Error('the stream was unsubscribed'));
      done = released(this.lockId);
    }
    this.onRelease?.(done);
  }
}
