import type { Etcd3 } from 'etcd3';
import { InvalidArgumentError, UnavailableError } from './errors.js';
import { assertClient, show, validateKey } from './options.js';
import { REQUEST_TIMEOUT_MS } from './session.js';

/** One contender for a lock (or candidate in an election), as {@link holders} reports it. */
export interface LockContender {
  /** The value of its key: the holder id (`lock$`'s `id`, an election's proposal; empty for `etcdctl lock`). */
  id: string;
  /** Its key's create revision, a decimal string: the fencing token it holds, or will hold once its turn comes. */
  fencingToken: string;
  /** Its lease in lower-case hex, as in its key's name (`'0'` for a key on no lease). */
  leaseId: string;
  /**
   * Seconds its lease has left, as etcd counts them now: `0` when the lease has just ended (the key is about to go),
   * `Infinity` for a key on no lease, which never expires and blocks the lock until someone deletes it.
   */
  ttl: number;
  /** Its key in etcd: `${key}/${leaseId}` for every contender that follows the protocol. */
  key: string;
}

/** Options of {@link holders}. */
export interface HoldersOptions {
  /** Aborting rejects with `signal.reason` at once (the reads in flight end by their own time limit). */
  signal?: AbortSignal;
}

/**
 * Who holds the lock `key` and who waits for it: the holder first, then the waiters in the order they will get it
 * (by create revision), each with its id, fencing token and how long its lease has left. An election's name gives
 * its leader, then the candidates in line. Resolves `[]` when the lock is free.
 *
 * It only reads: no key, no lease, no watch. The list is a snapshot; the lease TTLs are read just after the keys,
 * so a contender may have left in between (then its `ttl` is 0).
 *
 * Rejects with `ETCDLOCK_INVALID_ARGUMENT` for a bad client, key or option (before any network call), and with
 * `ETCDLOCK_UNAVAILABLE` when etcd fails a read.
 *
 * @example
 * ```ts
 * import { Etcd3 } from 'etcd3';
 * import { holders } from 'etcd-lock';
 *
 * const client = new Etcd3({ hosts: '127.0.0.1:2379' });
 * const [holder, ...waiting] = await holders(client, '/jobs/reindex');
 * console.log(holder ? `${holder.id} holds it (${holder.ttl} s left), ${waiting.length} waiting` : 'free');
 * ```
 */
export async function holders(client: Etcd3, key: string, options: HoldersOptions = {}): Promise<LockContender[]> {
  assertClient(client);
  const lockKey = validateKey(key);
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError(`Expected \`options\` to be an object, got ${show(options)}`);
  }
  for (const name of Object.keys(options)) {
    if (name !== 'signal') throw new InvalidArgumentError(`Unknown option \`${name}\``);
  }
  const signal = options.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError(`Expected \`signal\` to be an AbortSignal, got ${show(signal)}`);
  }
  signal?.throwIfAborted();
  const read = readQueue(client, lockKey);
  if (!signal) return read;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([read, aborted]);
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}

async function readQueue(client: Etcd3, key: string): Promise<LockContender[]> {
  const deadline = () => ({ deadline: Date.now() + REQUEST_TIMEOUT_MS });
  try {
    const { kvs } = await client.getAll().prefix(`${key}/`).sort('Create', 'Ascend').options(deadline()).exec();
    const leases = [...new Set(kvs.map((kv) => kv.lease).filter((lease) => lease !== '0'))];
    const ttls = new Map(
      await Promise.all(
        leases.map(async (lease) => {
          const res = await client.leaseClient.leaseTimeToLive({ ID: lease }, deadline());
          // etcd answers -1 for a lease that has ended (or never was).
          return [lease, Math.max(0, Number(res.TTL))] as const;
        }),
      ),
    );
    return kvs.map((kv) => ({
      id: kv.value.toString(),
      fencingToken: kv.create_revision,
      leaseId: BigInt(kv.lease).toString(16),
      ttl: kv.lease === '0' ? Infinity : (ttls.get(kv.lease) ?? 0),
      key: kv.key.toString(),
    }));
  } catch (err) {
    throw new UnavailableError(`Could not read who holds ${JSON.stringify(key)}`, err);
  }
}
