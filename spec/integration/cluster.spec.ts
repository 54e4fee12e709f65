import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { lock$ } from '../../lib/lock-stream.js';
import type { HeldState } from '../../lib/state.js';
import { etcdEndpointsFromEnv, listKeys, startCluster, uniquePrefix, type EtcdCluster } from '../support/etcd.js';
import { runLocker } from '../support/cli.js';
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
