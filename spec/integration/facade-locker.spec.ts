import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { filter, firstValueFrom, timeout } from 'rxjs';
import { isLockError, LockLostError } from '../../lib/errors.js';
import { Lock } from '../../lib/facade.js';
import { createLocker, type Locker } from '../../lib/locker.js';
import type { LockerState } from '../../lib/locker-state.js';
import { etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { sleep } from '../support/recorder.js';

const WAIT_MS = 20_000;

describe('new Lock(locker, lockId): the facade on a locker session, against a real etcd', () => {
  const etcd = etcdForSuite();

  function lockerFor(t: TestContext, name: string, holderId: string): Locker {
    const locker = createLocker(etcd.client, { name, ttl: 10, holderId });
    t.after(() => locker.close());
    return locker;
  }

  async function leaseOf(locker: Locker): Promise<string> {
    const ready = await firstValueFrom(
      locker.state$.pipe(
        filter((s): s is Extract<LockerState, { kind: 'ready' }> => s.kind === 'ready'),
        timeout(WAIT_MS),
      ),
    );
    return ready.leaseId;
  }

  it('lock() takes <name>/<lockId> on the locker lease; unlock() deletes the key and leaves the lease', async (t) => {
    const name = uniquePrefix('facade-locker');
    const locker = lockerFor(t, name, 'worker-1');
    const lock = new Lock(locker, 'job');
    assert.equal(lock.key, `${name}/job`);
    assert.equal(lock.id, 'worker-1');
    assert.equal(lock.ttl, 10);
    assert.equal(lock.refreshInterval, 5000);

    assert.equal(await lock.lock(), lock);
    const leaseId = await leaseOf(locker);
    assert.equal(lock.isHeld, true);
    assert.deepEqual(await listKeys(etcd.endpoints, name), [`${name}/job/${leaseId}`]);
    const { kvs } = await etcd.client.get(`${name}/job/${leaseId}`).exec();
    assert.equal(kvs[0]?.create_revision, lock.fencingToken);
    assert.equal(locker.isHeld('job'), true, 'the locker sees the lock as its own');
    assert.equal(await lock.lock(), lock, 'lock() while held resolves at once');

    await lock.unlock();
    assert.equal(lock.isHeld, false);
    assert.deepEqual(await listKeys(etcd.endpoints, name), [], 'unlock() resolves once the key is gone');
    assert.ok((await listLeases(etcd.endpoints)).includes(BigInt(`0x${leaseId}`).toString()), 'the lease lives on');
    await assert.rejects(lock.unlock(), (err) => isLockError(err) && err.code === 'ETCDLOCK_NOT_HELD');
  });

  it('a second Lock on another locker waits in line, and gets the lock once the first unlocks', async (t) => {
    const name = uniquePrefix('facade-locker');
    const first = new Lock(lockerFor(t, name, 'first'), 7);
    const second = new Lock(lockerFor(t, name, 'second'), '7');
    await first.lock();
    let secondHeld = false;
    const taking = second.lock().then(() => (secondHeld = true));
    await firstValueFrom(
      second.state$.pipe(
        filter((s) => s.kind === 'acquiring' && s.waitingFor?.id === 'first'),
        timeout(WAIT_MS),
      ),
    );
    await sleep(50);
    assert.equal(secondHeld, false);
    await first.unlock();
    await taking;
    assert.ok(BigInt(second.fencingToken!) > 0n);
    await second.unlock();
  });

  it('a key deleted behind its back: an error event with the LockLostError; lock() takes it again', async (t) => {
    const name = uniquePrefix('facade-locker');
    const locker = lockerFor(t, name, 'w');
    const lock = new Lock(locker, 'a');
    await lock.lock();
    const lost = new Promise<LockLostError>((resolve) => lock.once('error', resolve));
    await etcd.client.delete().prefix(`${name}/a/`).exec();
    const error = await lost;
    assert.ok(error instanceof LockLostError);
    assert.equal(error.reason, 'deleted');
    assert.equal(lock.isHeld, false);
    await lock.lock();
    assert.equal(lock.isHeld, true);
    await lock.unlock();
  });

  it('the locker owns the session settings: setting ttl, refreshInterval or limit throws; so do extra arguments', (t) => {
    const locker = lockerFor(t, uniquePrefix('facade-locker'), 'w');
    const lock = new Lock(locker, 'a');
    assert.throws(() => (lock.ttl = 5), /`ttl` is set on createLocker\(\)/);
    assert.throws(() => (lock.refreshInterval = 500), /`refreshInterval` is set on createLocker\(\)/);
    assert.throws(() => (lock.limit = 2), /`limit` is set on createLocker\(\)/);
    assert.throws(
      () => new (Lock as unknown as new (...args: unknown[]) => Lock)(locker, 'a', 'me', 30),
      /takes its holder id and TTL from the locker/,
    );
    assert.throws(() => new Lock(locker, 'a/b'), /Expected `id` not to contain "\/"/);
  });
});
