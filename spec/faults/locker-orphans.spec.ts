/**
 * No key of a locker's is left on its long-lived lease when no lock of its stands for it: such a key would keep the
 * lock from every other contender for as long as the locker lives.
 *
 * - A `lock(id)` that fails with a time-out while etcd stalls (its process stopped longer than a request's 10 s time
 *   limit), whose put etcd applies once it runs again: before, nobody deleted the key, `isHeld(id)` was false, and
 *   every other contender got ETCDLOCK_BUSY. Now the failed attempt withdraws its key if it is there, and a put of
 *   one of the locker's keys that no lock of its stands for is deleted when the shared watch shows it.
 * - A `release(id)` whose delete fails (the connection cut): before, the failure was swallowed and the key stayed.
 *   Now the delete is tried again while the session lives, and `release()` resolves once it is through.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { isLockError } from '../../lib/errors.js';
import { lockFaultHandling } from '../../lib/fault-handling.js';
import { createLocker } from '../../lib/locker.js';
import { cleanups } from '../support/cleanups.js';
import { etcdEndpointsFromEnv, listKeys, startEtcd, uniquePrefix } from '../support/etcd.js';
import { until } from '../support/poll.js';
import { startProxy } from '../support/proxy.js';
import { sleep } from '../support/recorder.js';

describe(
  "a locker's keys that no lock stands for",
  { skip: etcdEndpointsFromEnv() ? 'ETCD_ENDPOINTS is set: this test pauses etcd' : false },
  () => {
    /** A locker named `name` on `endpoint`, with `ttl` (and its client), closed after the test. */
    function lockerAt(defer: (cleanup: () => unknown) => void, endpoint: string, name: string, ttl: number) {
      const client = new Etcd3({ hosts: endpoint, faultHandling: lockFaultHandling(endpoint) });
      defer(() => client.close());
      const locker = createLocker(client, { name, ttl });
      defer(() => locker.close());
      return locker;
    }

    /** Another locker, straight to etcd, takes `id`: the first one left nothing in its way. */
    async function othersCanTake(defer: (cleanup: () => unknown) => void, endpoint: string, name: string, id: string) {
      const other = lockerAt(defer, endpoint, name, 10);
      await other.lock(id);
      assert.equal(other.isHeld(id), true);
    }

    it('a lock(id) that timed out while etcd stalled leaves no key when etcd applies its put afterwards', async (t) => {
      const defer = cleanups(t);
      const node = await startEtcd();
      defer(() => node.stop());
      defer(() => node.resume());
      const name = uniquePrefix('stalled-enqueue');
      // A TTL far above the stall, so that the session lives through it.
      const locker = lockerAt(defer, node.endpoint, name, 60);
      await locker.lock('warm');

      node.pause();
      const failure = await locker.lock('x').then(
        () => undefined,
        (err: unknown) => err,
      );
      node.resume();
      assert.ok(isLockError(failure) && failure.code === 'ETCDLOCK_UNAVAILABLE', `a time-out, got ${String(failure)}`);
      assert.equal(locker.isHeld('x'), false);

      const xKeys = async () => (await listKeys([node.endpoint], `${name}/x/`)).length;
      await until(async () => (await xKeys()) === 0, "no key left for 'x'", 10_000);
      await othersCanTake(defer, node.endpoint, name, 'x');
      assert.equal(locker.isHeld('warm'), true, 'the other lock of the stalled locker is kept');
    });

    it('a release(id) whose delete fails is tried again until it is through: the lock is free for others', async (t) => {
      const defer = cleanups(t);
      const node = await startEtcd();
      defer(() => node.stop());
      const proxy = await startProxy(node.endpoint);
      defer(() => proxy.close());
      const name = uniquePrefix('failed-release');
      const locker = lockerAt(defer, proxy.endpoint, name, 60);
      await locker.lock('y');

      proxy.cut();
      let released = false;
      const releasing = locker.release('y').then(() => (released = true));
      await sleep(700);
      assert.equal(released, false, 'release() waits while its delete cannot reach etcd');
      assert.equal((await listKeys([node.endpoint], `${name}/y/`)).length, 1);
      proxy.heal();
      await releasing;

      assert.deepEqual(await listKeys([node.endpoint], `${name}/y/`), [], 'the key is gone');
      await othersCanTake(defer, node.endpoint, name, 'y');
    });
  },
);
