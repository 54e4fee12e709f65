/**
 * The etcd3 client etcdlocker uses. etcd3's defaults put a circuit breaker on each host (open for 5 s
 * after 3 failures) and retry each call 3 times. The lock has its own time limits and retries, and a
 * breaker left open after a short network blip would hold back keepalives long enough to lose a lock
 * with a short TTL, so every call goes straight through instead.
 */
import { Etcd3, type IOptions } from 'etcd3';

type FaultHandling = NonNullable<IOptions['faultHandling']>;
type Policy = ReturnType<NonNullable<FaultHandling['host']>>;

/** A cockatiel-shaped policy that runs each call once, as is. */
function passThrough(): Policy {
  const noEvent = () => ({ dispose: () => undefined });
  return {
    onSuccess: noEvent,
    onFailure: noEvent,
    execute: (fn: (context: { signal: AbortSignal }) => unknown, signal?: AbortSignal) =>
      Promise.resolve().then(() => fn({ signal: signal ?? new AbortController().signal })),
  } as unknown as Policy;
}

export function createClient(endpoints: string[]): Etcd3 {
  return new Etcd3({
    hosts: endpoints,
    dialTimeout: 3000,
    faultHandling: { host: () => passThrough(), global: passThrough() },
  });
}
