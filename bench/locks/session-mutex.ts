/**
 * This project's key protocol on one lease, wired by hand: lib's `session$` (a lease, kept alive) and
 * `contend$` (enqueue, wait for the predecessor, release by a guarded delete) with the plain etcd3 client, so
 * one transaction and one etcd3 watch per lock. Before issue 6's Locker existed this was the benchmark's
 * "long-lived session" contender; the Locker (locks/locker.ts) has replaced it in the uncontended and
 * contended rows. It stays only for scale.ts's comparison row, which shows what the Locker's batched
 * transactions and shared watch save when one session holds thousands of locks.
 */
import { Etcd3 } from 'etcd3';
import type { Lease } from '../../lib/session.js';
import { contend$, session$ } from '../built-lib.js';
import { untilReady } from '../until-ready.js';
import { TTL_SECONDS } from './kind.js';

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
