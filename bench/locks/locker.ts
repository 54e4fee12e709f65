/**
 * etcd-lock 2's Locker (lib/locker.ts, issue 6) as a contender: one `createLocker` per contender for the whole
 * run, so one long-lived lease (and one prefix watch) under every acquisition: one enqueue transaction and one
 * guarded delete per acquisition, no lease grant or revoke. Three rows: the promise API (`lock(id, { wait: true })`
 * then `release(id)`), the stream (`locker.lock$(id)`, subscribed until held, then unsubscribed), and the 1.x
 * facade on the locker (`new Lock(locker, id)`, `lock()` then `unlock()`).
 */
import { Etcd3 } from 'etcd3';
import { filter, firstValueFrom } from 'rxjs';
import { createLocker, isHeld, Lock } from '../built-lib.js';
import type { Locker } from '../../lib/locker.js';
import { untilReady } from '../until-ready.js';
import { type Contender, type LockKind, type OpenOptions, TTL_SECONDS } from './kind.js';

/** A lock key `a/b/c` is lock `c` of the locker named `a/b`: the same key, and holder keys `a/b/c/<lease>`. */
export function lockerName(key: string): { name: string; lockId: string } {
  const slash = key.lastIndexOf('/');
  if (slash <= 0 || slash === key.length - 1) throw new Error(`cannot split ${JSON.stringify(key)} into name/id`);
  return { name: key.slice(0, slash), lockId: key.slice(slash + 1) };
}

/**
 * A contender's locker on a client of its own, its session created before the first sample, as a long-lived
 * session would be in an application; `acquire` takes the lock `lockId` on it.
 */
async function lockerContender(
  { endpoints, key, id, onLateError }: OpenOptions,
  acquire: (locker: Locker, lockId: string) => Promise<() => Promise<void>>,
): Promise<Contender> {
  const client = new Etcd3({ hosts: endpoints });
  const { name, lockId } = lockerName(key);
  const locker = createLocker(client, { name, holderId: id, ttl: TTL_SECONDS });
  locker.lost$.subscribe((lost) => onLateError(lost.error));
  const first = await firstValueFrom(locker.state$.pipe(filter((s) => s.kind === 'ready' || s.kind === 'failed')));
  if (first.kind === 'failed') {
    client.close();
    throw first.error;
  }
  return {
    acquire: () => acquire(locker, lockId),
    close: async () => {
      await locker.close();
      client.close();
    },
  };
}

export const locker: LockKind = {
  name: 'etcd-lock 2 `createLocker` (one long-lived session per contender)',
  short: 'locker',
  open: (options) =>
    lockerContender(options, async (locker, lockId) => {
      await locker.lock(lockId, { wait: true });
      return () => locker.release(lockId);
    }),
};

export const lockerStream: LockKind = {
  name: 'etcd-lock 2 `locker.lock$(id)` (the stream, on one long-lived session per contender)',
  short: 'locker.lock$',
  open: (options) =>
    lockerContender(options, async (locker, lockId) => {
      let released = Promise.resolve();
      const onRelease = (done: Promise<void>) => void (released = done);
      // Late errors (a loss while held) reach onLateError through lost$ already.
      const { stop } = await untilReady(locker.lock$(lockId, { onRelease }), isHeld, () => undefined);
      return async () => {
        stop();
        await released;
      };
    }),
};

export const facadeOnLocker: LockKind = {
  name: 'etcd-lock 2 facade `new Lock(locker, id)` (on one long-lived session per contender)',
  short: 'facade on a locker',
  open: (options) => {
    let lock: InstanceType<typeof Lock> | undefined;
    return lockerContender(options, async (locker, lockId) => {
      if (!lock) {
        lock = new Lock(locker, lockId);
        // A loss reaches onLateError through lost$ already; an 'error' event without a listener would throw.
        lock.on('error', () => undefined);
      }
      const held = lock;
      await held.lock();
      return () => held.unlock();
    });
  },
};
