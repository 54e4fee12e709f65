import assert from 'node:assert/strict';
import { renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { Etcd3 } from 'etcd3';
import { lockFaultHandling } from '../../lib/fault-handling.js';
import { createLocker, type Locker } from '../../lib/locker.js';
import type { LockerLost } from '../../lib/locker-state.js';
import { tempDir } from '../support/cli.js';
import { cleanups } from '../support/cleanups.js';
import { etcdctl, type EtcdNode, listKeys, startEtcd, uniquePrefix } from '../support/etcd.js';
import { until } from '../support/poll.js';
import { sleep } from '../support/recorder.js';

/**
 * etcd restored from an older snapshot while lockers hold locks (lib/store-rollback.ts). etcd 3.4 comes back at the
 * snapshot's revision, without the keys created since and with the ones deleted since, and sends no event for
 * either, while the lockers' leases (granted before it) live on. Before, a locker went on holding a lock whose key
 * was gone, or that the snapshot gave back to its former holder, and another client took it too.
 */
describe('etcd restored from an older snapshot under a locker', () => {
  /** An etcd of the test's own, and a way to snapshot it now and to bring it back from that snapshot later. */
  async function restorableEtcd(t: TestContext, defer: (cleanup: () => unknown) => void) {
    const node = await startEtcd();
    defer(() => node.stop());
    const files = tempDir('restore');
    defer(() => files.remove());
    const snapshot = path.join(files.dir, 'snap.db');
    return {
      node,
      async snapshot(): Promise<void> {
        const saved = await etcdctl([node.endpoint], ['snapshot', 'save', snapshot]);
        assert.equal(saved.code, 0, saved.stderr);
      },
      /** Kills etcd, puts the snapshot in its data dir (as `etcdctl snapshot restore` makes it) and starts it. */
      async restore(): Promise<void> {
        await node.kill();
        const restored = path.join(files.dir, 'restored');
        const { code, stderr } = await etcdctl([node.endpoint], restoreArgs(node, snapshot, restored));
        assert.equal(code, 0, stderr);
        rmSync(path.join(node.dataDir, 'member'), { recursive: true, force: true });
        renameSync(path.join(restored, 'member'), path.join(node.dataDir, 'member'));
        await node.restart();
      },
    };
  }

  function restoreArgs(node: EtcdNode, snapshot: string, dataDir: string): string[] {
    return [
      'snapshot',
      'restore',
      snapshot,
      `--name=${node.name}`,
      `--data-dir=${dataDir}`,
      `--initial-cluster=${node.name}=${node.peerUrl}`,
      `--initial-advertise-peer-urls=${node.peerUrl}`,
    ];
  }

  /** A locker on a client of its own, recording what it loses. */
  function lockerOn(endpoint: string, name: string, defer: (cleanup: () => unknown) => void) {
    const client = new Etcd3({ hosts: endpoint, faultHandling: lockFaultHandling(endpoint) });
    defer(() => client.close());
    // A long TTL, so that the restart of etcd costs no lock by itself; keepalives every second, to notice soon.
    const locker: Locker = createLocker(client, { name, ttl: 20, refreshInterval: 1000 });
    defer(() => locker.close().catch(() => undefined));
    const lost: LockerLost[] = [];
    const watching = locker.lost$.subscribe((event) => lost.push(event));
    defer(() => watching.unsubscribe());
    return { locker, lost };
  }

  /** The lock ids with a key under the locker `name`. */
  async function lockIds(endpoint: string, name: string): Promise<string[]> {
    const keys = await listKeys([endpoint], `${name}/`);
    return keys.map((key) => key.slice(name.length + 1, key.lastIndexOf('/')));
  }

  it('a lock taken after the snapshot is lost (deleted), one taken before is kept, and the lock can be taken again', async (t) => {
    const defer = cleanups(t);
    const etcd = await restorableEtcd(t, defer);
    const name = uniquePrefix('restore');
    const { locker, lost } = lockerOn(etcd.node.endpoint, name, defer);

    await locker.lock('before');
    await etcd.snapshot();
    const after = await locker.lock('after');
    await etcd.restore();
    assert.deepEqual(await lockIds(etcd.node.endpoint, name), ['before'], 'the restored etcd has the older lock only');

    await until(() => lost.some((event) => event.lockId === 'after'), "the locker to report 'after' lost", 30_000);
    const lostAfter = lost.find((event) => event.lockId === 'after')!;
    assert.equal(lostAfter.reason, 'deleted');
    assert.equal(lostAfter.fencingToken, after.fencingToken);
    await sleep(1500);
    assert.deepEqual(
      lost.map((event) => event.lockId),
      ['after'],
      'the lock taken before the snapshot is kept: its key is in the restored etcd',
    );
    assert.equal(locker.isHeld('before'), true);

    await locker.lock('after');
    assert.equal(locker.isHeld('after'), true);
  });

  it('a lock that changed hands after the snapshot is lost by its new holder, and is its former holder’s again', async (t) => {
    const defer = cleanups(t);
    const etcd = await restorableEtcd(t, defer);
    const name = uniquePrefix('restore-handoff');
    const first = lockerOn(etcd.node.endpoint, name, defer);
    const second = lockerOn(etcd.node.endpoint, name, defer);

    await first.locker.lock('x');
    const waited = second.locker.lock('x', { wait: true });
    await until(async () => (await lockIds(etcd.node.endpoint, name)).length === 2, 'the second locker to queue');
    await etcd.snapshot();
    await first.locker.release('x');
    const handedOver = await waited;
    // Past a keepalive of the new holder, so that it has heard from etcd after the handoff.
    await sleep(1500);
    await etcd.restore();

    await until(() => second.lost.length > 0, "the second locker to report 'x' lost", 30_000);
    assert.equal(second.lost[0]!.reason, 'changed');
    assert.equal(second.lost[0]!.fencingToken, handedOver.fencingToken);
    assert.match(second.lost[0]!.error.message, /is ahead of .* again/);
    assert.equal(second.locker.isHeld('x'), false);
    // In the restored etcd the first locker's key is still at the head of the queue, on its live lease: asking again
    // finds it there, and the lock is the first locker's, and only its.
    await first.locker.lock('x');
    assert.equal(first.locker.isHeld('x'), true);
    assert.equal(second.locker.isHeld('x'), false);
  });
});
