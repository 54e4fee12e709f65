/** This project's `lock$`, as it is today: each acquisition is a subscription with a lease of its own. */
import { Etcd3 } from 'etcd3';
import { isHeld, lock$ } from '../built-lib.js';
import { untilReady } from '../until-ready.js';
import { type Contender, type LockKind, TTL_SECONDS } from './kind.js';

export const lockStream: LockKind = {
  name: 'etcd-lock 2 `lock$` (a lease per acquisition)',
  short: 'lock$',
  open: ({ endpoints, key, id, onLateError }): Promise<Contender> => {
    const client = new Etcd3({ hosts: endpoints });
    return Promise.resolve({
      acquire: async () => {
        let released = Promise.resolve();
        const options = { id, ttl: TTL_SECONDS, onRelease: (done: Promise<void>) => void (released = done) };
        const { stop } = await untilReady(lock$(client, key, options), isHeld, onLateError);
        return async () => {
          stop();
          await released;
        };
      },
      close: () => Promise.resolve(client.close()),
    });
  },
};
