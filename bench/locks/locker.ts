/**
 * etcd-lock 2's Locker (lib/locker.ts, issue 6) as a contender: one `createLocker` per contender for the whole
 * run, so one long-lived lease (and one prefix watch) under every acquisition, and each acquisition is
 * `lock(id, { wait: true })` then `release(id)`: one enqueue transaction and one guarded delete, no lease grant
 * or revoke per lock. This is the public way to hold locks on a long-lived session, so it replaces the raw
 * `session$` + `contend$` wiring these rows used before the Locker existed (session-mutex.ts).
 */
import { Etcd3 } from 'etcd3';
import { filter, firstValueFrom } from 'rxjs';
import { createLocker } from '../built-lib.js';
import { type Contender, type LockKind, TTL_SECONDS } from './kind.js';

/** A lock key `a/b/c` is lock `c` of the locker named `a/b`: the same key, and holder keys `a/b/c/<lease>`. */
export function lockerName(key: string): { name: string; lockId: string } {
  const slash = key.lastIndexOf('/');
  if (slash <= 0 || slash === key.length - 1) throw new Error(`cannot split ${JSON.stringify(key)} into name/id`);
  return { name: key.slice(0, slash), lockId: key.slice(slash + 1) };
}

export const locker: LockKind = {
  name: 'etcd-lock 2 `createLocker` (one long-lived session per contender)',
  short: 'locker',
  open: async ({ endpoints, key, id, onLateError }): Promise<Contender> => {
    const client = new Etcd3({ hosts: endpoints });
    const { name, lockId } = lockerName(key);
    const locker = createLocker(client, { name, holderId: id, ttl: TTL_SECONDS });
    locker.lost$.subscribe((lost) => onLateError(lost.error));
    // The session is created before the first sample, as a long-lived session would be in an application.
    const first = await firstValueFrom(locker.state$.pipe(filter((s) => s.kind === 'ready' || s.kind === 'failed')));
    if (first.kind === 'failed') {
      client.close();
      throw first.error;
    }
    return {
      acquire: async () => {
        await locker.lock(lockId, { wait: true });
        return () => locker.release(lockId);
      },
      close: async () => {
        await locker.close();
        client.close();
      },
    };
  },
};
