/**
 * etcd-lock 1.1.0, the package this project replaces: a v2-API key set with prevExist=false, and a v2 watch
 * (HTTP long poll) to wait for its deletion. It needs etcd's v2 API (`--enable-v2`), and a node-etcd client.
 */
import { createRequire } from 'node:module';
import { type Contender, type LockKind, TTL_SECONDS } from './kind.js';

interface V1Lock {
  lock(): Promise<unknown>;
  unlock(): Promise<unknown>;
  on(event: 'error', listener: (err: unknown) => void): unknown;
}
type V1LockClass = new (etcd: unknown, key: string, id: string, ttl: number) => V1Lock;
type NodeEtcdClass = new (hosts: string[]) => unknown;

const require = createRequire(import.meta.url);
const Lock = require('etcd-lock-v1') as V1LockClass;
// node-etcd as etcd-lock 1.1.0 itself resolves it.
const NodeEtcd = createRequire(require.resolve('etcd-lock-v1'))('node-etcd') as NodeEtcdClass;

export const etcdLockV1: LockKind = {
  name: 'etcd-lock 1.1.0 (etcd v2 API)',
  short: 'etcd-lock 1.1.0',
  open: ({ endpoints, key, id, onLateError }): Promise<Contender> => {
    const lock = new Lock(new NodeEtcd(endpoints), key, id, TTL_SECONDS);
    lock.on('error', onLateError);
    return Promise.resolve({
      acquire: async () => {
        await lock.lock();
        return async () => {
          await lock.unlock();
        };
      },
      // node-etcd has nothing to close: its HTTP agent's idle sockets go on their own.
      close: () => Promise.resolve(),
    });
  },
};
