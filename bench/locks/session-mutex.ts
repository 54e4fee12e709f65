/**
 * This project's key protocol on one long-lived session per contender: lib's `session$` (a lease, kept alive)
 * and `contend$` (enqueue, wait for the predecessor, release by a guarded delete), wired together here because
 * `lock$` does not take a shared session yet.
 *
 * Hook for issue 6: when the Locker ("many locks on one session") lands, open a Locker here and take each lock
 * through it; the rows keep their meaning (same protocol, one lease per contender).
 */
import { Etcd3 } from 'etcd3';
import { contend$ } from '../../lib/mutex.js';
import { type Lease, session$ } from '../../lib/session.js';
import { untilReady } from '../until-ready.js';
import { type Contender, type LockKind, TTL_SECONDS } from './kind.js';

/** A long-lived lease for `client`, kept alive until the subscription ends. */
export async function openSession(
  client: Etcd3,
  name: string,
  onLateError: (err: unknown) => void,
  ttlSeconds = TTL_SECONDS,
): Promise<{ lease: Lease; stop: () => void; released: () => Promise<void> }> {
  let released = Promise.resolve();
  const session = session$(client, {
    name,
    ttlSeconds,
    refreshIntervalMs: (ttlSeconds * 1000) / 2,
    onRelease: (done) => void (released = done),
  });
  const { value, stop } = await untilReady(session, (event) => event.kind === 'granted', onLateError);
  if (value.kind !== 'granted') throw new Error('unreachable: untilReady let through a refresh');
  return { lease: value.lease, stop, released: () => released };
}

/** Takes `key` once on `lease`; resolves with the release, which resolves once our key is deleted. */
export async function acquireOnLease(
  client: Etcd3,
  key: string,
  id: string,
  lease: Lease,
  onLateError: (err: unknown) => void,
): Promise<() => Promise<void>> {
  let released = Promise.resolve();
  const contention = contend$(
    client,
    { key, prefix: `${key}/`, id, lease },
    { wait: true, deleteOnRelease: true, onRelease: (done) => void (released = done) },
  );
  const { stop } = await untilReady(contention, (event) => event.kind === 'acquired', onLateError);
  return async () => {
    stop();
    await released;
  };
}

export const sessionMutex: LockKind = {
  name: 'etcd-lock 2 protocol on a long-lived session (`session$` + `contend$`)',
  short: 'session',
  open: async ({ endpoints, key, id, onLateError }): Promise<Contender> => {
    const client = new Etcd3({ hosts: endpoints });
    const session = await openSession(client, key, onLateError);
    return {
      acquire: () => acquireOnLease(client, key, id, session.lease, onLateError),
      close: async () => {
        session.stop();
        await session.released();
        client.close();
      },
    };
  },
};
