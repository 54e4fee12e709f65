import { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
import { BehaviorSubject, filter, firstValueFrom, type Observable, skip, Subject, type Subscription } from 'rxjs';
import { InvalidArgumentError, type LockLostError, NotHeldError } from './errors.js';
import { lock$ } from './lock-stream.js';
import { isLocker, type Locker } from './locker.js';
import { validateLockId } from './locker-options.js';
import {
  assertClient,
  resolveLockOptions,
  validateId,
  validateKey,
  validateLimit,
  validateRefreshInterval,
  validateTtl,
  DEFAULT_TTL_SECONDS,
} from './options.js';
import { isHeld, type LockState } from './state.js';

/** The facade's view: a {@link LockState}, or `idle` before `lock()` and after `unlock()` or a loss. */
export type FacadeState = LockState | { kind: 'idle'; key: string; id: string };

/**
 * etcd-lock 1.x's `Lock`, over an etcd3 client and the {@link lock$} stream: `lock()` and `unlock()`
 * promises, `ttl`, `refreshInterval` (and, new in 2, `limit`, for a semaphore) settable before `lock()`, and
 * an `error` event
 * ({@link LockLostError}) when a held lock is lost. Like any EventEmitter, an `error` event with no
 * listener throws: listen for it.
 *
 * @example
 * ```ts
 * import os from 'node:os';
 * import { Etcd3 } from 'etcd3';
 * import { Lock } from 'etcd-lock';
 *
 * const lock = new Lock(new Etcd3(), '/example/lock', os.hostname(), 60);
 * lock.on('error', (err) => console.error('lost the lock:', err.reason));
 * await lock.lock();
 * try { console.log('fencing token', lock.fencingToken); } finally { await lock.unlock(); }
 * ```
 */
export class Lock extends EventEmitter<{ error: [LockLostError] }> {
  /** Where the lock lives: its own lease on a client, or a lock of a locker (on the locker's lease). */
  readonly #on: { client: Etcd3 } | { locker: Locker; lockId: string };
  readonly #key: string;
  readonly #id: string;
  #ttl: number;
  #refreshInterval: number | undefined;
  #limit = 1;
  readonly #state$: BehaviorSubject<FacadeState>;
  readonly #refresh$ = new Subject<void>();
  #subscription: Subscription | undefined;
  #acquiring: { promise: Promise<Lock>; reject: (err: unknown) => void } | undefined;
  #released: Promise<void> = Promise.resolve();

  /**
   * @param etcd an `etcd3` client
   * @param key the lock's name, e.g. `/jobs/reindex`
   * @param id who holds it, e.g. `os.hostname()`
   * @param ttl lease TTL in whole seconds (default 60)
   * @throws InvalidArgumentError at once when an argument is missing or invalid
   */
  constructor(etcd: Etcd3, key: string, id: string, ttl?: number);
  /**
   * The lock `${locker.name}/${lockId}` on a locker's long-lived lease (see docs/locker.md): `lock()` and
   * `unlock()` take and release it without a lease of their own. Its id, TTL and refresh interval are the
   * locker's, and cannot be set here.
   * @throws InvalidArgumentError at once for a bad lock id, or for an id or TTL passed as well
   */
  constructor(locker: Locker, lockId: string | number);
  constructor(etcd: Etcd3 | Locker, key: string | number, id?: string, ttl?: number) {
    super();
    if (isLocker(etcd)) {
      if (id !== undefined || ttl !== undefined) {
        throw new InvalidArgumentError(
          'A Lock on a locker takes its holder id and TTL from the locker: `new Lock(locker, lockId)`',
        );
      }
      const lockId = validateLockId(key);
      this.#on = { locker: etcd, lockId };
      this.#key = `${etcd.name}/${lockId}`;
      this.#id = etcd.holderId;
      this.#ttl = etcd.ttl;
      this.#refreshInterval = etcd.refreshInterval;
    } else {
      // Checked here rather than at lock(): a facade with a bad argument is a bug to report at once.
      resolveLockOptions(key, { id: id as string, ttl: ttl ?? DEFAULT_TTL_SECONDS });
      assertClient(etcd, 'etcd');
      this.#on = { client: etcd };
      this.#key = validateKey(key);
      this.#id = validateId(id);
      this.#ttl = validateTtl(ttl ?? DEFAULT_TTL_SECONDS);
    }
    this.#state$ = new BehaviorSubject<FacadeState>({ kind: 'idle', key: this.#key, id: this.#id });
  }

  /** The lock's name. */
  get key(): string {
    return this.#key;
  }

  /** Who holds it. */
  get id(): string {
    return this.#id;
  }

  /** Lease TTL in seconds; a change applies at the next `lock()` that starts an acquisition. */
  get ttl(): number {
    return this.#ttl;
  }

  set ttl(value: number) {
    this.#assertOwnLease('ttl');
    this.#ttl = validateTtl(value);
  }

  /** Milliseconds between keepalives: `ttl * 1000 / 2` unless set. */
  get refreshInterval(): number {
    return this.#refreshInterval ?? (this.#ttl * 1000) / 2;
  }

  set refreshInterval(value: number) {
    this.#assertOwnLease('refreshInterval');
    this.#refreshInterval = validateRefreshInterval(value, Number.MAX_SAFE_INTEGER);
  }

  /**
   * Up to this many `Lock`s (or `lock$` subscribers) on the key hold it at once: a semaphore. 1 (a lock) unless
   * set; a change applies at the next `lock()` that starts an acquisition. Every contender for one key must use
   * the same limit.
   *
   * @example
   * ```ts
   * const slot = new Lock(client, '/pools/gpu', 'worker-3', 30);
   * slot.limit = 4; // up to four workers at once
   * await slot.lock();
   * ```
   */
  get limit(): number {
    return this.#limit;
  }

  set limit(value: number) {
    this.#assertOwnLease('limit');
    this.#limit = validateLimit(value);
  }

  /** True while the lock is held. */
  get isHeld(): boolean {
    return isHeld(this.#stateOrUndefined());
  }

  /** The fencing token of the current grant, or `undefined` when not held. */
  get fencingToken(): string | undefined {
    const state = this.#stateOrUndefined();
    return isHeld(state) ? state.fencingToken : undefined;
  }

  /** The current state, then every change: `idle`, `acquiring`, `held`, `refreshed`, `lost`. */
  get state$(): Observable<FacadeState> {
    return this.#state$.asObservable();
  }

  /**
   * Acquires the lock, waiting for it if someone holds it; resolves with this lock once held. While
   * held, it refreshes the lease now and resolves once etcd acknowledges (call `unlock()` once).
   * Rejects with an `ETCDLOCK_UNAVAILABLE` error when etcd cannot be reached.
   */
  lock(): Promise<this> {
    // On a locker, the session keeps itself alive: there is no lease of this lock's own to refresh.
    if (this.isHeld) return 'locker' in this.#on ? Promise.resolve(this) : this.#refreshNow();
    if (this.#acquiring) return this.#acquiring.promise as Promise<this>;
    let source$: Observable<LockState>;
    try {
      source$ = this.#source();
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    let resolve!: (lock: this) => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<this>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.#acquiring = { promise, reject };
    this.#subscription = source$.subscribe({
      next: (state) => {
        this.#state$.next(state);
        if (state.kind === 'held') {
          this.#acquiring = undefined;
          resolve(this);
        }
      },
      error: (err: unknown) => {
        this.#subscription = undefined;
        const wasAcquiring = this.#acquiring;
        this.#acquiring = undefined;
        this.#state$.next({ kind: 'idle', key: this.#key, id: this.#id });
        if (wasAcquiring) wasAcquiring.reject(err);
        else this.emit('error', err as LockLostError);
      },
    });
    return promise;
  }

  /**
   * Releases the lock; resolves once our key and lease are gone from etcd. Called while `lock()` is
   * still waiting, it cancels the wait (that `lock()` rejects with `ETCDLOCK_NOT_HELD`).
   * Rejects with {@link NotHeldError} (`ETCDLOCK_NOT_HELD`) when neither held nor being acquired; after a
   * loss, only once the lost lock's key and lease are gone (so `await lock.unlock().catch(() => {})`
   * before closing the client leaves nothing behind).
   */
  async unlock(): Promise<void> {
    const subscription = this.#subscription;
    if (!subscription) {
      // After a loss, the key and lease may still be on their way out: wait for that before saying so.
      await this.#released;
      throw new NotHeldError(this.#key);
    }
    this.#subscription = undefined;
    const acquiring = this.#acquiring;
    this.#acquiring = undefined;
    subscription.unsubscribe();
    this.#state$.next({ kind: 'idle', key: this.#key, id: this.#id });
    acquiring?.reject(new NotHeldError(this.#key, `unlock() cancelled the wait for ${JSON.stringify(this.#key)}`));
    await this.#released;
  }

  /** `await using held = await lock.lock()` releases at the end of the block. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#subscription) await this.unlock();
  }

  override toString(): string {
    return `[etcd-lock ${this.#key} ${this.#id}]`;
  }

  /** The stream this `lock()` subscribes to: `lock$` with the settings of now, or the locker's `lock$`. */
  #source(): Observable<LockState> {
    const onRelease = (released: Promise<void>) => {
      // Keep waiting for an earlier grant's release too (a lost lock's revoke may still be on its way).
      this.#released = Promise.all([this.#released, released]).then(() => undefined);
    };
    if ('locker' in this.#on) return this.#on.locker.lock$(this.#on.lockId, { onRelease });
    const options = resolveLockOptions(this.#key, {
      id: this.#id,
      ttl: this.#ttl,
      refreshInterval: this.refreshInterval,
    });
    return lock$(this.#on.client, this.#key, {
      id: options.id,
      ttl: options.ttlSeconds,
      refreshInterval: options.refreshIntervalMs,
      limit: this.#limit,
      refresh$: this.#refresh$,
      onRelease,
    });
  }

  #assertOwnLease(setting: string): void {
    if ('locker' in this.#on) {
      throw new InvalidArgumentError(
        `A Lock on a locker uses the locker's session: \`${setting}\` is set on createLocker(), not on the Lock`,
      );
    }
  }

  #stateOrUndefined(): LockState | undefined {
    const state = this.#state$.value;
    return state.kind === 'idle' ? undefined : state;
  }

  async #refreshNow(): Promise<this> {
    const next = firstValueFrom(
      this.#state$.pipe(
        skip(1), // the current state is old news
        filter((state) => state.kind === 'refreshed' || state.kind === 'idle' || state.kind === 'lost'),
      ),
    );
    this.#refresh$.next();
    const state = await next;
    if (state.kind !== 'refreshed') throw state.kind === 'lost' ? state.error : new NotHeldError(this.#key);
    return this;
  }
}
