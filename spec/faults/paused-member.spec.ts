/**
 * A paused member must not hide a release from a waiter for as long as it stays paused (issue 4, liveness).
 *
 * On a 3-member cluster, a waiter queues behind a holder with its watches on one follower (a client that reaches
 * that member alone for watches, and the two others for everything else) and the follower is paused (SIGSTOP):
 * its watch stream neither fails nor tells anything. The holder releases through the other members. The waiter
 * must take the lock while the follower is still paused, by reading the queue again on its own (every half TTL);
 * before that re-read existed it waited until the member woke. The time from release to grant is printed as a
 * `[faults]` line, never asserted.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { filter, firstValueFrom, share } from 'rxjs';
import { createClient } from '../../cli/client.js';
import { lock$ } from '../../lib/lock-stream.js';
import { etcdEndpointsFromEnv, listKeys, startCluster, uniquePrefix, type EtcdCluster } from '../support/etcd.js';

const TTL = 2;
/** Far beyond the re-read (half the TTL, 1 s) and a request's time limit (10 s): the member stays paused that long. */
const GRANT_WITHIN_MS = 20_000;

describe(
  'a paused member',
  { skip: etcdEndpointsFromEnv() ? 'ETCD_ENDPOINTS is set: this test pauses an etcd member' : false },
  () => {
    let cluster: EtcdCluster;
    before(async () => {
      cluster = await startCluster(3);
    });
    after(async () => {
      for (const member of cluster.members) member.resume();
      await cluster.stop();
    });

    it('does not keep a waiter whose watch is on it from taking a released lock', async () => {
      const leader = await cluster.leader();
      const follower = cluster.members.find((member) => member !== leader)!;
      const others = cluster.members.filter((member) => member !== follower).map((member) => member.endpoint);
      const key = `${uniquePrefix('paused-member')}/job`;

      const kvClient = createClient(others);
      const watchClient = new Etcd3({ hosts: [follower.endpoint] });
      // Watches go to the follower alone; transactions, leases and keepalives to the two others.
      const waiterClient = new Proxy(kvClient, {
        get: (target, name): unknown => (name === 'watch' ? () => watchClient.watch() : Reflect.get(target, name)),
      });
      const releases: Promise<void>[] = [];
      const onRelease = (done: Promise<void>) => void releases.push(done);

      const holder$ = lock$(kvClient, key, { id: 'holder', ttl: TTL, onRelease }).pipe(share());
      const holder = holder$.subscribe({ error: () => undefined });
      await firstValueFrom(holder$.pipe(filter((state) => state.kind === 'held')));

      const waiter$ = lock$(waiterClient, key, { id: 'waiter', ttl: TTL, onRelease }).pipe(share());
      let failure: unknown;
      const waiter = waiter$.subscribe({ error: (err: unknown) => (failure = err) });
      await firstValueFrom(waiter$.pipe(filter((state) => state.kind === 'acquiring' && state.ahead === 1)));
      // Let the waiter's watch on the key ahead reach the follower before it stops.
      await new Promise((resolve) => setTimeout(resolve, 300));

      follower.pause();
      try {
        const granted = firstValueFrom(waiter$.pipe(filter((state) => state.kind === 'held')));
        const releasedAt = performance.now();
        holder.unsubscribe();
        const outcome = await Promise.race([
          granted.then(() => 'held'),
          new Promise((resolve) => setTimeout(resolve, GRANT_WITHIN_MS, 'still waiting')),
        ]);
        const grantMs = Math.round(performance.now() - releasedAt);
        console.log(`[faults] ${JSON.stringify({ fault: 'paused member under the waiter', ttl: TTL, grantMs })}`);
        assert.equal(failure, undefined, 'the waiter did not fail');
        assert.equal(outcome, 'held', 'the waiter took the lock while the member was paused');
      } finally {
        follower.resume();
      }
      waiter.unsubscribe();
      await Promise.all(releases);
      assert.deepEqual(await listKeys(others, `${key}/`), [], 'no key is left under the lock');
      kvClient.close();
      watchClient.close();
    });
  },
);
