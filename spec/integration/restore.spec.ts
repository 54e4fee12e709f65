import assert from 'node:assert/strict';
import { renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { lockFaultHandling } from '../../lib/fault-handling.js';
import { createLocker } from '../../lib/locker.js';
import type { LockerLost } from '../../lib/locker-state.js';
import { tempDir } from '../support/cli.js';
import { cleanups } from '../support/cleanups.js';
import { etcdctl, listKeys, startEtcd, uniquePrefix } from '../support/etcd.js';
import { until } from '../support/poll.js';
import { sleep } from '../support/recorder.js';

/**
 * etcd restored from an older snapshot while a locker holds locks (lib/store-rollback.ts). etcd 3.4 comes back at
 * the snapshot's revision: a lock taken after the snapshot is gone, with no delete event, while the locker's lease
 * (granted before it) lives on. Before, the locker went on holding it, and another client took it too.
 */
describe('etcd restored from an older snapshot under a locker', () => {
  it('a lock taken after the snapshot is lost (deleted), one taken before is kept, and the lock can be taken again', async (t) => {
    const defer = cleanups(t);
    const node = await startEtcd();
    defer(() => node.stop());
    const files = tempDir('restore');
    defer(() => files.remove());
    const client = new Etcd3({ hosts: node.endpoint, faultHandling: lockFaultHandling(node.endpoint) });
    defer(() => client.close());
    const name = uniquePrefix('restore');
    // A long TTL, so that the restart of etcd costs no lock by itself; keepalives every second, to notice soon.
    const locker = createLocker(client, { name, ttl: 20, refreshInterval: 1000 });
    defer(() => locker.close().catch(() => undefined));
    const lost: LockerLost[] = [];
    const watching = locker.lost$.subscribe((event) => lost.push(event));
    defer(() => watching.unsubscribe());

    await locker.lock('before');
    const snapshot = path.join(files.dir, 'snap.db');
    const saved = await etcdctl([node.endpoint], ['snapshot', 'save', snapshot]);
    assert.equal(saved.code, 0, saved.stderr);
    const after = await locker.lock('after');

    await node.kill();
    const restored = path.join(files.dir, 'restored');
    const restore = await etcdctl(
      [node.endpoint],
      [
        'snapshot',
        'restore',
        snapshot,
        `--name=${node.name}`,
        `--data-dir=${restored}`,
        `--initial-cluster=${node.name}=${node.peerUrl}`,
        `--initial-advertise-peer-urls=${node.peerUrl}`,
      ],
    );
    assert.equal(restore.code, 0, restore.stderr);
    rmSync(path.join(node.dataDir, 'member'), { recursive: true, force: true });
    renameSync(path.join(restored, 'member'), path.join(node.dataDir, 'member'));
    await node.restart();
    const keys = await listKeys([node.endpoint], `${name}/`);
    assert.deepEqual(
      keys.map((key) => key.slice(name.length + 1, key.lastIndexOf('/'))),
      ['before'],
      'the restored etcd has the lock taken before the snapshot, not the one taken after',
    );

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

    const again = await locker.lock('after');
    assert.ok(BigInt(again.fencingToken) > 0n);
    assert.equal(locker.isHeld('after'), true);
  });
});
