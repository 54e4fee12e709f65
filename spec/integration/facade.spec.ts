import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { firstValueFrom, filter } from 'rxjs';
import { Lock, type FacadeState } from '../../lib/facade.js';
import { isLockError, LockLostError, NotHeldError } from '../../lib/errors.js';
import { etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { sleep } from '../support/recorder.js';

/** A loopback port nobody listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

describe('the etcd-lock 1.x facade against a real etcd', () => {
  const etcd = etcdForSuite();

  async function leaseExists(hexId: string): Promise<boolean> {
    return (await listLeases(etcd.endpoints)).includes(BigInt(`0x${hexId}`).toString());
  }

  it('lock() resolves with the lock once held; unlock() deletes the key and revokes the lease', async () => {
    const key = `${uniquePrefix('facade')}/basic`;
    const lock = new Lock(etcd.client, key, 'worker-a', 5);
    assert.equal(lock.isHeld, false);
    assert.equal(lock.fencingToken, undefined);
    const resolved = await lock.lock();
    assert.equal(resolved, lock);
    assert.equal(lock.isHeld, true);
    assert.match(lock.fencingToken ?? '', /^\d+$/);
    const keys = await listKeys(etcd.endpoints, `${key}/`);
    assert.equal(keys.length, 1);
    const kv = await etcd.client.get(keys[0]!).exec();
    assert.equal(kv.kvs[0]?.value.toString(), 'worker-a');
    assert.equal(kv.kvs[0]?.create_revision, lock.fencingToken);
    const leaseHex = keys[0]!.slice(key.length + 1);
    await lock.unlock();
    assert.equal(lock.isHeld, false);
    assert.equal(lock.fencingToken, undefined);
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
    assert.equal(await leaseExists(leaseHex), false, 'the lease was revoked');
  });

  it('a second Lock on the same key waits until the first unlocks, and gets a higher token', async () => {
    const key = `${uniquePrefix('facade')}/wait`;
    const a = new Lock(etcd.client, key, 'a', 5);
    const b = new Lock(etcd.client, key, 'b', 5);
    await a.lock();
    let bHeld = false;
    const bLocked = b.lock().then(() => (bHeld = true));
    await sleep(300);
    assert.equal(bHeld, false, 'b waits while a holds the lock');
    const tokenA = BigInt(a.fencingToken!);
    await a.unlock();
    await bLocked;
    assert.ok(BigInt(b.fencingToken!) > tokenA, 'tokens rise');
    await b.unlock();
  });

  it('lock() while held refreshes the lease, resolves, and one unlock() releases', async () => {
    const key = `${uniquePrefix('facade')}/relock`;
    const lock = new Lock(etcd.client, key, 'relocker', 10);
    lock.refreshInterval = 9000; // no scheduled keepalive within this test: only lock() refreshes
    await lock.lock();
    const token = lock.fencingToken;
    const [holderKey] = await listKeys(etcd.endpoints, `${key}/`);
    const leaseId = BigInt(`0x${holderKey!.slice(key.length + 1)}`).toString();
    await sleep(1500);
    const before = await etcd.client.leaseClient.leaseTimeToLive({ ID: leaseId });
    const states: FacadeState['kind'][] = [];
    const seen = lock.state$.subscribe((s) => states.push(s.kind));
    assert.equal(await lock.lock(), lock);
    const afterRefresh = await etcd.client.leaseClient.leaseTimeToLive({ ID: leaseId });
    seen.unsubscribe();
    assert.ok(Number(afterRefresh.TTL) > Number(before.TTL), `TTL went up: ${before.TTL} -> ${afterRefresh.TTL}`);
    assert.ok(states.includes('refreshed'), 'state$ saw the refresh');
    assert.equal(lock.fencingToken, token, 'the same grant, not a new one');
    await lock.unlock();
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
    await assert.rejects(lock.unlock(), NotHeldError, 'one unlock() released it');
  });

  it('unlock() when not held rejects with NotHeldError (ETCDLOCK_NOT_HELD)', async () => {
    const lock = new Lock(etcd.client, `${uniquePrefix('facade')}/never`, 'x', 5);
    await assert.rejects(lock.unlock(), (err: unknown) => {
      assert.ok(err instanceof NotHeldError);
      assert.equal(err.code, 'ETCDLOCK_NOT_HELD');
      assert.match(err.message, /never/);
      return true;
    });
  });

  it('unlock() while lock() waits cancels the wait and leaves no key', async () => {
    const key = `${uniquePrefix('facade')}/cancel`;
    const holder = new Lock(etcd.client, key, 'holder', 5);
    await holder.lock();
    const waiter = new Lock(etcd.client, key, 'waiter', 5);
    const waiting = waiter.lock();
    await firstValueFrom(waiter.state$.pipe(filter((s) => s.kind === 'acquiring' && s.waitingFor !== undefined)));
    assert.equal((await listKeys(etcd.endpoints, `${key}/`)).length, 2, 'the waiter is queued');
    const cancelled = assert.rejects(
      waiting,
      (err: unknown) => err instanceof NotHeldError && /cancelled/.test(err.message),
    );
    await waiter.unlock();
    await cancelled;
    assert.equal((await listKeys(etcd.endpoints, `${key}/`)).length, 1, "only the holder's key is left");
    await holder.unlock();
  });

  it('ttl and refreshInterval set before lock() are used for the lease', async () => {
    const key = `${uniquePrefix('facade')}/settings`;
    const lock = new Lock(etcd.client, key, 'tuned', 60);
    assert.equal(lock.refreshInterval, 30_000, 'refreshInterval follows the TTL until set');
    lock.ttl = 4;
    assert.equal(lock.refreshInterval, 2000);
    lock.refreshInterval = 400;
    const kinds: FacadeState['kind'][] = [];
    const seen = lock.state$.subscribe((s) => kinds.push(s.kind));
    await lock.lock();
    const [holderKey] = await listKeys(etcd.endpoints, `${key}/`);
    const leaseId = BigInt(`0x${holderKey!.slice(key.length + 1)}`).toString();
    const ttl = await etcd.client.leaseClient.leaseTimeToLive({ ID: leaseId });
    assert.equal(ttl.grantedTTL, '4');
    await sleep(1000); // two refreshes at 400 ms; the default (2 s) would give none
    await lock.unlock();
    seen.unsubscribe();
    const refreshes = kinds.filter((k) => k === 'refreshed').length;
    assert.ok(refreshes >= 1, `keepalives ran at the set interval (${kinds.join(' ')})`);
    assert.throws(
      () => (lock.ttl = 0),
      (err: unknown) => isLockError(err) && err.code === 'ETCDLOCK_INVALID_ARGUMENT',
    );
    assert.throws(
      () => (lock.refreshInterval = -1),
      (err: unknown) => isLockError(err) && err.code === 'ETCDLOCK_INVALID_ARGUMENT',
    );
  });

  it("emits 'error' with LockLostError when the key is deleted from outside, and is no longer held", async () => {
    const key = `${uniquePrefix('facade')}/lost`;
    const lock = new Lock(etcd.client, key, 'victim', 5);
    await lock.lock();
    const lost = once(lock, 'error') as Promise<[LockLostError]>;
    const [holderKey] = await listKeys(etcd.endpoints, `${key}/`);
    await etcd.client.delete().key(holderKey!).exec();
    const [err] = await lost;
    assert.ok(err instanceof LockLostError);
    assert.equal(err.code, 'ETCDLOCK_LOST');
    assert.equal(err.reason, 'deleted');
    assert.equal(lock.isHeld, false);
    // unlock() after a loss rejects only once the lost lock's lease is gone: no sleep needed.
    await assert.rejects(lock.unlock(), NotHeldError);
    const leaseHex = holderKey!.slice(key.length + 1);
    assert.equal(await leaseExists(leaseHex), false, 'the lease is revoked after a loss');
    // And the facade can take the lock again.
    await lock.lock();
    await lock.unlock();
  });

  it("emits 'error' when the lease is revoked from outside", async () => {
    const key = `${uniquePrefix('facade')}/revoked`;
    const lock = new Lock(etcd.client, key, 'victim', 5);
    await lock.lock();
    const lost = once(lock, 'error') as Promise<[LockLostError]>;
    const [holderKey] = await listKeys(etcd.endpoints, `${key}/`);
    const leaseId = BigInt(`0x${holderKey!.slice(key.length + 1)}`).toString();
    await etcd.client.leaseClient.leaseRevoke({ ID: leaseId });
    const [err] = await lost;
    assert.ok(err instanceof LockLostError);
    assert.ok(['deleted', 'expired'].includes(err.reason), `reason ${err.reason}`);
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
  });

  it('lock() rejects with ETCDLOCK_UNAVAILABLE when etcd cannot be reached', async () => {
    const port = await closedPort();
    const nowhere = new Etcd3({ hosts: `127.0.0.1:${port}`, dialTimeout: 500 });
    try {
      const lock = new Lock(nowhere, `${uniquePrefix('facade')}/unreachable`, 'x', 5);
      await assert.rejects(lock.lock(), (err: unknown) => {
        assert.ok(isLockError(err), `a LockError, got ${String(err)}`);
        assert.equal(err.code, 'ETCDLOCK_UNAVAILABLE');
        assert.match(err.message, new RegExp(`unreachable|${port}`));
        return true;
      });
      assert.equal(lock.isHeld, false);
      await assert.rejects(lock.unlock(), NotHeldError);
    } finally {
      nowhere.close();
    }
  });

  it('await using releases the lock at the end of the block', async () => {
    const key = `${uniquePrefix('facade')}/dispose`;
    {
      await using lock = await new Lock(etcd.client, key, 'scoped', 5).lock();
      assert.equal(lock.isHeld, true);
      assert.equal((await listKeys(etcd.endpoints, `${key}/`)).length, 1);
    }
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
  });
});
