import type { Etcd3, IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';
import { asyncScheduler, Observable, type SchedulerLike } from 'rxjs';
import { clockOf } from './clock.js';
import { LockLostError, UnavailableError } from './errors.js';
import { clientClosed, leaseGone } from './etcd-errors.js';
import { keepAlive$ } from './keepalive.js';
import { retryWrite } from './retry-write.js';

/** A lease granted by etcd. */
export interface Lease {
  /** The lease ID as etcd3 gives it: a decimal string. */
  id: string;
  /** The same ID in lower-case hex, as it appears in lock keys. */
  hex: string;
  /** The TTL etcd granted, in seconds. */
  ttlSeconds: number;
}

/**
 * What a session emits: the grant once, then each acknowledged keepalive, with the revision etcd's answer was at
 * (its header's: see store-rollback.ts).
 */
export type SessionEvent =
  { kind: 'granted'; lease: Lease } | { kind: 'refreshed'; ttlSeconds: number; revision: string };

/** Options of {@link session$}. */
export interface SessionOptions {
  /** Names the session in errors: the lock key, or a locker's name. */
  name: string;
  ttlSeconds: number;
  refreshIntervalMs: number;
  scheduler?: SchedulerLike | undefined;
  /** Extra keepalives on demand, besides the cadence. */
  refreshNow$?: Observable<unknown> | undefined;
  /** Receives, at teardown, a promise that settles once the lease is revoked (never rejects). */
  onRelease?: ((released: Promise<void>) => void) | undefined;
  /** Revoke only once this settles (see LockOptions.releaseAfter). */
  releaseAfter?: PromiseLike<unknown> | undefined;
  /**
   * Gives up the lease grant sooner than {@link REQUEST_TIMEOUT_MS}: a lock that times out while its grant hangs
   * then releases (and its caller exits) at its own timeout, not 10 s later.
   */
  grantTimeoutMs?: number | undefined;
}

/** How long a grant or revoke may take before we call etcd unavailable. */
export const REQUEST_TIMEOUT_MS = 10_000;

/**
 * One lease as a stream: grants it on subscribe, keeps it alive on a timer, and revokes it on
 * teardown, including when the grant was still in flight. Errors with {@link UnavailableError} when
 * the grant fails, and with a {@link LockLostError} (`expired`) when the lease is gone or its local
 * deadline passes.
 */
export function session$(client: Etcd3, options: SessionOptions): Observable<SessionEvent> {
  return new Observable<SessionEvent>((subscriber) => {
    const scheduler = options.scheduler ?? asyncScheduler;
    const now = clockOf(options.scheduler);
    const channel = new KeepAliveChannel(client);
    const grantSentAt = now();
    let closed = false;

    const granted = grantLease(
      client,
      options.ttlSeconds,
      Math.min(REQUEST_TIMEOUT_MS, options.grantTimeoutMs ?? Infinity),
    );
    granted.then(
      (lease) => {
        if (closed) return;
        subscriber.next({ kind: 'granted', lease });
        const keepalives = keepAlive$({
          ttlSeconds: lease.ttlSeconds,
          grantSentAt,
          refreshIntervalMs: options.refreshIntervalMs,
          refreshNow$: options.refreshNow$,
          send: () => channel.send(lease.id),
          lost: (detail) => new LockLostError(options.name, 'expired', `lease ${lease.hex}: ${detail}`),
          hopeless: (err) => (clientClosed(err) ? 'its etcd3 client was closed' : undefined),
          scheduler,
          now,
        }).subscribe({
          next: (ttlSeconds) => subscriber.next({ kind: 'refreshed', ttlSeconds, revision: channel.lastRevision }),
          error: (err: unknown) => subscriber.error(err),
        });
        subscriber.add(keepalives);
      },
      (err: unknown) => {
        if (!closed)
          subscriber.error(new UnavailableError(`Could not grant a lease for ${JSON.stringify(options.name)}`, err));
      },
    );

    return () => {
      closed = true;
      channel.close();
      const gate = Promise.resolve(options.releaseAfter).catch(() => undefined);
      const released = granted.then(
        (lease) => gate.then(() => revokeLease(client, lease)),
        () => undefined,
      );
      options.onRelease?.(released);
    };
  });
}

/**
 * If the grant reaches etcd but its answer comes after `timeoutMs`, the lease lives on unused until its TTL ends:
 * no key is attached to it yet, so it blocks nobody.
 */
async function grantLease(client: Etcd3, ttlSeconds: number, timeoutMs: number): Promise<Lease> {
  const res = await client.leaseClient.leaseGrant({ TTL: ttlSeconds }, { deadline: Date.now() + timeoutMs });
  if (res.error) throw new Error(res.error);
  return { id: res.ID, hex: BigInt(res.ID).toString(16), ttlSeconds: Number(res.TTL) };
}

/**
 * Revokes the lease, which deletes every key attached to it. A failed attempt is tried again (on whichever
 * endpoint the client picks next) until {@link REQUEST_TIMEOUT_MS} have passed: one refused connection must not
 * leave our key blocking everyone until the TTL ends. Never rejects: an etcd that stays unreachable lets the lease
 * expire on its own, and a lease already gone needs nothing more.
 */
function revokeLease(client: Etcd3, lease: Lease): Promise<void> {
  const giveUpAt = Date.now() + REQUEST_TIMEOUT_MS;
  return retryWrite(
    () => client.leaseClient.leaseRevoke({ ID: lease.id }, { deadline: giveUpAt }),
    // Gone already, or never to be reached through this client: nothing to wait for.
    (err, pauseMs) => !leaseGone(err) && !clientClosed(err) && Date.now() + pauseMs < giveUpAt,
  );
}

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

/**
 * One LeaseKeepAlive stream for a session, reused for every keepalive; it carries at most one
 * request at a time (the cadence waits for each answer). A stream that fails or is abandoned after a
 * time-out is dropped, and the next request opens a new one through etcd3's connection pool.
 */
class KeepAliveChannel {
  private stream: Promise<KeepAliveStream> | undefined;
  private pending: { resolve: (ttl: number) => void; reject: (err: unknown) => void } | undefined;
  private closed = false;
  private current: KeepAliveStream | undefined;
  /** The header revision of the last answer: the one {@link keepAlive$} acknowledges (one request at a time). */
  lastRevision = '0';

  constructor(private readonly client: Etcd3) {}

  /** Sends one keepalive for `leaseId`; unsubscribing before the answer abandons the stream. */
  send(leaseId: string): Observable<number> {
    return new Observable<number>((subscriber) => {
      let answered = false;
      this.pending = {
        resolve: (ttl) => {
          answered = true;
          subscriber.next(ttl);
          subscriber.complete();
        },
        reject: (err) => {
          answered = true;
          subscriber.error(err);
        },
      };
      this.open().then(
        (stream) => stream.write({ ID: leaseId }),
        (err: unknown) => this.fail(err),
      );
      return () => {
        if (!answered) this.reset();
      };
    });
  }

  close(): void {
    this.closed = true;
    this.reset();
  }

  private open(): Promise<KeepAliveStream> {
    if (this.closed) return Promise.reject(new Error('the session is closed'));
    if (this.stream) return this.stream;
    const opening: Promise<KeepAliveStream> = this.client.leaseClient.leaseKeepAlive().then((stream) => {
      stream.on('data', (res) => {
        if (stream !== this.current) return;
        const pending = this.pending;
        this.pending = undefined;
        this.lastRevision = res.header.revision;
        pending?.resolve(Number(res.TTL));
      });
      stream.on('error', (err) => this.fail(err, stream));
      stream.on('end', () => this.fail(new Error('the keepalive stream ended'), stream));
      // Reset while it was opening: this stream is already abandoned (reset() cancels it).
      if (this.stream === opening) this.current = stream;
      return stream;
    });
    this.stream = opening;
    return opening;
  }

  /** Fails the pending request and drops the stream, unless the failure is an old stream's. */
  private fail(err: unknown, stream?: KeepAliveStream): void {
    if (stream !== undefined && stream !== this.current) return;
    const pending = this.pending;
    this.reset();
    pending?.reject(err);
  }

  private reset(): void {
    const stream = this.stream;
    this.stream = undefined;
    this.current = undefined;
    this.pending = undefined;
    void stream?.then(
      (s) => {
        // Ended first: etcd3 reports an error of a stream still open for writing as its host's failure, and
        // resets every channel to that host (failing the lease revoke that follows a release).
        s.end();
        s.cancel();
      },
      () => undefined,
    );
  }
}
