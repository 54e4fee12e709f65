/**
 * Semaphores: `lock$(client, key, { limit: N })` and `Lock#limit`, against a real etcd. Up to N holders at once,
 * FIFO otherwise, each with its own fencing token; a waiter watches the N keys just ahead of its own, so a
 * release wakes at most N waiters and none is left asleep when a key ahead of it goes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filter, firstValueFrom, tap } from 'rxjs';
import { InvalidArgumentError, isLockError } from '../../lib/errors.js';
import { Lock } from '../../lib/facade.js';
import { lock$ } from '../../lib/lock-stream.js';
import type { LockOptions } from '../../lib/options.js';
import type { HeldState, LockState } from '../../lib/state.js';
import { etcdctl, etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { etcdctlLock } from '../support/etcdctl-lock.js';
import { until } from '../support/poll.js';
import { record, sleep, type Recorded } from '../support/recorder.js';

/** The last `acquiring` state that says how many are ahead, if any. */
function lastAhead(r: Recorded): number | undefined {
  const state = r.states.filter((s) => s.kind === 'acquiring' && s.ahead !== undefined).at(-1);
  return state?.kind === 'acquiring' ? state.ahead : undefined;
}

function heldState(r: Recorded): HeldState | undefined {
  return r.states.find((s): s is HeldState & { at: number } => s.kind === 'held');
}

describe('semaphores (limit) against a real etcd', () => {
  const etcd = etcdForSuite();

  /** The keys under the lock, oldest first: the holders are the first `limit`. */
  async function queue(key: string): Promise<string[]> {
    const { kvs } = await etcd.client.getAll().prefix(`${key}/`).sort('Create', 'Ascend').exec();
    return kvs.map((kv) => kv.key.toString());
  }

  async function assertNothingLeft(key: string, leaseHexes: string[]) {
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), [], 'no key is left under the semaphore');
    const leases = new Set(await listLeases(etcd.endpoints));
    for (const hex of leaseHexes) assert.ok(!leases.has(BigInt(`0x${hex}`).toString()), `lease ${hex} was revoked`);
  }

  /** Subscribes a contender and waits until it holds (`ahead` undefined) or is queued with `ahead` ahead. */
  async function join(key: string, id: string, options: LockOptions, ahead?: number): Promise<Recorded> {
    const r = record((onRelease) => lock$(etcd.client, key, { id, ttl: 10, ...options, onRelease }));
    if (ahead === undefined) await r.next('held');
    else await until(() => lastAhead(r) === ahead, `${id} queued with ${ahead} ahead`);
    return r;
  }

  /** The ids of the contenders that hold now (held, not yet released), in subscription order. */
  function holding(contenders: Map<string, Recorded>): string[] {
    return [...contenders].filter(([, r]) => !r.subscription.closed && heldState(r)).map(([id]) => id);
  }

  it('N=3, 6 contenders: 3 hold at once, the rest wait in FIFO order; a middle holder leaving lets the next in', async () => {
    const key = `${uniquePrefix('semaphore')}/pool`;
    const limit = 3;
    /** Each holder's position in etcd's queue, read right after it reported `held` (keys ahead only ever go). */
    const positionsAtGrant: Array<{ id: string; position: number }> = [];
    const releasedAt = new Map<string, number>();
    const contenders = new Map<string, Recorded>();
    const ids = ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'];
    for (const [i, id] of ids.entries()) {
      const r = record((onRelease) =>
        lock$(etcd.client, key, { id, ttl: 10, limit, onRelease }).pipe(
          tap((state: LockState) => {
            if (state.kind !== 'held') return;
            void queue(key).then((keys) => positionsAtGrant.push({ id, position: keys.indexOf(state.holderKey) }));
          }),
        ),
      );
      contenders.set(id, r);
      if (i < limit) await r.next('held');
      else await until(() => lastAhead(r) === i, `${id} queued with ${i} ahead`);
    }
    const c = (id: string) => contenders.get(id)!;
    const leaseHexes = ids.slice(0, limit).map((id) => heldState(c(id))!.leaseId);

    // Three hold at once; the waiters know who has held longest and how many are ahead.
    assert.deepEqual(holding(contenders), ['c0', 'c1', 'c2']);
    for (const id of ['c3', 'c4', 'c5']) {
      const waiting = c(id).states.find((s) => s.kind === 'acquiring' && s.waitingFor);
      assert.equal(waiting?.kind === 'acquiring' && waiting.waitingFor?.id, 'c0', `${id} waits for the oldest holder`);
    }
    const tokensAtStart = ids.slice(0, limit).map((id) => BigInt(heldState(c(id))!.fencingToken));
    assert.equal(new Set(tokensAtStart).size, limit, 'each holder has its own fencing token');

    /** Holders as the events say, and as etcd's keys say: the first `limit` keys are exactly ours. */
    const assertHolders = async (expected: string[]) => {
      assert.deepEqual(holding(contenders), expected);
      const keys = await queue(key);
      assert.deepEqual(
        keys.slice(0, limit),
        expected.map((id) => heldState(c(id))!.holderKey),
        "the holders' keys are the oldest under the prefix",
      );
    };
    const release = async (id: string) => {
      releasedAt.set(id, performance.now());
      await c(id).release();
    };
    await assertHolders(['c0', 'c1', 'c2']);

    // c1 is neither the oldest holder nor the newest: c3's third key ahead (c0) stays, yet c3 must be woken.
    await release('c1');
    await c('c3').next('held');
    await assertHolders(['c0', 'c2', 'c3']);
    // c4 had c1 among the three keys just ahead: it looked again and counts 3 ahead now.
    await until(() => lastAhead(c('c4')) === 3, 'c4 counts 3 ahead');
    assert.ok(!heldState(c('c4')) && !heldState(c('c5')), 'c4 and c5 still wait');

    await release('c3'); // the newest holder
    await c('c4').next('held');
    await assertHolders(['c0', 'c2', 'c4']);

    await release('c0'); // the oldest holder
    await c('c5').next('held');
    await assertHolders(['c2', 'c4', 'c5']);

    for (const id of ['c2', 'c4', 'c5']) await release(id);
    await until(() => positionsAtGrant.length === ids.length, 'every grant checked against etcd');

    // Grants in FIFO order, with rising tokens.
    const grants = ids
      .map((id) => ({ id, held: heldState(c(id))! }))
      .sort((a, b) => (BigInt(a.held.fencingToken) < BigInt(b.held.fencingToken) ? -1 : 1));
    assert.deepEqual(
      grants.map((g) => g.id),
      ids,
      'tokens rise in the order the contenders queued',
    );
    const byGrantTime = [...grants].sort(
      (a, b) => c(a.id).states.find((s) => s.kind === 'held')!.at - c(b.id).states.find((s) => s.kind === 'held')!.at,
    );
    assert.deepEqual(
      byGrantTime.map((g) => g.id),
      ids,
      'granted in FIFO order',
    );

    // Never more than 3 at once, from the events: at each grant, count who had been granted and not yet released.
    let most = 0;
    for (const id of ids) {
      const at = c(id).states.find((s) => s.kind === 'held')!.at;
      const concurrent = ids.filter((other) => {
        const grantedAt = c(other).states.find((s) => s.kind === 'held')!.at;
        return grantedAt <= at && (releasedAt.get(other) ?? Infinity) > at;
      }).length;
      most = Math.max(most, concurrent);
    }
    assert.equal(most, limit, `at most ${limit} holders at once, and that many at some point`);
    // ...and from etcd: every holder's key was among the 3 oldest when it said `held`.
    for (const { id, position } of positionsAtGrant) {
      assert.ok(position >= 0 && position < limit, `${id} was at position ${position} of the queue when granted`);
    }
    for (const id of ids) assert.equal(c(id).error, undefined, `${id} did not fail`);
    await assertNothingLeft(key, [...leaseHexes, ...['c3', 'c4', 'c5'].map((id) => heldState(c(id))!.leaseId)]);
  });

  it('a release wakes only the waiters that had the released key among the N just ahead (no herd)', async () => {
    const key = `${uniquePrefix('semaphore')}/herd`;
    const options = { limit: 2 };
    const contenders = new Map<string, Recorded>();
    for (const [i, id] of ['h0', 'h1', 'w2', 'w3', 'w4', 'w5'].entries()) {
      contenders.set(id, await join(key, id, options, i < 2 ? undefined : i));
    }
    const c = (id: string) => contenders.get(id)!;
    const statesOf = (ids: string[]) => ids.map((id) => c(id).states.length);

    // h0 is among the two keys just ahead of w2 only.
    let before = statesOf(['w3', 'w4', 'w5']);
    await c('h0').release();
    await c('w2').next('held');
    await sleep(300); // time for a waiter woken by mistake to re-read and say so
    assert.deepEqual(statesOf(['w3', 'w4', 'w5']), before, 'w3, w4 and w5 were not woken');

    // h1 is among the two just ahead of w2 (now holding) and w3: w3 gets in, w4 and w5 sleep on.
    before = statesOf(['w4', 'w5']);
    await c('h1').release();
    await c('w3').next('held');
    await sleep(300);
    assert.deepEqual(statesOf(['w4', 'w5']), before, 'w4 and w5 were not woken');
    assert.equal(lastAhead(c('w5')), 5, "w5's count is the one it last read: nothing woke it");

    await c('w2').release();
    await c('w4').next('held');
    await c('w3').release();
    await c('w5').next('held');
    await c('w4').release();
    await c('w5').release();
    for (const [id, r] of contenders) assert.equal(r.error, undefined, `${id} did not fail`);
    await assertNothingLeft(key, []);
  });

  it('withdrawn and lost waiters do not block the ones behind them', async () => {
    const key = `${uniquePrefix('semaphore')}/gaps`;
    const options = { limit: 2 };
    const a = await join(key, 'a', options);
    const b = await join(key, 'b', options);
    const withdrawn = await join(key, 'withdrawn', options, 2);
    const deleted = await join(key, 'deleted', options, 3);
    const revoked = await join(key, 'revoked', options, 4);
    const last = await join(key, 'last', options, 5);
    const keys = await queue(key);
    assert.equal(keys.length, 6);

    await withdrawn.release(); // unsubscribes while queued: its key leaves the queue
    await etcd.client.delete().key(keys[3]!).exec(); // someone deletes a queued key
    const revokedLease = keys[4]!.slice(key.length + 1); // a key is named after its lease
    assert.equal((await etcdctl(etcd.endpoints, ['lease', 'revoke', revokedLease])).code, 0);

    for (const failed of [deleted, revoked]) {
      const err = await failed.failed();
      assert.ok(isLockError(err) && err.code === 'ETCDLOCK_LOST', String(err));
    }
    // Every waiter ahead of `last` went, one way or another: it now counts only the two holders.
    await until(() => lastAhead(last) === 2, 'last counts 2 ahead');
    await b.release();
    await last.next('held');
    assert.ok(heldState(a), 'a still holds');
    assert.deepEqual(await queue(key), [heldState(a)!.holderKey, heldState(last)!.holderKey]);
    for (const never of [withdrawn, deleted, revoked]) assert.ok(!heldState(never), 'a gone waiter never held');
    await a.release();
    await last.release();
    await deleted.released();
    await revoked.released();
    await assertNothingLeft(key, [heldState(a)!.leaseId, heldState(last)!.leaseId, revokedLease]);
  });

  it('try-once (wait: false) is busy only when N are ahead, naming the oldest holder, and leaves no key', async () => {
    const key = `${uniquePrefix('semaphore')}/try`;
    const a = await join(key, 'a', { limit: 2 });
    const b = await join(key, 'b', { limit: 2, wait: false }); // one ahead of two slots: held
    const full = record((onRelease) => lock$(etcd.client, key, { id: 'c', ttl: 10, limit: 2, wait: false, onRelease }));
    const err = await full.failed();
    assert.ok(isLockError(err) && err.code === 'ETCDLOCK_BUSY', String(err));
    assert.match((err as Error).message, /"a"/);
    await full.released();
    assert.deepEqual(await queue(key), [heldState(a)!.holderKey, heldState(b)!.holderKey], 'no key left for c');
    const zero = record((onRelease) => lock$(etcd.client, key, { id: 'z', ttl: 10, limit: 2, timeout: 0, onRelease }));
    const zeroErr = await zero.failed();
    assert.ok(isLockError(zeroErr) && zeroErr.code === 'ETCDLOCK_BUSY', 'timeout: 0 tries once too');
    await zero.released();
    await a.release();
    const d = await join(key, 'd', { limit: 2, wait: false }); // a slot is free again
    await b.release();
    await d.release();
    await assertNothingLeft(key, [heldState(a)!.leaseId, heldState(b)!.leaseId, heldState(d)!.leaseId]);
  });

  it('a timeout while all N slots are taken fails with ETCDLOCK_TIMEOUT and removes the queued key', async () => {
    const key = `${uniquePrefix('semaphore')}/timeout`;
    const a = await join(key, 'a', { limit: 2 });
    const b = await join(key, 'b', { limit: 2 });
    const waiter = record((onRelease) => lock$(etcd.client, key, { ttl: 10, limit: 2, timeout: 300, onRelease }));
    const err = await waiter.failed();
    assert.ok(isLockError(err) && err.code === 'ETCDLOCK_TIMEOUT', String(err));
    await waiter.released();
    assert.equal((await queue(key)).length, 2, 'only the holders are left');
    await a.release();
    await b.release();
    await assertNothingLeft(key, [heldState(a)!.leaseId, heldState(b)!.leaseId]);
  });

  it('limit 1 is the plain lock: one holder, the next waits', async () => {
    const key = `${uniquePrefix('semaphore')}/one`;
    const a = await join(key, 'a', { limit: 1 });
    const b = await join(key, 'b', { limit: 1 }, 1);
    await a.release();
    await b.next('held');
    await b.release();
    await assertNothingLeft(key, [heldState(a)!.leaseId, heldState(b)!.leaseId]);
  });

  it('the facade: lock.limit set before lock() lets that many Locks hold at once', async () => {
    const key = `${uniquePrefix('semaphore')}/facade`;
    const locks = ['l1', 'l2', 'l3'].map((id) => new Lock(etcd.client, key, id, 10));
    assert.equal(locks[0]!.limit, 1, 'a lock unless set');
    assert.throws(
      () => {
        locks[0]!.limit = 0;
      },
      (err: unknown) => err instanceof InvalidArgumentError && /`limit`.*>= 1, got 0/.test(err.message),
    );
    for (const lock of locks) lock.limit = 2;
    const [l1, l2, l3] = locks as [Lock, Lock, Lock];
    await l1.lock();
    await l2.lock();
    assert.ok(l1.isHeld && l2.isHeld, 'two hold at once');
    assert.notEqual(l1.fencingToken, l2.fencingToken);
    let l3Held = false;
    const l3Queued = firstValueFrom(l3.state$.pipe(filter((state) => state.kind === 'acquiring' && state.ahead === 2)));
    const l3Locked = l3.lock().then(() => (l3Held = true));
    await l3Queued;
    assert.equal(l3Held, false, 'the third waits while both slots are taken');
    await l1.unlock();
    await l3Locked;
    assert.ok(l3.isHeld && l2.isHeld);
    assert.ok(BigInt(l3.fencingToken!) > BigInt(l2.fencingToken!), 'a later grant, a higher token');
    await l2.unlock();
    await l3.unlock();
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
  });

  it('etcdctl lock sees a semaphore as a queue: it waits for every key ahead of it, even with a slot free', async () => {
    const key = `${uniquePrefix('semaphore')}/etcdctl`;
    const a = await join(key, 'a', { limit: 2 });
    const ctl = etcdctlLock(etcd.endpoints, key);
    try {
      while ((await queue(key)).length < 2) await sleep(10); // etcdctl has queued its key
      // A contender with limit 2 that comes after etcdctl counts it among the two slots: it waits too.
      const b = await join(key, 'b', { limit: 2 }, 2);
      assert.equal(ctl.stdout(), '', 'etcdctl does not hold while a semaphore key is ahead of it');
      await a.release();
      // etcdctl holds now, and so does b: it treats etcdctl as the other holder. Hence: one limit per key.
      await until(() => ctl.stdout().startsWith(`${key}/`), 'etcdctl to hold the lock');
      await b.next('held');
      ctl.child.kill('SIGINT');
      await ctl.exited;
      await b.release();
    } finally {
      ctl.child.kill('SIGKILL');
    }
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
  });
});
