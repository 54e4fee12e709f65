import {
  defer,
  EMPTY,
  exhaustMap,
  from,
  map,
  merge,
  type ObservableInput,
  type Observable,
  retry,
  type SchedulerLike,
  share,
  startWith,
  switchMap,
  take,
  timeout,
  timer,
} from 'rxjs';
import { lossMarginMs } from './options.js';

/** What {@link keepAlive$} needs: the lease as granted, the cadence, and the one effect it drives. */
export interface KeepAliveParams {
  /** The TTL etcd granted, in seconds. */
  ttlSeconds: number;
  /** When the grant request was sent, on `now()`'s clock: the lease cannot have started before. */
  grantSentAt: number;
  refreshIntervalMs: number;
  /** Sends one keepalive; emits the TTL etcd granted (<= 0: the lease is gone). */
  send: () => ObservableInput<number>;
  /** Makes the error the stream fails with when the lease is lost. */
  lost: (detail: string) => Error;
  /**
   * Whether a failed keepalive can never succeed if tried again (the client was closed): the lease is then lost
   * at once, not at the deadline. Default: every failure is worth another try.
   */
  hopeless?: (err: unknown) => string | undefined;
  /** Extra keepalives on demand, besides the cadence. */
  refreshNow$?: Observable<unknown> | undefined;
  scheduler: SchedulerLike;
  /** A monotonic clock in ms; in tests, the virtual scheduler's. */
  now: () => number;
}

/**
 * The lease's keepalive cadence and its local deadline, as one stream: a keepalive every
 * `refreshIntervalMs`, each with its own short time limit and quick retries, and a deadline of
 * `sentAt(last acknowledged keepalive) + TTL - margin`. Emits the granted TTL at each acknowledgement;
 * errors with `lost()` when etcd says the lease is gone or when the deadline passes first, even if
 * etcd cannot be reached to say so (the etcd3 client's own `lost` event comes only after 2 x TTL).
 */
export function keepAlive$(params: KeepAliveParams): Observable<number> {
  const { refreshIntervalMs, scheduler, now } = params;
  const margin = (ttlSeconds: number) => lossMarginMs(ttlSeconds, refreshIntervalMs);
  const firstMargin = margin(params.ttlSeconds);
  // A call stuck on a dead member must not eat the whole margin: give up on it early and try again,
  // which opens a new stream (and maybe reaches another endpoint).
  const callTimeoutMs = clamp(firstMargin / 2, 100, 5000);
  const retryDelayMs = clamp(firstMargin / 10, 20, 1000);

  const attempt$ = defer(() => {
    const sentAt = now();
    return from(params.send()).pipe(
      take(1),
      timeout({ first: callTimeoutMs, scheduler }),
      map((ttlSeconds) => ({ ttlSeconds, sentAt })),
    );
  }).pipe(
    retry({
      delay: (err: unknown) => {
        const why = params.hopeless?.(err);
        if (why !== undefined) throw params.lost(why);
        return timer(retryDelayMs, scheduler);
      },
    }),
  );

  const ticks$ = merge(timer(refreshIntervalMs, refreshIntervalMs, scheduler), params.refreshNow$ ?? EMPTY);
  const acks$ = ticks$.pipe(
    exhaustMap(() => attempt$),
    map((ack) => {
      if (ack.ttlSeconds <= 0) throw params.lost('etcd says the lease no longer exists');
      return ack;
    }),
    share(),
  );

  const deadline$ = acks$.pipe(
    startWith({ ttlSeconds: params.ttlSeconds, sentAt: params.grantSentAt }),
    switchMap((ack) => {
      const deadline = ack.sentAt + ack.ttlSeconds * 1000 - margin(ack.ttlSeconds);
      return timer(Math.max(0, deadline - now()), scheduler).pipe(
        map(() => {
          throw params.lost(
            `no keepalive was acknowledged in time (local deadline ${Math.round(margin(ack.ttlSeconds))} ms before the lease can expire)`,
          );
        }),
      );
    }),
  );

  return merge(acks$.pipe(map((ack) => ack.ttlSeconds)), deadline$);
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
