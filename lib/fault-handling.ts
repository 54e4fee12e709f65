/**
 * Fault handling for an etcd3 client used for locks: `new Etcd3({ hosts, faultHandling: lockFaultHandling(hosts) })`.
 *
 * etcd3's defaults are made for one-off requests, and three of them cost locks on the same client:
 * - a circuit breaker per host stays open for 5 s after 3 failures in a row, and blocks keepalives with the rest:
 *   with a TTL under about 20 s, a blip of half a second loses a healthy lock;
 * - it counts etcd's refusals as failures of the host: "database space exceeded" (etcd's NOSPACE alarm) or "too many
 *   requests" on one attempt to take a lock opens that breaker, although etcd answered and keeps every lease alive;
 * - on each such failure it closes all of the host's connections (the watch and keepalive streams of every other
 *   lock on the client), and retries the refused request twice more, closing them again each time.
 *
 * Here a host that just failed is only passed over for a moment, so the next endpoint is tried; a failed request is
 * retried once per endpoint, at once; a cancelled stream is nobody's fault; and a refusal is reported as it is,
 * once, with the connections left alone. A broken watch stream is opened again after 50 ms, doubling up to 1 s
 * (etcd3's default waits up to 30 s, while a waiter may miss its turn).
 */
import { castGrpcError, type Etcd3, GRPCCancelledError, GRPCResourceExhastedError, isRecoverableError } from 'etcd3';

type FaultHandling = NonNullable<NonNullable<ConstructorParameters<typeof Etcd3>[0]>['faultHandling']>;
type Policy = ReturnType<NonNullable<FaultHandling['host']>>;
type Backoff = NonNullable<FaultHandling['watchBackoff']>;
type Call = (context: { signal: AbortSignal }) => unknown;

/** How long a host that failed is passed over in favour of the others. */
export const HOST_COOL_DOWN_MS = 500;

/** The longest wait before a broken watch stream is opened again. */
const WATCH_BACKOFF_MAX_MS = 1000;

/**
 * etcd answered and refused the request ("database space exceeded", "too many requests"): the endpoint is fine.
 * Not one of etcd3's recoverable errors, so etcd3 neither closes the host's connections over it nor retries it;
 * `cause` is etcd3's error, and the message is its message.
 */
export class EtcdRefusedError extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
    this.name = 'EtcdRefusedError';
  }
}

/**
 * The `faultHandling` option for an etcd3 client used for locks (see the file's comment). `hosts` is the client's
 * `hosts` option: a request is tried once more per endpoint.
 *
 * @example
 * const hosts = ['10.0.0.1:2379', '10.0.0.2:2379', '10.0.0.3:2379'];
 * const client = new Etcd3({ hosts, faultHandling: lockFaultHandling(hosts) });
 */
export function lockFaultHandling(hosts: string | readonly string[] = '127.0.0.1:2379'): FaultHandling {
  const count = typeof hosts === 'string' ? 1 : Math.max(1, hosts.length);
  return { host: () => hostPolicy(), global: retryPolicy(count + 1), watchBackoff: watchBackoff() };
}

function recoverable(err: unknown): boolean {
  return err instanceof Error && isRecoverableError(castGrpcError(err));
}

/** A cockatiel-shaped policy (the interface etcd3 takes), without depending on cockatiel: etcd3 only calls `execute`. */
function policy(execute: (call: Call, signal: AbortSignal) => Promise<unknown>): Policy {
  const noEvent = () => ({ dispose: () => undefined });
  return {
    onSuccess: noEvent,
    onFailure: noEvent,
    execute: (call: Call, signal?: AbortSignal) => execute(call, signal ?? new AbortController().signal),
  } as unknown as Policy;
}

/** A call not sent because its host failed a moment ago: never the error to report if a real one came first. */
class HostSkippedError extends Error {
  constructor() {
    super('skipped: this etcd endpoint failed a moment ago');
  }
}

/**
 * Whether a failure says the host is in trouble. A cancelled call does not: etcd3 reports the streams it (or we)
 * cancel as failures of their host (the last watch's stream when that watch goes, a keepalive stream we drop), and
 * skipping the host then failed the lease revoke that follows a loss four times over (760 ms, 6 runs of 8).
 */
function hostFailed(err: unknown): boolean {
  return recoverable(err) && !(castGrpcError(err as Error) instanceof GRPCCancelledError);
}

/** Skips the host for a moment after it failed (etcd3 then tries the next endpoint); passes refusals on as such. */
export function hostPolicy(): Policy {
  let skipUntil = 0;
  return policy(async (call, signal) => {
    if (performance.now() < skipUntil) throw new HostSkippedError();
    try {
      return await call({ signal });
    } catch (err) {
      if (err instanceof Error && castGrpcError(err) instanceof GRPCResourceExhastedError) {
        throw new EtcdRefusedError(err);
      }
      if (hostFailed(err)) skipUntil = performance.now() + HOST_COOL_DOWN_MS;
      throw err;
    }
  });
}

/**
 * Retries a call that failed recoverably, `attempts` times in all. When every attempt fails, the last real failure
 * is reported (say, a deadline exceeded), not a later skip of that host.
 */
function retryPolicy(attempts: number): Policy {
  return policy(async (call, signal) => {
    let lastFailure: unknown;
    for (let attempt = 1; ; attempt++) {
      try {
        return await call({ signal });
      } catch (err) {
        const skipped = err instanceof HostSkippedError;
        if (!skipped) lastFailure = err;
        if (attempt >= attempts || !(skipped || recoverable(err)) || signal.aborted) throw lastFailure ?? err;
      }
    }
  });
}

/** 50 ms, doubling up to {@link WATCH_BACKOFF_MAX_MS}. */
function watchBackoff(durationMs = 50): Backoff {
  return { duration: durationMs, next: () => watchBackoff(Math.min(durationMs * 2, WATCH_BACKOFF_MAX_MS)) };
}
