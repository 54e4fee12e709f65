import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lock$ } from '../../lib/lock-stream.js';
import { isLockError, LockLostError } from '../../lib/errors.js';
import type { HeldState } from '../../lib/state.js';
import { etcdForSuite, listKeys, listLeases, uniquePrefix, etcdctl } from '../support/etcd.js';
import { until } from '../support/poll.js';
import { record, sleep, type Recorded } from '../support/recorder.js';

describe('lock$ against a real etcd', () => {
  const etcd = etcdForSuite();

  /** No key under the lock and none of these leases left: nothing was left behind. */
  async function assertNothingLeft(key: string, leaseHexes: string[] = []) {
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), [], 'no key is left under the lock');
    const leases = new Set(await listLeases(etcd.endpoints));
    for (const hex of leaseHexes) assert.ok(!leases.has(BigInt(`0x${hex}`).toString()), `lease ${hex} was revoked`);
  }

  it('acquires a free lock: acquiring, then held with a token, the key in etcd layout, the lease', async () => {
    const key = `${uniquePrefix('lock')}/job`;
    const a = record((onRelease) => lock$(etcd.client, key, { id: 'worker-a', ttl: 5, onRelease }));
    const held = (await a.next('held')) as HeldState;
    assert.equal(a.states[0]?.kind, 'acquiring');
    assert.match(held.fencingToken, /^\d+$/);
    assert.match(held.leaseId, /^[0-9a-f]+$/);
    assert.equal(held.holderKey, `${key}/${held.leaseId}`);
    const kv = await etcd.client.get(held.holderKey).exec();
    assert.equal(kv.kvs[0]?.value.toString(), 'worker-a');
    assert.equal(kv.kvs[0]?.create_revision, held.fencingToken);
    assert.equal(BigInt(kv.kvs[0]?.lease ?? '0').toString(16), held.leaseId);
    await a.release();
    await assertNothingLeft(key, [held.leaseId]);
    assert.equal(a.error, undefined);
  });

  it('emits refreshed at each keepalive with the granted TTL', async () => {
    const key = `${uniquePrefix('lock')}/refresh`;
    const a = record((onRelease) => lock$(etcd.client, key, { ttl: 2, refreshInterval: 300, onRelease }));
    const refreshed = await a.next('refreshed', 5000);
    assert.equal(refreshed.kind === 'refreshed' && refreshed.ttl >= 2, true);
    await a.release();
    await assertNothingLeft(key);
  });

  it('serves 5 waiters in FIFO order with strictly rising fencing tokens', async () => {
    const key = `${uniquePrefix('lock')}/fifo`;
    const holder = record((onRelease) => lock$(etcd.client, key, { id: 'holder', ttl: 10, onRelease }));
    await holder.next('held');
    const order: string[] = [];
    const tokens: bigint[] = [BigInt((holder.states[1] as HeldState).fencingToken)];
    const waiters: Array<{ id: string; w: Recorded }> = [];
    for (let i = 0; i < 5; i++) {
      const id = `waiter-${i}`;
      const w = record((onRelease) => lock$(etcd.client, key, { id, ttl: 10, onRelease }));
      // Queued (its key exists and it knows who is ahead) before the next one subscribes.
      await until(() => w.states.some((s) => s.kind === 'acquiring' && s.ahead === i + 1), `w queued`);
      waiters.push({ id, w });
    }
    const last = waiters.at(-1)!.w.states.find((s) => s.kind === 'acquiring' && s.waitingFor);
    assert.equal(last?.kind === 'acquiring' && last.waitingFor?.id, 'holder', 'a waiter knows who holds the lock');
    await holder.release();
    for (const { id, w } of waiters) {
      const held = (await w.next('held')) as HeldState;
      order.push(id);
      tokens.push(BigInt(held.fencingToken));
      const holding = waiters.filter(
        (other) => !other.w.subscription.closed && other.w.states.some((s) => s.kind === 'held'),
      );
      assert.deepEqual(
        holding.map((h) => h.id),
        [id],
        'one holder at a time',
      );
      await w.release();
    }
    assert.deepEqual(
      order,
      waiters.map((w) => w.id),
    );
    for (let i = 1; i < tokens.length; i++)
      assert.ok(tokens[i]! > tokens[i - 1]!, `token ${tokens[i]} > ${tokens[i - 1]}`);
    await assertNothingLeft(key);
  });

  it('try-once on a held lock fails with ETCDLOCK_BUSY naming the holder, and leaves no key', async () => {
    const key = `${uniquePrefix('lock')}/busy`;
    const holder = record((onRelease) => lock$(etcd.client, key, { id: 'holder', ttl: 5, onRelease }));
    await holder.next('held');
    const tryOnce = record((onRelease) => lock$(etcd.client, key, { id: 'try', ttl: 5, wait: false, onRelease }));
    const err = await tryOnce.failed();
    assert.ok(isLockError(err) && err.code === 'ETCDLOCK_BUSY', String(err));
    assert.match((err as Error).message, /"holder"/);
    await tryOnce.released();
    assert.equal((await listKeys(etcd.endpoints, `${key}/`)).length, 1, "only the holder's key remains");
    await holder.release();
    await assertNothingLeft(key);
  });

  it('a timeout fails with ETCDLOCK_TIMEOUT and removes the queued key', async () => {
    const key = `${uniquePrefix('lock')}/timeout`;
    const holder = record((onRelease) => lock$(etcd.client, key, { ttl: 5, onRelease }));
    await holder.next('held');
    const waiter = record((onRelease) => lock$(etcd.client, key, { ttl: 5, timeout: 300, onRelease }));
    const err = await waiter.failed();
    assert.ok(isLockError(err) && err.code === 'ETCDLOCK_TIMEOUT', String(err));
    await waiter.released();
    assert.equal((await listKeys(etcd.endpoints, `${key}/`)).length, 1);
    await holder.release();
    await assertNothingLeft(key);
  });

  it('aborting the signal while queued errors with signal.reason and removes the queued key', async () => {
    const key = `${uniquePrefix('lock')}/abort`;
    const holder = record((onRelease) => lock$(etcd.client, key, { ttl: 5, onRelease }));
    await holder.next('held');
    const controller = new AbortController();
    const waiter = record((onRelease) => lock$(etcd.client, key, { ttl: 5, signal: controller.signal, onRelease }));
    await until(() => waiter.states.some((s) => s.kind === 'acquiring' && s.ahead === 1), `waiter queued`);
    const reason = new Error('shutting down');
    controller.abort(reason);
    assert.equal(await waiter.failed(), reason);
    await waiter.released();
    assert.equal((await listKeys(etcd.endpoints, `${key}/`)).length, 1);
    await holder.release();
    await assertNothingLeft(key);
  });

  it('unsubscribing while queued removes the key, and the next waiter still gets the lock in order', async () => {
    const key = `${uniquePrefix('lock')}/cancel`;
    const holder = record((onRelease) => lock$(etcd.client, key, { id: 'h', ttl: 5, onRelease }));
    await holder.next('held');
    const middle = record((onRelease) => lock$(etcd.client, key, { id: 'm', ttl: 5, onRelease }));
    await until(() => middle.states.some((s) => s.kind === 'acquiring' && s.ahead === 1), `middle queued`);
    const last = record((onRelease) => lock$(etcd.client, key, { id: 'l', ttl: 5, onRelease }));
    await until(() => last.states.some((s) => s.kind === 'acquiring' && s.ahead === 2), `last queued`);
    await middle.release();
    assert.equal((await listKeys(etcd.endpoints, `${key}/`)).length, 2, 'the cancelled key is gone');
    // Its predecessor gone, the last one looks again and sees one ahead of it (the holder), not the two keys of
    // before: etcd counts a range before applying max_create_revision, so a count would say 2.
    await until(
      () => last.states.flatMap((s) => (s.kind === 'acquiring' && s.ahead !== undefined ? [s.ahead] : [])).at(-1) === 1,
      'one ahead',
    );
    await holder.release();
    await last.next('held');
    assert.ok(!middle.states.some((s) => s.kind === 'held'));
    await last.release();
    await assertNothingLeft(key);
  });

  it('reports lost (deleted) when our key is deleted from outside, well within the TTL', async () => {
    const key = `${uniquePrefix('lock')}/deleted`;
    const a = record((onRelease) => lock$(etcd.client, key, { ttl: 10, onRelease }));
    const held = (await a.next('held')) as HeldState;
    const deletedAt = performance.now();
    await etcd.client.delete().key(held.holderKey).exec();
    const lost = await a.next('lost');
    assert.equal(lost.kind === 'lost' && lost.reason, 'deleted');
    assert.ok(lost.at - deletedAt < 10_000, 'detected before the lease could expire');
    const err = await a.failed();
    assert.ok(err instanceof LockLostError && err.code === 'ETCDLOCK_LOST' && err.reason === 'deleted');
    assert.equal(lost.kind === 'lost' && lost.error, err, 'the lost state carries the error the stream fails with');
    await a.released();
    await assertNothingLeft(key, [held.leaseId]);
  });

  it('reports lost (changed) when our key is overwritten from outside', async () => {
    const key = `${uniquePrefix('lock')}/changed`;
    const a = record((onRelease) => lock$(etcd.client, key, { ttl: 10, onRelease }));
    const held = (await a.next('held')) as HeldState;
    await etcd.client.put(held.holderKey).value('intruder').exec();
    const lost = await a.next('lost');
    assert.equal(lost.kind === 'lost' && lost.reason, 'changed');
    await a.released();
    await etcd.client.delete().key(held.holderKey).exec(); // the intruder's put took it off our lease
    await assertNothingLeft(key, [held.leaseId]);
  });

  it('releaseAfter keeps a lost lock from the next waiter until the promise settles', async () => {
    const key = `${uniquePrefix('lock')}/gate`;
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const a = record((onRelease) => lock$(etcd.client, key, { id: 'a', ttl: 10, onRelease, releaseAfter: gate }));
    const held = (await a.next('held')) as HeldState;
    const b = record((onRelease) => lock$(etcd.client, key, { id: 'b', ttl: 10, onRelease }));
    await until(() => b.states.some((s) => s.kind === 'acquiring' && s.waitingFor?.id === 'a'), 'b queued behind a');
    // Overwrite our key but keep it on our lease: the lock is lost ('changed'), yet the key still queues b.
    await etcd.client
      .put(held.holderKey)
      .value('intruder')
      .lease(BigInt(`0x${held.leaseId}`).toString())
      .exec();
    const lost = await a.next('lost');
    assert.equal(lost.kind === 'lost' && lost.reason, 'changed');
    await sleep(300);
    assert.ok(!b.states.some((s) => s.kind === 'held'), 'b is not granted while the gate is closed');
    assert.equal((await listKeys(etcd.endpoints, `${key}/`)).length, 2);
    openGate();
    await b.next('held');
    await a.released();
    await b.release();
    await assertNothingLeft(key, [held.leaseId]);
  });

  it('reports lost when the lease is revoked from outside', async () => {
    const key = `${uniquePrefix('lock')}/revoked`;
    const a = record((onRelease) => lock$(etcd.client, key, { ttl: 10, onRelease }));
    const held = (await a.next('held')) as HeldState;
    const revoked = await etcdctl(etcd.endpoints, ['lease', 'revoke', held.leaseId]);
    assert.equal(revoked.code, 0, revoked.stderr);
    const lost = await a.next('lost');
    assert.ok(
      lost.kind === 'lost' && ['deleted', 'expired'].includes(lost.reason),
      `reason ${lost.kind === 'lost' && lost.reason}`,
    );
    await a.released();
    await assertNothingLeft(key, [held.leaseId]);
  });

  it('a waiter whose key vanishes while queued fails and is never told it holds the lock', async () => {
    const key = `${uniquePrefix('lock')}/vanish`;
    const holder = record((onRelease) => lock$(etcd.client, key, { ttl: 10, onRelease }));
    await holder.next('held');
    const waiter = record((onRelease) => lock$(etcd.client, key, { ttl: 10, onRelease }));
    await until(() => waiter.states.some((s) => s.kind === 'acquiring' && s.ahead === 1), `waiter queued`);
    const keys = await listKeys(etcd.endpoints, `${key}/`);
    const holderKey = (holder.states[1] as HeldState).holderKey;
    const waiterKey = keys.find((k) => k !== holderKey)!;
    await etcd.client.delete().key(waiterKey).exec();
    const err = await waiter.failed();
    assert.ok(isLockError(err) && err.code === 'ETCDLOCK_LOST', String(err));
    await holder.release();
    await sleep(200);
    assert.ok(!waiter.states.some((s) => s.kind === 'held'), 'never held');
    await waiter.released();
    await assertNothingLeft(key);
  });

  it('a waiter whose lease is revoked while queued fails and is never told it holds the lock', async () => {
    const key = `${uniquePrefix('lock')}/lease-gone`;
    const holder = record((onRelease) => lock$(etcd.client, key, { ttl: 10, onRelease }));
    await holder.next('held');
    const waiter = record((onRelease) => lock$(etcd.client, key, { ttl: 10, onRelease }));
    await until(() => waiter.states.some((s) => s.kind === 'acquiring' && s.ahead === 1), `waiter queued`);
    const holderLease = (holder.states[1] as HeldState).leaseId;
    const waiterKeys = (await listKeys(etcd.endpoints, `${key}/`)).filter((k) => !k.endsWith(holderLease));
    assert.equal(waiterKeys.length, 1);
    const hex = waiterKeys[0]!.slice(key.length + 1); // the waiter's key is named after its lease
    await etcdctl(etcd.endpoints, ['lease', 'revoke', hex]);
    const err = await waiter.failed();
    assert.ok(isLockError(err) && err.code === 'ETCDLOCK_LOST', String(err));
    await holder.release();
    await sleep(200);
    assert.ok(!waiter.states.some((s) => s.kind === 'held'), 'never held');
    await assertNothingLeft(key);
  });
});
