/**
 * Watches broken while they matter: the connection drops and etcd3 resumes the watch where it stopped, or etcd
 * cancels the resumed watch because the changes it missed were compacted away. The client under test talks to
 * etcd through a TCP proxy that cuts it off while the lock changes hands (or the leader changes), then heals.
 * Whatever broke, the waiter must take the lock once it is free, the lock it holds must still be watched for loss,
 * and an observer must keep following the election.
 *
 * The compacted waiter cases pin a bug of the first versions: the code cancelled the watch etcd had cancelled, etcd3
 * then threw inside its watch stream, and no watch of that client was ever created again (a waiter took the
 * lock by its read, and then no longer noticed losing it). See WaiterWatches.forget in lib/waiter-watches.ts.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { noop } from 'cockatiel';
import { Etcd3, type IKeyValue, type Watcher } from 'etcd3';
import { campaign$ } from '../../lib/election.js';
import { leader$ } from '../../lib/election-leader.js';
import type { Leader } from '../../lib/election-state.js';
import { LockLostError } from '../../lib/errors.js';
import { lock$ } from '../../lib/lock-stream.js';
import { createLocker, type Locker } from '../../lib/locker.js';
import type { LockerLockState, LockerLost } from '../../lib/locker-state.js';
import { cleanups } from '../support/cleanups.js';
import { etcdForSuite, listKeys, uniquePrefix } from '../support/etcd.js';
import { until } from '../support/poll.js';
import { startProxy, type TcpProxy } from '../support/proxy.js';
import { record, type Recorded, sleep } from '../support/recorder.js';

/** How a test breaks the cut-off client's watches: by the cut alone, or by the cut and a compaction. */
type Fault = 'dropped' | 'compacted';

describe('watches broken while a lock changes hands, against a real etcd', () => {
  const etcd = etcdForSuite();

  /** A client through a TCP proxy, without etcd3's circuit breaker (the test heals the link itself). */
  async function proxiedClient(defer: (cleanup: () => unknown) => void): Promise<{ proxy: TcpProxy; client: Etcd3 }> {
    const proxy = await startProxy(etcd.endpoints[0]!);
    defer(() => proxy.close());
    const client = new Etcd3({ hosts: proxy.endpoint, faultHandling: { host: () => noop, global: noop } });
    defer(() => client.close());
    return { proxy, client };
  }

  /**
   * Cuts `proxy`, runs `change` (which the cut-off client misses), compacts past it for `'compacted'`, waits
   * long enough for etcd3 to notice the broken stream (far less than any lease here), and heals.
   */
  async function cutOff(proxy: TcpProxy, fault: Fault, change: () => Promise<void>): Promise<void> {
    proxy.cut();
    await change();
    if (fault === 'compacted') {
      // A few changes more, so the resumed watch starts below the compaction whatever it had seen.
      const scratch = `${uniquePrefix('watch-cancelled')}/scratch`;
      for (let i = 0; i < 3; i++) await etcd.client.put(scratch).value(String(i));
      const { header } = await etcd.client.delete().key(scratch).exec();
      await etcd.client.kv.compact({ revision: header.revision, physical: true });
    }
    await sleep(500);
    proxy.heal();
  }

  /** Deletes `holderKey` behind the lock's back: the stream must fail with a `deleted` loss, so its key is watched. */
  async function assertLostWhenDeleted(lock: Recorded, holderKey: string): Promise<void> {
    await etcd.client.delete().key(holderKey).exec();
    const err = await lock.failed();
    assert.ok(err instanceof LockLostError, String(err));
    assert.equal(err.reason, 'deleted');
  }

  function skipUnlessOurs(t: TestContext, fault: Fault): boolean {
    if (fault === 'compacted' && !etcd.node) {
      t.skip('compacts the whole keyspace: only on an etcd this file started');
      return true;
    }
    return false;
  }

  for (const fault of ['dropped', 'compacted'] as const) {
    describe(`the watch is ${fault === 'dropped' ? 'resumed after the connection drops' : 'cancelled by etcd (compacted)'}`, () => {
      it("a locker's waiter takes the released lock, and its loss is still detected", async (t) => {
        if (skipUnlessOurs(t, fault)) return;
        const defer = cleanups(t);
        const name = uniquePrefix('watch-cancelled');
        const holder = lockerOn(defer, etcd.client, name);
        const { proxy, client } = await proxiedClient(defer);
        const waiter = lockerOn(defer, client, name);
        const held = await holder.lock('a');
        const states: LockerLockState[] = [];
        const losses: LockerLost[] = [];
        const subscriptions = [
          waiter.lockState$('a').subscribe((s) => states.push(s)),
          waiter.lost$.subscribe((lost) => losses.push(lost)),
        ];
        defer(() => subscriptions.forEach((s) => s.unsubscribe()));
        const taken = waiter.lock('a', { wait: true });
        await until(() => states.some((s) => s.kind === 'acquiring' && s.ahead === 1), 'the waiter queued');

        await cutOff(proxy, fault, () => holder.release('a'));
        await until(() => waiter.isHeld('a'), 'the waiter to hold'); // bounded, where awaiting `taken` is not
        const got = await taken;
        assert.ok(BigInt(got.fencingToken) > BigInt(held.fencingToken));
        assert.deepEqual(await listKeys(etcd.endpoints, `${name}/a/`), [got.holderKey], 'the waiter holds, alone');

        await etcd.client.delete().key(got.holderKey).exec();
        await until(() => losses.length === 1, 'the loss of the deleted key to be reported');
        assert.deepEqual([losses[0]?.lockId, losses[0]?.reason], ['a', 'deleted']);
      });

      it('a lock$ waiter takes the released lock, and its loss is still detected', async (t) => {
        if (skipUnlessOurs(t, fault)) return;
        const defer = cleanups(t);
        const key = `${uniquePrefix('watch-cancelled')}/lock`;
        const holder = record((onRelease) => lock$(etcd.client, key, { id: 'holder', ttl: 10, onRelease }));
        defer(() => holder.release());
        const first = await holder.next('held');
        const { proxy, client } = await proxiedClient(defer);
        const waiter = record((onRelease) => lock$(client, key, { id: 'waiter', ttl: 10, onRelease }));
        defer(() => waiter.release());
        await until(() => waiter.states.some((s) => s.kind === 'acquiring' && s.waitingFor), 'the waiter queued');

        await cutOff(proxy, fault, () => holder.release());
        const got = await waiter.next('held');
        assert.ok(
          got.kind === 'held' && BigInt(got.fencingToken) > BigInt(first.kind === 'held' ? first.fencingToken : 0),
        );

        await assertLostWhenDeleted(waiter, got.holderKey);
      });

      it("a lock$ holder's own-key watch comes back, and its loss is still detected", async (t) => {
        if (skipUnlessOurs(t, fault)) return;
        const defer = cleanups(t);
        const key = `${uniquePrefix('watch-cancelled')}/lock`;
        const { proxy, client } = await proxiedClient(defer);
        const holder = record((onRelease) =>
          lock$(client, key, { id: 'holder', ttl: 10, refreshInterval: 1000, onRelease }),
        );
        defer(() => holder.release());
        const held = await holder.next('held');

        await cutOff(proxy, fault, async () => {});
        // Its next keepalive gets through the healed link: the client is back, and so (by then) is its watch.
        const refreshedBefore = holder.states.filter((s) => s.kind === 'refreshed').length;
        await until(() => holder.states.filter((s) => s.kind === 'refreshed').length > refreshedBefore, 'a keepalive');
        assert.equal(holder.error, undefined);

        assert.ok(held.kind === 'held');
        await assertLostWhenDeleted(holder, held.holderKey);
      });

      it('leader$ follows a change of leader it missed, and the changes after it', async (t) => {
        if (skipUnlessOurs(t, fault)) return;
        const defer = cleanups(t);
        const name = uniquePrefix('watch-cancelled');
        const { proxy, client } = await proxiedClient(defer);
        const seen: (Leader | null)[] = [];
        const observer = leader$(client, name).subscribe((leader) => seen.push(leader));
        defer(() => observer.unsubscribe());
        const last = () => seen.at(-1);
        const first = campaign$(etcd.client, name, { id: 'first', ttl: 10 }).subscribe();
        defer(() => first.unsubscribe());
        await until(() => last()?.id === 'first', 'the first leader seen');

        const second = campaign$(etcd.client, name, { id: 'second', ttl: 10 }).subscribe();
        defer(() => second.unsubscribe());
        await cutOff(proxy, fault, async () => {
          first.unsubscribe();
          await until(async () => (await listKeys(etcd.endpoints, `${name}/`)).length === 1, 'the first resigned');
        });
        await until(() => last()?.id === 'second', 'the second leader seen');

        second.unsubscribe();
        await until(() => seen.length > 0 && last() === null, 'no leader seen once the second resigned');
      });
    });
  }

  /**
   * The etcd3 watchers `client` creates from now on, as they are made: to look at their resume point
   * (`lastRevision()`, where etcd3 would ask etcd to start again after the connection drops).
   */
  function spyOnWatchers(client: Etcd3): Watcher[] {
    const made: Watcher[] = [];
    const watch = client.watch.bind(client);
    client.watch = () => {
      const builder = watch();
      const watcher = builder.watcher.bind(builder);
      builder.watcher = () => {
        const created = watcher();
        made.push(created);
        return created;
      };
      return builder;
    };
    return made;
  }

  /**
   * Follows `watcher` through the replay of `changes` (the revisions it missed, oldest first): `ahead` lists each
   * moment its resume point stood past a change not yet delivered to it.
   */
  function followReplay(watcher: Watcher, changes: bigint[]) {
    let delivered = 0n;
    let reconnected = false;
    const ahead: string[] = [];
    const check = (when: string) => {
      const undelivered = changes.find((revision) => revision > delivered);
      const resumeAt = BigInt(watcher.lastRevision() ?? '0');
      if (undelivered !== undefined && resumeAt > undelivered) {
        ahead.push(`${when}: resume at ${resumeAt}, ${undelivered} not delivered`);
      }
    };
    // Registered after etcd3's and the library's own listeners: each check sees what they left.
    watcher.on('connected', () => {
      reconnected = true;
      check('connected');
    });
    const received = (kv: IKeyValue) => {
      if (BigInt(kv.mod_revision) > delivered) delivered = BigInt(kv.mod_revision);
    };
    watcher.on('put', received);
    watcher.on('delete', received);
    watcher.on('data', () => check('data'));
    return { ahead, replayed: () => reconnected && delivered >= changes.at(-1)! };
  }

  it("a locker's resumed shared watch keeps its resume point behind what is replayed to it (etcd3 skips ahead)", async (t) => {
    const defer = cleanups(t);
    const name = uniquePrefix('watch-cancelled');
    const { proxy, client } = await proxiedClient(defer);
    const watchers = spyOnWatchers(client);
    const locker = lockerOn(defer, client, name);
    await locker.lock('mine');
    const [shared] = watchers;
    assert.ok(shared, "the locker's shared watch");

    proxy.cut();
    // Changes under the locker's prefix while it is cut off, which the resumed watch must replay.
    const changes: bigint[] = [];
    for (let i = 0; i < 5; i++)
      changes.push(BigInt((await etcd.client.put(`${name}/other/${i}`).value('x').exec()).header.revision));
    await sleep(500);
    const replay = followReplay(shared, changes);
    proxy.heal();

    await until(replay.replayed, 'the missed changes replayed');
    assert.deepEqual(replay.ahead, [], 'the resume point never ran ahead');
    assert.equal(locker.isHeld('mine'), true);
  });

  it("a lock$ holder's resumed own-key watch keeps its resume point behind what is replayed to it", async (t) => {
    const defer = cleanups(t);
    const key = `${uniquePrefix('watch-cancelled')}/lock`;
    const { proxy, client } = await proxiedClient(defer);
    const watchers = spyOnWatchers(client);
    const holder = record((onRelease) => lock$(client, key, { id: 'holder', ttl: 10, onRelease }));
    defer(() => holder.release());
    const held = await holder.next('held');
    assert.ok(held.kind === 'held');
    defer(() => etcd.client.delete().key(held.holderKey).exec());
    const own = watchers.at(-1);
    assert.ok(own, 'the own-key watch');

    proxy.cut();
    // Someone overwrites our key while we are cut off: the resumed watch must still be told.
    const overwrite = BigInt((await etcd.client.put(held.holderKey).value('intruder').exec()).header.revision);
    await sleep(500);
    const replay = followReplay(own, [overwrite]);
    proxy.heal();

    const err = await holder.failed();
    assert.ok(err instanceof LockLostError, String(err));
    assert.equal(err.reason, 'changed');
    assert.ok(replay.replayed(), 'told through the replay');
    assert.deepEqual(replay.ahead, [], 'the resume point never ran ahead');
  });

  function lockerOn(defer: (cleanup: () => unknown) => void, client: Etcd3, name: string): Locker {
    const locker = createLocker(client, { name, ttl: 10 });
    defer(() => locker.close());
    return locker;
  }
});
