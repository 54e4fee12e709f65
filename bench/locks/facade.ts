/** This project's 1.x facade, `Lock`: one object per contender, `lock()` and `unlock()` again and again. */
import { Etcd3 } from 'etcd3';
import { Lock } from '../built-lib.js';
import { type Contender, type LockKind, TTL_SECONDS } from './kind.js';

export const facade: LockKind = {
  name: 'etcd-lock 2 facade `Lock` (a lease per `lock()`)',
  short: 'facade',
  open: ({ endpoints, key, id, onLateError }): Promise<Contender> => {
    const client = new Etcd3({ hosts: endpoints });
    const lock = new Lock(client, key, id, TTL_SECONDS);
    lock.on('error', onLateError);
    return Promise.resolve({
      acquire: async () => {
        await lock.lock();
        return () => lock.unlock();
      },
      close: () => Promise.resolve(client.close()),
    });
  },
};
