import { ClientClosedError, EtcdLeaseInvalidError, EtcdPermissionDeniedError } from 'etcd3';

/**
 * What some of the `etcd3` client's errors mean for a lock. Both look through `cause`: the library wraps what
 * etcd3 threw (an {@link UnavailableError} whose cause is etcd3's error, say).
 */

/** Whether `err` is etcd saying that our lease does not exist (any more): revoked or expired. */
export function leaseGone(err: unknown): boolean {
  return inCauses(err, EtcdLeaseInvalidError);
}

/** Whether `err` is etcd3 refusing a call because the client was closed: no later call on it can succeed. */
export function clientClosed(err: unknown): boolean {
  return inCauses(err, ClientClosedError);
}

/** Whether `err` is etcd refusing the request to our user: trying it again cannot help. */
export function permissionDenied(err: unknown): boolean {
  return inCauses(err, EtcdPermissionDeniedError);
}

function inCauses(err: unknown, type: abstract new (...args: never[]) => object): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) if (e instanceof type) return true;
  return false;
}
