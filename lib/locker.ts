import type { Etcd3, IKeyValue } from 'etcd3';
import { BehaviorSubject, Observable, Subject, type Subscription } from 'rxjs';
import { LockBusyError, LockLostError, LockTimeoutError, NotHeldError, UnavailableError } from './errors.js';
import { leaseGone } from './etcd-errors.js';
import {
  type LockerLockOptions,
  type LockerOptions,
  resolveLockerLockOptions,
  resolveLockerOptions,
  type ResolvedLockerOptions,
  validateLockId,
} from './locker-options.js';
import { TxnBatcher } from './locker-batch.js';
import { retryingSession$, type SessionPhase } from './locker-session.js';
import type { LockerHeld, LockerLockState, LockerLost, LockerState } from './locker-state.js';
import {
  type LockObserver,
  type LockerPort,
  lockerLock$,
  type LockerStreamOptions,
  type LockerStreamState,
  type LockRequest,
} from './locker-stream.js';
import { SharedWatch, sessionClient } from './locker-watch.js';
import { RollbackCheck } from './store-rollback.js';
import { contend$, type MutexEvent, release } from './mutex.js';
import { assertClient } from './options.js';
import type { Lease } from './session.js';
import type { Holder } from './state.js';

/**
 * Many locks on one session, with consul-locker's API: `lock(id)`, `release(id)`, `close()`. Every lock is the
 * etcd lock named `${name}/${id}` (so `etcdctl lock ${name}/${id}` excludes it, and the other way round), and
 * all of them hang on the locker's one lease: one keepalive stream and one watch, however many are held.
 */
export interface Locker extends AsyncDisposable {
  /** The key prefix given as `name`. */
  readonly name: string;
  /** The value stored in each key of this locker: who holds the lock, as others see it. */
  readonly holderId: string;
  /** The session lease's TTL asked for, in seconds. */
  readonly ttl: number;
  /** Milliseconds between keepalives of the session's lease. */
  readonly refreshInterval: number;
  /** The session: its current state at subscribe, then every change; completes once `closed` or `failed`. */
  readonly state$: Observable<LockerState>;
  /** Every held lock that is lost (its key deleted or changed, or the session lost), as it happens. */
  readonly lost$: Observable<LockerLost>;
  /**
   * Takes the lock `${name}/${id}`. Rejects at once with `ETCDLOCK_BUSY` if another holder has it, unless
   * `wait` or `timeout` says to wait; resolves at once, without a round trip, if this locker holds it already.
   */
  lock(id: string | number, options?: LockerLockOptions): Promise<LockerHeld>;
  /** Releases the lock (or cancels a `lock(id)` still waiting); rejects with `ETCDLOCK_NOT_HELD` when neither. */
  release(id: string | number): Promise<void>;
  /** True while this locker holds the lock `id`. */
  isHeld(id: string | number): boolean;
  /** The lock's state at subscribe, then every change: `idle`, `acquiring`, `held`, `lost`. */
  lockState$(id: string | number): Observable<LockerLockState>;
  /**
   * The lock `${name}/${id}` as a {@link lock$} stream on this locker's session: subscribing takes it (waiting,
   * unless `wait: false` or `timeout: 0`), unsubscribing releases it. See {@link lockerLock$}.
   */
  lock$(id: string | number, options?: LockerStreamOptions): Observable<LockerStreamState>;
  /** Cancels every pending `lock()`, releases every lock and revokes the lease; resolves once etcd has it. */
  close(): Promise<void>;
}

/**
 * Creates a locker: its session (one lease) is created at once, and retried on failure `maxRetries` times,
 * `retryInterval` seconds apart. `lock()` calls made before it exists wait for it.
 *
 * @throws InvalidArgumentError at once (before any network call) for a bad client or option.
 *
 * @example
 * ```ts
 * import { Etcd3 } from 'etcd3';
 * import { createLocker, isLockError } from 'etcd-lock';
 *
 * const locker = createLocker(new Etcd3(), { name: '/writers', ttl: 15 });
 * try {
 *   const held = await locker.lock('123'); // ETCDLOCK_BUSY if another process holds /writers/123
 *   await db.write({ id: 123, fencingToken: held.fencingToken });
 *   await locker.release('123');
 * } catch (err) {
 *   if (isLockError(err) && err.code === 'ETCDLOCK_BUSY') console.log('someone else is writing 123');
 *   else throw err;
 * }
 * await locker.close();
 * ```
 */
export function createLocker(client: Etcd3, options: LockerOptions): Locker {
  assertClient(client);
  return new SessionLocker(client, resolveLockerOptions(options));
}

/** True for a locker made by {@link createLocker} (of this copy of the package). */
export function isLocker(value: unknown): value is Locker {
  return value instanceof SessionLocker;
}

/** One `lock(id)` call still waiting for its outcome. */
interface Caller {
  wait: boolean;
  resolve: (held: LockerHeld) => void;
  reject: (err: unknown) => void;
}

/** A lock this locker holds or is acquiring: one per id, shared by every `lock(id)` call for it. */
interface Entry {
  readonly lockId: string;
  readonly key: string;
  readonly callers: Set<Caller>;
  held: LockerHeld | undefined;
  /** The contend$ subscription: queued, or held. Undefined while waiting for a session or an earlier release. */
  attempt: Subscription | undefined;
  /** Whether the running attempt waits in the queue (else it fails with ETCDLOCK_BUSY). */
  waits: boolean;
  /** Set once the running attempt learned that someone is ahead. */
  waitingFor: { holder: Holder | undefined; ahead: number } | undefined;
}

/** The session locks are taken on: its lease, and the client view that contend$ uses. */
interface Session {
  lease: Lease;
  client: Etcd3;
  ended: boolean;
  /** `!ended`, made once per session: thousands of locks share it (a failed delete is tried again while it holds). */
  live: () => boolean;
}

class SessionLocker implements Locker {
  readonly #client: Etcd3;
  readonly #options: ResolvedLockerOptions;
  readonly #watch: SharedWatch;
  /** Notices etcd restored from an older snapshot under our locks (see store-rollback.ts). */
  readonly #rollback: RollbackCheck;
  readonly #entries = new Map<string, Entry>();
  /** Per id, the release of its last attempt (a deleted key) still on its way: the next attempt waits for it. */
  readonly #releasing = new Map<string, Promise<void>>();
  readonly #observers = new Map<string, Set<LockObserver>>();
  /** The observers that also want the session's keepalives (`locker.lock$` streams). */
  readonly #refreshObservers = new Set<LockObserver>();
  /** What `lock$(id)` streams use of this locker: one object for all of them. */
  readonly #port: LockerPort;
  readonly #state$: BehaviorSubject<LockerState>;
  readonly #lost$ = new Subject<LockerLost>();
  readonly #refreshNow$ = new Subject<void>();
  /** Revokes of this locker's leases still on their way. */
  readonly #revokes = new Set<Promise<void>>();
  readonly #sessionSubscription: Subscription;
  #session: Session | undefined;
  /** The newest lease granted: the one to take locks on once the shared watch is ready. */
  #latestLease: Lease | undefined;
  #failure: UnavailableError | undefined;
  #closing: Promise<void> | undefined;
  #finished = false;

  constructor(client: Etcd3, options: ResolvedLockerOptions) {
    this.#client = client;
    this.#options = options;
    this.#state$ = new BehaviorSubject<LockerState>({ kind: 'connecting', name: options.name, attempt: 1 });
    this.#watch = new SharedWatch(client, `${options.name}/`, (key, kv) => this.#orphanCheck(key, kv));
    this.#rollback = new RollbackCheck(client);
    this.#port = {
      locker: this,
      released: (lockId) => this.#releasing.get(lockId) ?? Promise.resolve(),
      request: (lockId, options) => this.#request(lockId, options),
      observe: (lockId, observer) => this.#observe(lockId, observer),
    };
    this.#sessionSubscription = retryingSession$(client, options, {
      refreshNow$: this.#refreshNow$,
      onRelease: (revoked) => {
        this.#revokes.add(revoked);
        void revoked.then(() => this.#revokes.delete(revoked));
      },
    }).subscribe({
      next: (phase) => this.#onSession(phase),
      error: (err: unknown) => this.#fail(err as UnavailableError),
    });
  }

  get name(): string {
    return this.#options.name;
  }

  get ttl(): number {
    return this.#options.ttlSeconds;
  }

  get refreshInterval(): number {
    return this.#options.refreshIntervalMs;
  }

  get holderId(): string {
    return this.#options.holderId;
  }

  get state$(): Observable<LockerState> {
    return this.#state$.asObservable();
  }

  get lost$(): Observable<LockerLost> {
    return this.#lost$.asObservable();
  }

  lock(id: string | number, options?: LockerLockOptions): Promise<LockerHeld> {
    let lockId: string;
    try {
      lockId = validateLockId(id);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return this.#request(lockId, options).held;
  }

  /** `lock(id)`, and a way to withdraw that one call while it waits (as its own AbortSignal would). */
  #request(lockId: string, options: LockerLockOptions | undefined): LockRequest {
    let o: ReturnType<typeof resolveLockerLockOptions>;
    try {
      o = resolveLockerLockOptions(options);
    } catch (err) {
      return refused(err instanceof Error ? err : new Error(String(err)));
    }
    const signal = o.signal;
    if (signal?.aborted) return refused(signal.reason as Error);
    if (this.#closing) return refused(this.#closedError());
    if (this.#failure) return refused(this.#failure);
    const existing = this.#entries.get(lockId);
    if (existing?.held) return { held: Promise.resolve(existing.held), withdraw: nothingToWithdraw };

    let entry: Entry;
    let caller: Caller;
    const held = new Promise<LockerHeld>((resolve, reject) => {
      entry = existing ?? this.#newEntry(lockId);
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => this.#abandon(entry, caller, signal?.reason);
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      caller = {
        wait: o.wait,
        resolve: (held) => {
          done();
          resolve(held);
        },
        reject: (err) => {
          done();
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- signal.reason, unchanged
          reject(err);
        },
      };
      entry.callers.add(caller);
      if (o.timeoutMs !== undefined) {
        const timeoutMs = o.timeoutMs;
        timer = setTimeout(() => this.#abandon(entry, caller, new LockTimeoutError(entry.key, timeoutMs)), timeoutMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });

      if (!existing) {
        this.#notify(entry, () => ({ kind: 'acquiring', key: entry.key, id: this.holderId, lockId }));
        this.#start(entry);
      } else if (!o.wait && entry.waitingFor) {
        // Joining an attempt that already waits in the queue: this caller does not want to wait.
        this.#abandon(entry, caller, new LockBusyError(entry.key, entry.waitingFor.holder));
      }
      // Otherwise this caller shares the attempt in flight. A try-once attempt that turns out busy is started
      // again in waiting mode for the callers who want to wait (see #onFailure).
    });
    return { held, withdraw: (reason) => this.#abandon(entry, caller, reason) };
  }

  async release(id: string | number): Promise<void> {
    const lockId = validateLockId(id);
    const entry = this.#entries.get(lockId);
    if (!entry) throw new NotHeldError(`${this.name}/${lockId}`);
    if (!entry.held) {
      const cancelled = new NotHeldError(entry.key, `release() cancelled the wait for ${JSON.stringify(entry.key)}`);
      for (const caller of entry.callers) caller.reject(cancelled);
      entry.callers.clear();
    }
    this.#drop(entry);
    await this.#releasing.get(lockId);
  }

  isHeld(id: string | number): boolean {
    return this.#entries.get(validateLockId(id))?.held !== undefined;
  }

  lockState$(id: string | number): Observable<LockerLockState> {
    const lockId = validateLockId(id);
    return new Observable<LockerLockState>((subscriber) => this.#observe(lockId, subscriber));
  }

  lock$(id: string | number, options?: LockerStreamOptions): Observable<LockerStreamState> {
    return lockerLock$(this.#port, id, options);
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  toString(): string {
    return `[etcd-lock locker ${this.name} ${this.holderId}]`;
  }

  /** Tells `observer` the lock's state now and at every change (and keepalives, if it asks): until the returned stop. */
  #observe(lockId: string, observer: LockObserver): () => void {
    observer.next(this.#stateOf(lockId));
    if (this.#finished) {
      observer.complete();
      return () => undefined;
    }
    let observers = this.#observers.get(lockId);
    if (!observers) this.#observers.set(lockId, (observers = new Set()));
    observers.add(observer);
    if (observer.refreshed) this.#refreshObservers.add(observer);
    return () => {
      observers.delete(observer);
      this.#refreshObservers.delete(observer);
      if (observers.size === 0 && this.#observers.get(lockId) === observers) this.#observers.delete(lockId);
    };
  }

  // --- the session ---------------------------------------------------------------------------------------------

  #onSession(phase: SessionPhase): void {
    const name = this.name;
    switch (phase.kind) {
      case 'connecting': {
        const current = this.#state$.value;
        // The first try was announced by the constructor already.
        if (phase.attempt === 1 && current.kind === 'connecting' && current.attempt === 1) return;
        this.#state$.next({
          kind: 'connecting',
          name,
          attempt: phase.attempt,
          ...(phase.error && { error: phase.error }),
        });
        return;
      }
      case 'ready': {
        const { lease } = phase;
        this.#latestLease = lease;
        // Locks are taken only once the shared watch is in place: it must see every change after their writes.
        void this.#watch.ready().then(() => {
          if (this.#closing || this.#latestLease !== lease) return;
          const session: Session = { lease, ended: false, client: this.#client, live: () => !session.ended };
          session.client = sessionClient(new TxnBatcher(this.#client), this.#watch, () => session.ended);
          this.#session = session;
          this.#state$.next({ kind: 'ready', name, leaseId: lease.hex, ttl: lease.ttlSeconds });
          for (const entry of [...this.#entries.values()]) if (!entry.attempt) this.#start(entry);
        });
        // Until then the state stays `connecting`: a refresh or a loss of this lease is reported below.
        return;
      }
      case 'refreshed':
        if (this.#session?.lease === phase.lease) {
          this.#state$.next({ kind: 'refreshed', name, leaseId: phase.lease.hex, ttl: phase.ttlSeconds });
          // The lease lives after all: a lock that stopped when etcd said it did not (see #onFailure) starts again.
          for (const entry of [...this.#entries.values()]) if (!entry.attempt) this.#start(entry);
          for (const observer of [...this.#refreshObservers]) observer.refreshed?.(phase.lease.hex, phase.ttlSeconds);
          // What the shared watch has seen counts too (a release after the snapshot, say).
          this.#rollback.reached(this.#watch.latest);
          if (this.#rollback.below(phase.revision)) void this.#checkRollback();
        }
        return;
      case 'lost':
        this.#sessionLost(phase.lease, phase.error);
        return;
    }
  }

  /**
   * A keepalive was answered from below a revision we had seen: if etcd's store went back (restored from an older
   * snapshot), the keys we created since are gone without a delete event, and the shared watch waits for revisions
   * the store has not reached. Starting the watch over makes every lock read its own key again: those still there
   * are kept, the others are lost (`deleted`).
   */
  async #checkRollback(): Promise<void> {
    const current = await this.#rollback.confirm();
    if (current === undefined || this.#closing) return;
    this.#watch.restart(`etcd went back to revision ${current}: restored from an older snapshot`);
  }

  /**
   * A key of ours that no lock of ours stands for: the put of a `lock(id)` that failed with a time-out while etcd
   * stalled, which etcd applied after all. Nobody would ever delete it before our lease ends, and it would keep the
   * lock from everyone: delete it (guarded by its create revision), as the release of that id.
   */
  #orphanCheck(key: string, kv: IKeyValue): void {
    const session = this.#session;
    if (!session) return;
    const { lease } = session;
    if (kv.lease !== lease.id || !key.endsWith(`/${lease.hex}`)) return;
    const lockId = key.slice(this.name.length + 1, key.length - lease.hex.length - 1);
    if (this.#entries.has(lockId)) return;
    const ticket = { holderKey: key, fencingToken: kv.create_revision };
    this.#trackRelease(lockId, release(session.client, ticket, session.live));
  }

  /** Every lock taken or queued on the lost lease is reported lost; its keys go with the lease. */
  #sessionLost(lease: Lease, error: LockLostError): void {
    if (this.#latestLease === lease) this.#latestLease = undefined;
    const session = this.#session;
    if (session?.lease === lease) {
      session.ended = true;
      this.#session = undefined;
    }
    this.#state$.next({ kind: 'lost', name: this.name, leaseId: lease.hex, error });
    for (const entry of [...this.#entries.values()]) {
      if (!entry.attempt) continue; // not queued yet: it waits for the next session
      const lost = new LockLostError(entry.key, error.reason, `the locker's session (lease ${lease.hex}) was lost`, {
        cause: error,
      });
      if (entry.held) this.#reportLost(entry, entry.held, lost);
      else for (const caller of entry.callers) caller.reject(lost);
      entry.callers.clear();
      this.#drop(entry);
    }
  }

  #fail(error: UnavailableError): void {
    this.#failure = error;
    this.#state$.next({ kind: 'failed', name: this.name, error });
    for (const entry of [...this.#entries.values()]) {
      for (const caller of entry.callers) caller.reject(error);
      entry.callers.clear();
      this.#drop(entry);
    }
    void this.#finish();
  }

  async #close(): Promise<void> {
    const session = this.#session;
    if (session) session.ended = true; // no per-key deletes: the revoke below deletes every key at once
    this.#session = undefined;
    const closed = this.#closedError();
    for (const entry of [...this.#entries.values()]) {
      for (const caller of entry.callers) caller.reject(closed);
      entry.callers.clear();
      this.#drop(entry);
    }
    this.#sessionSubscription.unsubscribe(); // revokes the lease (once granted, if the grant is in flight)
    await Promise.all([...this.#revokes, ...this.#releasing.values()]);
    if (!this.#failure) this.#state$.next({ kind: 'closed', name: this.name });
    await this.#finish();
  }

  async #finish(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    this.#state$.complete();
    this.#lost$.complete();
    for (const observers of this.#observers.values()) for (const observer of [...observers]) observer.complete();
    this.#observers.clear();
    this.#refreshObservers.clear();
    await this.#watch.close();
  }

  #closedError(): UnavailableError {
    return new UnavailableError(`The locker ${JSON.stringify(this.name)} takes no more locks`, 'it was closed');
  }

  // --- one lock --------------------------------------------------------------------------------------------------

  #newEntry(lockId: string): Entry {
    const entry: Entry = {
      lockId,
      key: `${this.name}/${lockId}`,
      callers: new Set(),
      held: undefined,
      attempt: undefined,
      waits: false,
      waitingFor: undefined,
    };
    this.#entries.set(lockId, entry);
    return entry;
  }

  /** Starts contending for `entry` on the current session, once the release of its last attempt is through. */
  #start(entry: Entry): void {
    const session = this.#session;
    if (!session || entry.attempt || this.#entries.get(entry.lockId) !== entry) return;
    const releasing = this.#releasing.get(entry.lockId);
    if (releasing) {
      // Our key from the last attempt is still being deleted; a new put on the same lease would find it there
      // and take its place, and the delete would then take the new lock away.
      void releasing.then(() => this.#start(entry));
      return;
    }
    entry.waits = [...entry.callers].some((caller) => caller.wait);
    entry.waitingFor = undefined;
    const { lease } = session;
    entry.attempt = contend$(
      session.client,
      { key: entry.key, prefix: `${entry.key}/`, id: this.holderId, lease },
      {
        wait: entry.waits,
        deleteOnRelease: true,
        // A key left on the session's lease would keep the lock from everyone for as long as the locker lives.
        retryReleaseWhile: session.live,
        onRelease: (released) => this.#trackRelease(entry.lockId, released),
        // Every watch of session.client comes from the locker's one prefix watch, in revision order.
        orderedWatches: true,
      },
    ).subscribe({
      next: (step) => this.#onStep(entry, lease, step),
      error: (err: unknown) => this.#onFailure(entry, err),
    });
  }

  #onStep(entry: Entry, lease: Lease, step: MutexEvent): void {
    if (step.kind === 'waiting') {
      entry.waitingFor = { holder: step.holder, ahead: step.ahead };
      const busy = new LockBusyError(entry.key, step.holder);
      for (const caller of [...entry.callers]) if (!caller.wait) this.#abandon(entry, caller, busy);
      this.#notify(entry, () => ({
        kind: 'acquiring',
        key: entry.key,
        id: this.holderId,
        lockId: entry.lockId,
        ...(step.holder && { waitingFor: step.holder }),
        ahead: step.ahead,
      }));
      return;
    }
    this.#rollback.reached(step.ticket.fencingToken);
    const held: LockerHeld = {
      kind: 'held',
      key: entry.key,
      id: this.holderId,
      fencingToken: step.ticket.fencingToken,
      leaseId: lease.hex,
      holderKey: step.ticket.holderKey,
      lockId: entry.lockId,
    };
    entry.held = held;
    entry.waitingFor = undefined;
    for (const caller of entry.callers) caller.resolve(held);
    entry.callers.clear();
    this.#notify(entry, () => held);
  }

  #onFailure(entry: Entry, err: unknown): void {
    entry.attempt = undefined;
    if (this.#entries.get(entry.lockId) !== entry) return;
    // Is our lease still there? A lost key may have gone with it (a revoke from outside): the next keepalive says.
    if (err instanceof UnavailableError || err instanceof LockLostError) this.#refreshNow$.next();
    if (entry.held) {
      const lost =
        err instanceof LockLostError
          ? err
          : new LockLostError(entry.key, 'expired', 'the lock could not be kept', { cause: err });
      this.#reportLost(entry, entry.held, lost);
      this.#drop(entry);
      return;
    }
    if (leaseGone(err)) {
      // Our lease is gone and the session does not know it yet (the keepalive just asked for will tell it). Nothing
      // was queued: like a call made while there is no session, this one waits for the next (see #sessionLost).
      return;
    }
    if (err instanceof LockBusyError && !entry.waits) {
      for (const caller of [...entry.callers]) if (!caller.wait) this.#abandon(entry, caller, err);
      // Callers who joined wanting to wait get an attempt that waits. Started a microtask later: this
      // attempt's teardown (which registers the delete of its key) runs right after this error handler.
      if (entry.callers.size > 0) queueMicrotask(() => this.#start(entry));
      return;
    }
    for (const caller of entry.callers) caller.reject(err);
    entry.callers.clear();
    this.#drop(entry);
  }

  /** Rejects one caller; an attempt nobody waits for any more is cancelled (its queued key is deleted). */
  #abandon(entry: Entry, caller: Caller, err: unknown): void {
    if (!entry.callers.delete(caller)) return;
    caller.reject(err);
    if (entry.callers.size === 0 && !entry.held && this.#entries.get(entry.lockId) === entry) this.#drop(entry);
  }

  /** Forgets `entry` and ends its attempt: a held or queued key is deleted (unless the session has ended). */
  #drop(entry: Entry): void {
    if (this.#entries.get(entry.lockId) === entry) this.#entries.delete(entry.lockId);
    const attempt = entry.attempt;
    entry.attempt = undefined;
    entry.held = undefined;
    attempt?.unsubscribe();
    this.#notify(entry, () => ({ kind: 'idle', key: entry.key, id: this.holderId, lockId: entry.lockId }));
  }

  #reportLost(entry: Entry, held: LockerHeld, error: LockLostError): void {
    const lost: LockerLost = {
      kind: 'lost',
      key: entry.key,
      id: this.holderId,
      fencingToken: held.fencingToken,
      reason: error.reason,
      error,
      lockId: entry.lockId,
    };
    this.#notify(entry, () => lost);
    this.#lost$.next(lost);
  }

  #trackRelease(lockId: string, released: Promise<void>): void {
    const earlier = this.#releasing.get(lockId);
    const all: Promise<void> = (earlier ? Promise.all([earlier, released]) : released).then(() => {
      if (this.#releasing.get(lockId) === all) this.#releasing.delete(lockId);
    });
    this.#releasing.set(lockId, all);
  }

  #stateOf(lockId: string): LockerLockState {
    const entry = this.#entries.get(lockId);
    const base = { key: `${this.name}/${lockId}`, id: this.holderId, lockId };
    if (!entry) return { kind: 'idle', ...base };
    if (entry.held) return entry.held;
    const waiting = entry.waitingFor;
    return {
      kind: 'acquiring',
      ...base,
      ...(waiting && { ahead: waiting.ahead }),
      ...(waiting?.holder && { waitingFor: waiting.holder }),
    };
  }

  /** Tells the observers of `entry`'s id; the state is built only when someone observes (thousands of ids). */
  #notify(entry: Entry, state: () => LockerLockState): void {
    if (this.#observers.size === 0) return;
    const observers = this.#observers.get(entry.lockId);
    if (!observers) return;
    const value = state();
    for (const observer of [...observers]) observer.next(value);
  }
}

/** The withdraw of a request that waits for nothing (refused, or the lock already held). */
function nothingToWithdraw(): void {}

/** A request refused before it started: nothing to withdraw. */
function refused(err: Error): LockRequest {
  return { held: Promise.reject(err), withdraw: nothingToWithdraw };
}
