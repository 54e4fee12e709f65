/**
 * The etcd3 package's own `Lock`: a lease and a put-if-absent; it does not wait, it fails with
 * EtcdLockFailedError when the key is taken. Contenders retry after a small randomized back-off.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3, EtcdLockFailedError } from 'etcd3';
import { type Contender, type LockKind, TTL_SECONDS } from './kind.js';

/** The retry back-off: 5 ms plus up to 10 ms of jitter. */
export const RETRY_BASE_MS = 5;
export const RETRY_JITTER_MS = 10;

export const etcd3Lock: LockKind = {
  name: '`etcd3` package `Lock` (retry after 5-15 ms)',
  short: 'etcd3 Lock',
  open: ({ endpoints, key }): Promise<Contender> => {
    const client = new Etcd3({ hosts: endpoints });
    return Promise.resolve({
      acquire: async () => {
        for (;;) {
          const lock = client.lock(key).ttl(TTL_SECONDS);
          try {
            await lock.acquire();
            return async () => {
              await lock.release();
            };
          } catch (err) {
            if (!(err instanceof EtcdLockFailedError)) throw err;
            await sleep(RETRY_BASE_MS + Math.random() * RETRY_JITTER_MS);
          }
        }
      },
      close: () => Promise.resolve(client.close()),
    });
  },
};
