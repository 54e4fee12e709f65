import type { Etcd3 } from 'etcd3';
import {
  asyncScheduler,
  catchError,
  concat,
  defer,
  EMPTY,
  filter,
  finalize,
  fromEvent,
  map,
  merge,
  mergeMap,
  type Observable,
  of,
  startWith,
  throwError,
  timer,
} from 'rxjs';
import { LockLostError, LockTimeoutError } from './errors.js';
import { contend$ } from './mutex.js';
import { assertClient, type LockOptions, resolveLockOptions } from './options.js';
import { session$ } from './session.js';
import type { LockState } from './state.js';

/** How much longer than `timeout` a hanging lease grant may take: enough for the timeout to be what fails. */
const GRANT_GRACE_AFTER_TIMEOUT_MS = 250;

/**
 * A lock as a cold stream of states: each subscription is one contender on its own lease.
 *
 * It emits `acquiring` (again, with who holds the lock, each time the wait is re-examined), then
 * `held` with the fencing token, then `refreshed` at every acknowledged keepalive. On loss it emits
 * `lost` and then errors with that state's {@link LockLostError}, so that work chained after it is torn
 * down. Unsubscribing at any point releases: the queued or held key goes, the lease is revoked, every
 * watch and timer stops.
 *
 * With `limit: N`, a semaphore: up to N subscribers on the key hold at once, each with its own fencing token
 * (its key's create revision), and the others wait in FIFO order.
 *
 * @throws InvalidArgumentError at once (before any network call) for a bad client, key or option.
 *
 * @example
 * ```ts
 * import { Etcd3 } from 'etcd3';
 * import { lock$ } from 'etcd-lock';
 *
 * const client = new Etcd3({ hosts: '127.0.0.1:2379' });
 * const subscription = lock$(client, '/jobs/reindex', { ttl: 10 }).subscribe({
 *   next: (state) => console.log(state.kind, 'fencingToken' in state ? state.fencingToken : ''),
 *   error: (err) => console.error('lock failed or lost:', err.code),
 * });
 * // ...later: release
 * subscription.unsubscribe();
 * ```
 */
export function lock$(client: Etcd3, key: string, options?: LockOptions): Observable<LockState> {
  assertClient(client);
  const o = resolveLockOptions(key, options);
  const base = { key: o.key, id: o.id };

  return defer(() => {
    const releases: Promise<void>[] = [];
    const track = (released: Promise<void>) => void releases.push(released);
    let fencingToken: string | undefined;

    const contention$ = session$(client, {
      name: o.key,
      ttlSeconds: o.ttlSeconds,
      refreshIntervalMs: o.refreshIntervalMs,
      scheduler: o.scheduler,
      refreshNow$: o.refresh$,
      onRelease: track,
      releaseAfter: o.releaseAfter,
      // A grant still hanging when the timeout fires gives up just after it, so the release is not held up.
      grantTimeoutMs: o.wait && o.timeoutMs !== undefined ? o.timeoutMs + GRANT_GRACE_AFTER_TIMEOUT_MS : undefined,
    }).pipe(
      mergeMap((event): Observable<LockState> => {
        if (event.kind === 'refreshed') {
          return fencingToken === undefined
            ? EMPTY
            : of({ kind: 'refreshed', ...base, fencingToken, ttl: event.ttlSeconds });
        }
        const lease = event.lease;
        // The lease is this lock's alone: revoking it at teardown deletes our key too, in one request.
        return contend$(
          client,
          { key: o.key, prefix: o.prefix, id: o.id, lease },
          { wait: o.wait, limit: o.limit, deleteOnRelease: false },
        ).pipe(
          map((step): LockState => {
            if (step.kind === 'waiting') {
              return { kind: 'acquiring', ...base, ...(step.holder && { waitingFor: step.holder }), ahead: step.ahead };
            }
            fencingToken = step.ticket.fencingToken;
            return { kind: 'held', ...base, fencingToken, leaseId: lease.hex, holderKey: step.ticket.holderKey };
          }),
        );
      }),
      // Loss of a held lock is announced as a state before the error; any other failure just errors.
      catchError((err: unknown) =>
        fencingToken !== undefined && err instanceof LockLostError
          ? concat(
              of<LockState>({ kind: 'lost', ...base, fencingToken, reason: err.reason, error: err }),
              throwError(() => err),
            )
          : throwError(() => err),
      ),
    );

    const timeout$ =
      o.wait && o.timeoutMs !== undefined
        ? timer(o.timeoutMs, o.scheduler ?? asyncScheduler).pipe(
            filter(() => fencingToken === undefined),
            map(() => {
              throw new LockTimeoutError(o.key, o.timeoutMs ?? 0);
            }),
          )
        : EMPTY;

    const signal = o.signal;
    if (signal?.aborted) {
      // Nothing was started, so nothing to release; onRelease is still called once, as promised.
      return throwError(() => signal.reason as unknown).pipe(finalize(() => o.onRelease?.(Promise.resolve())));
    }
    const abort$ = signal
      ? fromEvent(signal, 'abort').pipe(
          map(() => {
            throw signal.reason;
          }),
        )
      : EMPTY;

    return merge(contention$, timeout$, abort$).pipe(
      startWith<LockState>({ kind: 'acquiring', ...base }),
      finalize(() => {
        // Children that fail unsubscribe right after delivering the error that ends us, synchronously;
        // one microtask later every release they started has been tracked.
        const released = Promise.resolve().then(() => Promise.all(releases).then(() => undefined));
        o.onRelease?.(released);
      }),
    );
  });
}
