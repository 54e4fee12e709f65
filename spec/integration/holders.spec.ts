import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { campaign$ } from '../../lib/election.js';
import { isLockError } from '../../lib/errors.js';
import { holders } from '../../lib/holders.js';
import { lock$ } from '../../lib/lock-stream.js';
import type { HeldState } from '../../lib/state.js';
import { etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { etcdctlLock } from '../support/etcdctl-lock.js';
import { until } from '../support/poll.js';
import { record, type Recorded } from '../support/recorder.js';

describe('holders() against a real etcd', () => {
  const etcd = etcdForSuite();

  /** Holder `ids[0]` and waiters behind it, each queued before the next subscribes. */
  async function queue(key: string, ids: string[], ttl = 30): Promise<Recorded[]> {
    const contenders: Recorded[] = [];
    for (const [position, id] of ids.entries()) {
      const contender = record((onRelease) => lock$(etcd.client, key, { id, ttl, onRelease }));
      if (position === 0) await contender.next('held');
      else await until(() => contender.states.some((s) => s.kind === 'acquiring' && s.ahead === position), id);
      contenders.push(contender);
    }
    return contenders;
  }

  it('a free lock has nobody: [], and reading creates no key and no lease', async () => {
    const key = `${uniquePrefix('holders')}/free`;
    const leasesBefore = etcd.node ? await listLeases(etcd.endpoints) : undefined;
    assert.deepEqual(await holders(etcd.client, key), []);
    assert.deepEqual(await listKeys(etcd.endpoints, key), []);
    if (leasesBefore) assert.deepEqual(await listLeases(etcd.endpoints), leasesBefore);
  });

  it('lists the holder, then the waiters in FIFO order, with tokens, leases and TTLs left', async () => {
    const key = `${uniquePrefix('holders')}/queue`;
    const [a, b, c] = await queue(key, ['worker-a', 'worker-b', 'worker-c']);
    const held = (await a!.next('held')) as HeldState;
    const leasesBefore = etcd.node ? await listLeases(etcd.endpoints) : undefined;

    const list = await holders(etcd.client, key);
    assert.deepEqual(
      list.map((contender) => contender.id),
      ['worker-a', 'worker-b', 'worker-c'],
    );
    assert.equal(list[0]?.fencingToken, held.fencingToken, "the holder's token is its fencing token");
    assert.equal(list[0]?.leaseId, held.leaseId);
    assert.equal(list[0]?.key, held.holderKey);
    const { kvs } = await etcd.client.getAll().prefix(`${key}/`).sort('Create', 'Ascend').exec();
    list.forEach((contender, i) => {
      assert.equal(contender.fencingToken, kvs[i]?.create_revision, 'the token is the create revision');
      assert.equal(contender.key, `${key}/${contender.leaseId}`, 'the key is named after the lease');
      assert.ok(contender.ttl > 0 && contender.ttl <= 30, `ttl ${contender.ttl} is what the lease has left`);
    });
    const tokens = list.map((contender) => BigInt(contender.fencingToken));
    assert.ok(tokens[0]! < tokens[1]! && tokens[1]! < tokens[2]!, 'tokens rise along the queue');
    if (leasesBefore) assert.deepEqual(await listLeases(etcd.endpoints), leasesBefore, 'holders() took no lease');

    await b!.release();
    assert.deepEqual(
      (await holders(etcd.client, key)).map((contender) => contender.id),
      ['worker-a', 'worker-c'],
    );
    await Promise.all([a!.release(), c!.release()]);
    assert.deepEqual(await holders(etcd.client, key), []);
  });

  it("shows an etcdctl lock holder (no value: id '') and a key on no lease (ttl Infinity)", async () => {
    const key = `${uniquePrefix('holders')}/foreign`;
    const ctl = etcdctlLock(etcd.endpoints, key);
    try {
      await until(() => ctl.stdout().startsWith(`${key}/`), 'etcdctl to hold the lock');
      await etcd.client.put(`${key}/by-hand`).value('manual').exec();
      const [first, second] = await holders(etcd.client, key);
      assert.equal(first?.id, '');
      assert.equal(first?.key, ctl.stdout().trim());
      assert.ok(first && first.ttl > 0 && first.ttl <= 60, `etcdctl's session TTL left: ${first?.ttl}`);
      assert.deepEqual(
        { ...second, fencingToken: undefined },
        {
          id: 'manual',
          fencingToken: undefined,
          leaseId: '0',
          ttl: Infinity,
          key: `${key}/by-hand`,
        },
      );
    } finally {
      ctl.child.kill('SIGINT');
      await ctl.exited;
      await etcd.client.delete().key(`${key}/by-hand`).exec();
    }
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
  });

  it("lists an election's leader first, then its candidates", async () => {
    const name = `${uniquePrefix('holders')}/election`;
    const releases: Promise<void>[] = [];
    const kinds: string[][] = [[], []];
    const subscriptions = ['leader-1', 'candidate-2'].map((id, i) =>
      campaign$(etcd.client, name, { id, ttl: 10, onRelease: (done) => void releases.push(done) }).subscribe({
        next: (state) => kinds[i]!.push(state.kind === 'candidate' ? `candidate ${state.ahead}` : state.kind),
        error: (err: unknown) => kinds[i]!.push(String(err)),
      }),
    );
    await until(() => kinds[0]!.includes('leader') || kinds[1]!.includes('leader'), 'a leader');
    await until(() => [...kinds[0]!, ...kinds[1]!].includes('candidate 1'), 'a candidate in line');
    const leader = kinds[0]!.includes('leader') ? 'leader-1' : 'candidate-2';

    const list = await holders(etcd.client, name);
    assert.equal(list[0]?.id, leader, 'the leader first');
    assert.equal(list.length, 2);
    for (const subscription of subscriptions) subscription.unsubscribe();
    await Promise.all(releases);
    assert.deepEqual(await holders(etcd.client, name), []);
  });

  it('rejects bad arguments before any request, naming them', async () => {
    const key = `${uniquePrefix('holders')}/bad`;
    const cases: Array<[() => Promise<unknown>, RegExp]> = [
      [() => holders(null as never, key), /`client` to be an etcd3 Etcd3 client, got null/],
      [() => holders(etcd.client, ''), /`key` to be a non-empty string, got ""/],
      [() => holders(etcd.client, key, { wait: true } as never), /Unknown option `wait`/],
      [() => holders(etcd.client, key, 5 as never), /`options` to be an object, got 5/],
      [() => holders(etcd.client, key, { signal: 'stop' } as never), /`signal` to be an AbortSignal/],
    ];
    for (const [call, message] of cases) {
      await assert.rejects(call(), (err: unknown) => {
        assert.ok(isLockError(err) && err.code === 'ETCDLOCK_INVALID_ARGUMENT', String(err));
        assert.match(err.message, message);
        return true;
      });
    }
  });

  it('an aborted signal rejects with its reason; an unreachable etcd with ETCDLOCK_UNAVAILABLE', async () => {
    const key = `${uniquePrefix('holders')}/fail`;
    const reason = new Error('stop');
    await assert.rejects(holders(etcd.client, key, { signal: AbortSignal.abort(reason) }), (err) => err === reason);

    const nowhere = new Etcd3({ hosts: '127.0.0.1:1', dialTimeout: 500 });
    try {
      await assert.rejects(holders(nowhere, key), (err: unknown) => {
        assert.ok(isLockError(err) && err.code === 'ETCDLOCK_UNAVAILABLE', String(err));
        assert.match(err.message, new RegExp(`Could not read who holds "${key}"`));
        return true;
      });
    } finally {
      nowhere.close();
    }
  });
});
