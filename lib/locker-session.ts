import type { Etcd3 } from 'etcd3';
import { asyncScheduler, Observable, type Subscription } from 'rxjs';
import { LockLostError, UnavailableError } from './errors.js';
import { clientClosed } from './etcd-errors.js';
import type { ResolvedLockerOptions } from './locker-options.js';
import { type Lease, session$ } from './session.js';

/** What {@link retryingSession$} reports. */
export type SessionPhase =
  | { kind: 'connecting'; attempt: number; error: UnavailableError | undefined }
  | { kind: 'ready'; lease: Lease }
  | { kind: 'refreshed'; lease: Lease; ttlSeconds: number; revision: string }
  | { kind: 'lost'; lease: Lease; error: LockLostError };

/** Options of {@link retryingSession$}. */
export interface RetryingSessionOptions {
  /** Extra keepalives on demand (a lock request failed: is the lease still there?). */
  refreshNow$: Observable<unknown>;
  /** Receives, for each lease, a promise that settles once it is revoked (never rejects). */
  onRelease: (released: Promise<void>) => void;
}

/**
 * A locker's session: one lease at a time, kept alive by {@link session$}. A failed grant is tried again
 * `maxRetries` times, `retryIntervalMs` apart, as consul-locker does; after that the stream errors with an
 * {@link UnavailableError} naming the tries and the last failure. A session lost once granted is reported
 * (`lost`) and replaced at once by a new one, with a fresh count of tries. Unsubscribing revokes the lease.
 */
export function retryingSession$(
  client: Etcd3,
  options: Pick<ResolvedLockerOptions, 'name' | 'ttlSeconds' | 'refreshIntervalMs' | 'maxRetries' | 'retryIntervalMs'>,
  effects: RetryingSessionOptions,
): Observable<SessionPhase> {
  return new Observable<SessionPhase>((subscriber) => {
    let current: Subscription | undefined;
    let retry: Subscription | undefined;

    const connect = (attempt: number, previous: UnavailableError | undefined): void => {
      subscriber.next({ kind: 'connecting', attempt, error: previous });
      let lease: Lease | undefined;
      current = session$(client, {
        name: options.name,
        ttlSeconds: options.ttlSeconds,
        refreshIntervalMs: options.refreshIntervalMs,
        refreshNow$: effects.refreshNow$,
        onRelease: effects.onRelease,
      }).subscribe({
        next: (event) => {
          if (event.kind === 'granted') {
            lease = event.lease;
            subscriber.next({ kind: 'ready', lease });
          } else if (lease) {
            subscriber.next({ kind: 'refreshed', lease, ttlSeconds: event.ttlSeconds, revision: event.revision });
          }
        },
        error: (err: unknown) => {
          if (lease) {
            const error =
              err instanceof LockLostError
                ? err
                : new LockLostError(options.name, 'expired', `lease ${lease.hex} failed`, { cause: err });
            subscriber.next({ kind: 'lost', lease, error });
            connect(1, undefined);
            return;
          }
          const failure =
            err instanceof UnavailableError
              ? err
              : new UnavailableError(`Could not create a session for ${JSON.stringify(options.name)}`, err);
          if (clientClosed(failure)) {
            // No try can succeed on a closed client; retrying would only keep the process alive for nothing.
            subscriber.error(
              new UnavailableError(
                `The locker ${JSON.stringify(options.name)} cannot create its session: its etcd3 client was closed`,
                failure,
              ),
            );
            return;
          }
          if (attempt > options.maxRetries) {
            subscriber.error(
              new UnavailableError(
                `The locker ${JSON.stringify(options.name)} gave up creating its session after ${attempt} ${attempt === 1 ? 'try' : 'tries'}`,
                failure,
              ),
            );
            return;
          }
          retry = asyncScheduler.schedule(() => connect(attempt + 1, failure), options.retryIntervalMs);
        },
      });
    };

    connect(1, undefined);
    return () => {
      retry?.unsubscribe();
      current?.unsubscribe();
    };
  });
}
