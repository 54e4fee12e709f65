/**
 * The etcd3 client etcdlocker uses, with fault handling sized for a lock.
 *
 * etcd3's defaults put a circuit breaker on each host that stays open for 5 s after 3 failures. With a
 * short TTL, a breaker left open after a network blip holds back keepalives past the loss deadline and
 * loses a healthy lock. The lock already bounds and retries its own calls, so here a host that just
 * failed is only skipped for a moment (the next endpoint is tried), and a failed call is retried once
 * per endpoint, at once.
 */
import { castGrpcError, Etcd3, type IOptions, isRecoverableError } from 'etcd3';

type FaultHandling = NonNullable<IOptions['faultHandling']>;
type Policy = ReturnType<NonNullable<FaultHandling['host']>>;
type Call = (context: { signal: AbortSignal }) => unknown;

/** How long a host that failed is passed over in favour of the others. */
export const HOST_COOL_DOWN_MS = 500;

function recoverable(err: unknown): boolean {
  return err instanceof Error && isRecoverableError(castGrpcError(err));
}

/**
 * A cockatiel-shaped policy (the interface etcd3 takes), without depending on cockatiel: etcd3 only
 * calls `execute`.
 */
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

/** Skips the host for a moment after a recoverable failure; etcd3 then tries the next endpoint. */
function hostPolicy(): Policy {
  let skipUntil = 0;
  return policy(async (call, signal) => {
    if (performance.now() < skipUntil) throw new HostSkippedError();
    try {
      return await call({ signal });
    } catch (err) {
      if (recoverable(err)) skipUntil = performance.now() + HOST_COOL_DOWN_MS;
      throw err;
    }
  });
}

/**
 * Retries a call that failed recoverably, once per endpoint, so a dead endpoint is not the last word. When every
 * attempt fails, the last real failure is reported (say, a deadline exceeded), not a later skip of that host.
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

export function createClient(endpoints: string[]): Etcd3 {
  return new Etcd3({
    hosts: endpoints,
    dialTimeout: 3000,
    faultHandling: { host: () => hostPolicy(), global: retryPolicy(endpoints.length + 1) },
  });
}
