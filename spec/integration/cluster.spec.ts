import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { lock$ } from '../../lib/lock-stream.js';
import { createLocker } from '../../lib/locker.js';
import type { HeldState } from '../../lib/state.js';
import { etcdEndpointsFromEnv, listKeys, startCluster, uniquePrefix, type EtcdCluster } from '../support/etcd.js';
import { runLocker } from '../support/cli.js';
import { until } from '../support/poll.js';
import { record, sleep } from '../support/recorder.js';

describe(
  'on a 3-member cluster',
  { skip: etcdEndpointsFromEnv() ? 'ETCD_ENDPOINTS is set: this test kills members' : false },
  () => {
    let cluster: EtcdCluster;
    before(async () => {
      cluster = await startCluster(3);
    });
    after(async () => {
      await cluster?.stop();
    });

    it('with one of three endpoints dead (listed first), the library and etcdlocker acquire and hold', async () => {
      const leader = await cluster.leader();
      const victim = cluster.members.find((member) => member !== leader)!;
      const alive = cluster.members.filter((member) => member !== victim).map((member) => member.endpoint);
      await victim.kill();
      const hosts = [victim.endpoint, ...alive];
      const client = new Etcd3({ hosts });
      const key = `${uniquePrefix('cluster')}/one-dead`;
      const ttl = 2;
      try {
        const a = record((onRelease) => lock$(client, key, { ttl, onRelease }));
        const held = (await a.next('held')) as HeldState;
        await sleep(2 * ttl * 1000);
        assert.equal(a.error, undefined, `still held: ${String(a.error)}`);
        assert.ok(a.states.filter((s) => s.kind === 'refreshed').length >= 2, 'kept refreshing');
        assert.deepEqual(await listKeys(alive, `${key}/`), [held.holderKey]);
        await a.release();
        assert.deepEqual(await listKeys(alive, `${key}/`), [], 'the library released');

        // etcdlocker, holding through several refreshes (TTL 2 s, one every second) for 3 s.
        const r = await runLocker(['-v', '-e', hosts.join(','), '-k', key, '-t', String(ttl), '--', 'sleep', '3']);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /refreshed the lease[^]*refreshed the lease/);
        assert.deepEqual(await listKeys(alive, `${key}/`), [], `etcdlocker released:\n${r.stderr}`);
      } finally {
        client.close();
        await victim.restart();
      }
    });

    it('a locker keeps its locks and its place in a queue when the etcd leader is killed, and takes its turn after', async () => {
      const client = new Etcd3({ hosts: cluster.endpoints });
      const other = new Etcd3({ hosts: cluster.endpoints });
      const name = uniquePrefix('cluster-locker');
      const ttl = 3;
      const locker = createLocker(client, { name, ttl, holderId: 'me' });
      const holder = createLocker(other, { name, ttl, holderId: 'other' });
      const leader = await cluster.leader();
      try {
        const mine = await locker.lock('mine');
        await holder.lock('theirs');
        const waiting = locker.lock('theirs', { wait: true });
        await until(async () => (await listKeys(cluster.endpoints, `${name}/theirs/`)).length === 2, 'queued');
        const losses: unknown[] = [];
        const lostSubscription = locker.lost$.subscribe((lost) => losses.push(lost));

        await leader.kill();
        // Two full TTLs with the old leader dead: its keepalive stream and its shared watch move to a survivor.
        await sleep(2 * ttl * 1000);
        assert.deepEqual(losses, [], 'nothing lost');
        assert.equal(locker.isHeld('mine'), true);
        const survivors = cluster.members.filter((m) => m !== leader).map((m) => m.endpoint);
        assert.ok((await listKeys(survivors, `${name}/mine/`)).includes(mine.holderKey));

        // The waiter learns of the release through the watch that survived the failover.
        await holder.release('theirs');
        const theirs = await waiting;
        assert.equal(theirs.leaseId, mine.leaseId, 'on the same session');
        lostSubscription.unsubscribe();
      } finally {
        await locker.close();
        await holder.close();
        client.close();
        other.close();
        await leader.restart();
      }
    });

    it('the holder keeps the lock when the etcd leader is killed', async () => {
      const client = new Etcd3({ hosts: cluster.endpoints });
      const key = `${uniquePrefix('cluster')}/leader-killed`;
      const ttl = 3;
      try {
        const a = record((onRelease) => lock$(client, key, { ttl, onRelease }));
        const held = (await a.next('held')) as HeldState;
        const leader = await cluster.leader();
        await leader.kill();
        const killedAt = performance.now();
        // Hold through two full TTLs with the old leader dead.
        await sleep(2 * ttl * 1000);
        assert.equal(a.error, undefined, `still held: ${String(a.error)}`);
        const refreshedAfter = a.states.filter((s) => s.kind === 'refreshed' && s.at > killedAt);
        assert.ok(refreshedAfter.length >= 2, `kept refreshing after the kill (${refreshedAfter.length} acks)`);
        const survivors = cluster.members.filter((m) => m !== leader).map((m) => m.endpoint);
        assert.deepEqual(await listKeys(survivors, `${key}/`), [held.holderKey]);
        await a.release();
        assert.deepEqual(await listKeys(survivors, `${key}/`), []);
      } finally {
        client.close();
      }
    });
  },
);
