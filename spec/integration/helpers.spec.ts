import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { interval, lastValueFrom, map, take } from 'rxjs';
import { isLockError, LockLostError } from '../../lib/errors.js';
import { lock$ } from '../../lib/lock-stream.js';
import { whileHeld, type LockGrant } from '../../lib/while-held.js';
import { withLock } from '../../lib/with-lock.js';
import { etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { until } from '../support/poll.js';

/** Issue 7, reactive and promise helpers: whileHeld and withLock against a real etcd. */
describe('whileHeld and withLock against a real etcd', () => {
  const etcd = etcdForSuite();

  /** No key under the lock and no lease that was not there before: nothing was left behind. */
  async function assertNothingLeft(key: string, leasesBefore: Set<string>) {
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), [], 'no key is left under the lock');
    const stray = (await listLeases(etcd.endpoints)).filter((lease) => !leasesBefore.has(lease));
    assert.deepEqual(stray, [], 'no lease is left');
  }
  const leases = async () => new Set(await listLeases(etcd.endpoints));

  it('withLock runs fn under the lock with its token, resolves with its value once the release is done', async () => {
    const key = `${uniquePrefix('with-lock')}/ok`;
    const before = await leases();
    let seen: { grant: LockGrant; value: string | undefined; createRevision: string | undefined } | undefined;
    const result = await withLock(
      etcd.client,
      key,
      async (grant) => {
        const kv = (await etcd.client.get(grant.holderKey).exec()).kvs[0];
        seen = { grant, value: kv?.value.toString(), createRevision: kv?.create_revision };
        return 42;
      },
      { id: 'worker', ttl: 5 },
    );
    assert.equal(result, 42);
    assert.equal(seen?.value, 'worker', 'our key held our id while fn ran');
    assert.equal(seen?.createRevision, seen?.grant.fencingToken, 'the token is the key create revision');
    assert.equal(seen?.grant.signal.aborted, true, 'the signal aborts once fn is done');
    await assertNothingLeft(key, before);
  });

  it('withLock: fn throws, the lock is released and the error passes through', async () => {
    const key = `${uniquePrefix('with-lock')}/throws`;
    const before = await leases();
    const boom = new Error('boom');
    await assert.rejects(
      withLock(etcd.client, key, () => Promise.reject(boom), { ttl: 5 }),
      (err) => err === boom,
    );
    await assertNothingLeft(key, before);
  });

  it('withLock: the lock lost while fn runs aborts its signal at once, and rejects once fn has settled', async () => {
    const key = `${uniquePrefix('with-lock')}/lost`;
    const before = await leases();
    const events: string[] = [];
    const run = withLock(
      etcd.client,
      key,
      async ({ holderKey, signal }) => {
        signal.addEventListener('abort', () => events.push(`aborted: ${(signal.reason as Error).name}`));
        await etcd.client.delete().key(holderKey).exec(); // an operator takes the lock away
        await until(() => signal.aborted, 'the signal aborted');
        await sleep(100); // fn takes a moment to wind down
        events.push('fn settled');
        return 'done anyway';
      },
      { ttl: 5 },
    );
    await assert.rejects(run, (err) => err instanceof LockLostError && err.reason === 'deleted');
    assert.deepEqual(events, ['aborted: LockLostError', 'fn settled']);
    await assertNothingLeft(key, before);
  });

  it('withLock: a held lock with wait: false rejects ETCDLOCK_BUSY and fn never runs', async () => {
    const key = `${uniquePrefix('with-lock')}/busy`;
    const before = await leases();
    let ran = false;
    await withLock(
      etcd.client,
      key,
      async () => {
        await assert.rejects(
          withLock(etcd.client, key, () => (ran = true), { wait: false, ttl: 5 }),
          (err) => isLockError(err) && err.code === 'ETCDLOCK_BUSY',
        );
      },
      { ttl: 5 },
    );
    assert.equal(ran, false);
    await assertNothingLeft(key, before);
  });

  it('withLock: your signal aborted while fn runs reaches fn, and withLock rejects with its reason', async () => {
    const key = `${uniquePrefix('with-lock')}/abort`;
    const before = await leases();
    const controller = new AbortController();
    const reason = new Error('shutting down');
    const run = withLock(
      etcd.client,
      key,
      async ({ signal }) => {
        controller.abort(reason);
        await until(() => signal.aborted, 'the grant signal aborted');
        assert.equal(signal.reason, reason);
      },
      { ttl: 5, signal: controller.signal },
    );
    await assert.rejects(run, (err) => err === reason);
    await assertNothingLeft(key, before);
  });

  it('withLock: concurrent calls take turns, with rising tokens, and never overlap', async () => {
    const key = `${uniquePrefix('with-lock')}/turns`;
    const before = await leases();
    let inside = 0;
    let most = 0;
    const tokens = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        withLock(
          etcd.client,
          key,
          async ({ fencingToken }) => {
            most = Math.max(most, ++inside);
            await sleep(50);
            inside--;
            return BigInt(fencingToken);
          },
          { id: `w${i}`, ttl: 5 },
        ),
      ),
    );
    assert.equal(most, 1, 'one at a time');
    assert.equal(new Set(tokens).size, 4, 'a token of its own for each');
    await assertNothingLeft(key, before);
  });

  it('withLock throws at once when fn is not a function', () => {
    assert.throws(() => withLock(etcd.client, '/k', 'nope' as unknown as () => void), /`fn` to be a function/);
  });

  it('whileHeld on a real lock$: the work runs while held, and completing it releases the lock', async () => {
    const key = `${uniquePrefix('while-held')}/work`;
    const before = await leases();
    let released = Promise.resolve();
    const ticks = await lastValueFrom(
      lock$(etcd.client, key, {
        ttl: 5,
        onRelease: (done) => {
          released = done;
        },
      }).pipe(
        whileHeld(({ fencingToken }) =>
          interval(20).pipe(
            take(3),
            map((n) => `${fencingToken}:${n}`),
          ),
        ),
        take(3),
      ),
    );
    assert.match(ticks, /^\d+:2$/);
    await released;
    await assertNothingLeft(key, before);
  });
});
