/**
 * A locker's waiters follow the queue through the locker's one prefix watch and take a released lock without
 * reading the queue again (lib/queue-watch.ts). These tests pin what that must keep: a waiter whose own key went
 * first is never told it holds, and the saved read is really saved.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { isLockError } from '../../lib/errors.js';
import { createLocker, type Locker } from '../../lib/locker.js';
import type { LockerLockState } from '../../lib/locker-state.js';
import { etcdForSuite, listKeys, uniquePrefix } from '../support/etcd.js';
import { countingClient } from '../support/counting-client.js';
import { until } from '../support/poll.js';
import { sleep } from '../support/recorder.js';

/** The outcome of a promise, without waiting for it. */
function settle<T>(promise: Promise<T>): { value?: T; error?: unknown; done: boolean } {
  const outcome: { value?: T; error?: unknown; done: boolean } = { done: false };
  promise.then(
    (value) => Object.assign(outcome, { value, done: true }),
    (error: unknown) => Object.assign(outcome, { error, done: true }),
  );
  return outcome;
}

describe('a locker waiter follows the queue by watch, against a real etcd', () => {
  const etcd = etcdForSuite();

  /** A locker on a client of its own that counts the transactions sent through it. */
  function countingLocker(t: TestContext, name: string): { locker: Locker; txns: () => number } {
    const { client, txns } = countingClient(etcd.endpoints);
    const locker = createLocker(client, { name, ttl: 10 });
    // The locker first: closing it revokes its lease through this client.
    t.after(async () => {
      await locker.close();
      client.close();
    });
    return { locker, txns };
  }

  function states(t: TestContext, locker: Locker, id: string): LockerLockState[] {
    const seen: LockerLockState[] = [];
    const subscription = locker.lockState$(id).subscribe((state) => seen.push(state));
    t.after(() => subscription.unsubscribe());
    return seen;
  }

  /** Lock `a` held by a first locker, and a second locker's lock('a') queued behind it, with its queued key. */
  async function holderAndWaiter(t: TestContext) {
    const name = uniquePrefix('locker-queue');
    const first = countingLocker(t, name);
    const second = countingLocker(t, name);
    const held = await first.locker.lock('a');
    const seen = states(t, second.locker, 'a');
    const call = settle(second.locker.lock('a', { wait: true }));
    await until(() => seen.some((s) => s.kind === 'acquiring' && s.ahead === 1), 'queued');
    const queuedKey = (await listKeys(etcd.endpoints, `${name}/a/`)).find((key) => key !== held.holderKey);
    assert.ok(queuedKey, 'the waiter key');
    return { name, first, held, seen, call, queuedKey };
  }

  it('each waiter takes the lock in its turn with no transaction of its own, however far back it queued', async (t) => {
    const name = uniquePrefix('locker-queue');
    const first = countingLocker(t, name);
    const second = countingLocker(t, name);
    const third = countingLocker(t, name);
    const held = await first.locker.lock('a');
    const seenBySecond = states(t, second.locker, 'a');
    const seenByThird = states(t, third.locker, 'a');
    const secondCall = settle(second.locker.lock('a', { wait: true }));
    await until(() => seenBySecond.some((s) => s.kind === 'acquiring' && s.ahead === 1), 'second queued');
    const thirdCall = settle(third.locker.lock('a', { wait: true }));
    await until(() => seenByThird.some((s) => s.kind === 'acquiring' && s.ahead === 2), 'third queued');
    const before = { second: second.txns(), third: third.txns() };

    await first.locker.release('a');
    await until(() => secondCall.done, 'the second to hold');
    assert.equal(secondCall.value?.kind, 'held', String(secondCall.error));
    assert.ok(BigInt(secondCall.value.fencingToken) > BigInt(held.fencingToken));
    assert.equal(second.txns(), before.second, 'the second waiter sent no transaction to take the lock');
    // The third waits on the second: the first's release is no news for it, and costs it nothing.
    await sleep(100);
    assert.equal(thirdCall.done, false);
    assert.equal(third.txns(), before.third, 'the third waiter sent no transaction');
    await second.locker.release('a');
    await until(() => thirdCall.done, 'the third to hold');
    assert.equal(thirdCall.value?.kind, 'held', String(thirdCall.error));
    assert.equal(third.txns(), before.third, 'nor to take the lock in its turn');
  });

  it('a predecessor that vanishes while waiting moves the waiter up, with no read; it holds when the holder goes', async (t) => {
    const name = uniquePrefix('locker-queue');
    const first = countingLocker(t, name);
    const second = countingLocker(t, name);
    const third = countingLocker(t, name);
    await first.locker.lock('a');
    const seenBySecond = states(t, second.locker, 'a');
    const secondCall = settle(second.locker.lock('a', { wait: true }));
    await until(() => seenBySecond.some((s) => s.kind === 'acquiring' && s.ahead === 1), 'second queued');
    const seenByThird = states(t, third.locker, 'a');
    const thirdCall = settle(third.locker.lock('a', { wait: true }));
    await until(() => seenByThird.some((s) => s.kind === 'acquiring' && s.ahead === 2), 'third queued');
    const before = third.txns();

    const { kvs } = await etcd.client.getAll().prefix(`${name}/a/`).sort('Create', 'Ascend').exec();
    assert.equal(kvs.length, 3);
    const predecessor = kvs[1]!.key.toString(); // the second's queued key: the third's predecessor
    await etcd.client.delete().key(predecessor).exec();
    await until(() => secondCall.done, 'the second to be told');
    assert.ok(isLockError(secondCall.error) && secondCall.error.code === 'ETCDLOCK_LOST', String(secondCall.error));
    await until(() => seenByThird.some((s) => s.kind === 'acquiring' && s.ahead === 1), 'the third moves up');
    assert.equal(thirdCall.done, false, 'still behind the holder');

    await first.locker.release('a');
    await until(() => thirdCall.done, 'the third to hold');
    assert.equal(thirdCall.value?.kind, 'held', String(thirdCall.error));
    assert.equal(third.txns(), before, 'the third sent no transaction after its enqueue');
  });

  for (const order of ['own key first', 'holder key first'] as const) {
    it(`a waiter whose key goes in the same transaction as the holder's (${order}) is not told it holds`, async (t) => {
      const { name, held, seen, call, queuedKey } = await holderAndWaiter(t);
      const deletes = order === 'own key first' ? [queuedKey, held.holderKey] : [held.holderKey, queuedKey];
      await etcd.client.kv.txn({
        compare: [],
        success: deletes.map((key) => ({ request_delete_range: { key: Buffer.from(key) } })),
        failure: [],
      });

      await until(() => call.done, 'the waiting lock() to end');
      assert.ok(isLockError(call.error), `rejected, not held: ${JSON.stringify(call.value)}`);
      assert.equal(call.error.code, 'ETCDLOCK_LOST');
      assert.ok(!seen.some((s) => s.kind === 'held'), 'never reported held');
      assert.deepEqual(await listKeys(etcd.endpoints, `${name}/a/`), []);
    });
  }

  it('a waiter whose key went before the holder released is not told it holds', async (t) => {
    const { first, seen, call, queuedKey } = await holderAndWaiter(t);
    await etcd.client.delete().key(queuedKey).exec();
    await first.locker.release('a');
    await until(() => call.done, 'the waiting lock() to end');
    assert.ok(isLockError(call.error) && call.error.code === 'ETCDLOCK_LOST', String(call.error));
    assert.ok(!seen.some((s) => s.kind === 'held'));
  });
});
