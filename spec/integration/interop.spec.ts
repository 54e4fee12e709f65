import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lock$ } from '../../lib/lock-stream.js';
import { isLockError } from '../../lib/errors.js';
import type { HeldState } from '../../lib/state.js';
import { etcdForSuite, listKeys, uniquePrefix } from '../support/etcd.js';
import { etcdctlLock } from '../support/etcdctl-lock.js';
import { until } from '../support/poll.js';
import { record, sleep } from '../support/recorder.js';

describe("interoperates with `etcdctl lock` (the same key layout as etcd's own lock)", () => {
  const etcd = etcdForSuite();

  it('excludes us while etcdctl holds the lock, and hands over when it lets go', async () => {
    const key = `${uniquePrefix('interop')}/a`;
    const ctl = etcdctlLock(etcd.endpoints, key);
    try {
      // With no command, etcdctl prints its holder key once it holds the lock, and holds until interrupted.
      await until(() => ctl.stdout().startsWith(`${key}/`), 'etcdctl to hold the lock');
      const tryOnce = record((onRelease) => lock$(etcd.client, key, { wait: false, ttl: 5, onRelease }));
      const err = await tryOnce.failed();
      assert.ok(isLockError(err) && err.code === 'ETCDLOCK_BUSY', String(err));
      const waiter = record((onRelease) => lock$(etcd.client, key, { id: 'node', ttl: 5, onRelease }));
      await until(() => waiter.states.some((s) => s.kind === 'acquiring' && s.ahead === 1), 'our waiter to queue');
      await sleep(300);
      assert.ok(!waiter.states.some((s) => s.kind === 'held'), 'not held while etcdctl holds it');
      ctl.child.kill('SIGINT');
      await ctl.exited;
      const held = (await waiter.next('held')) as HeldState;
      assert.match(held.fencingToken, /^\d+$/);
      await waiter.release();
    } finally {
      ctl.child.kill('SIGKILL');
    }
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
  });

  it('makes etcdctl wait while we hold the lock, and etcdctl sees a later revision than our token', async () => {
    const key = `${uniquePrefix('interop')}/b`;
    const ours = record((onRelease) => lock$(etcd.client, key, { ttl: 5, onRelease }));
    const held = (await ours.next('held')) as HeldState;
    const ctl = etcdctlLock(etcd.endpoints, key, ['--', 'sh', '-c', 'echo "rev=$ETCD_LOCK_REV key=$ETCD_LOCK_KEY"']);
    try {
      await sleep(700);
      assert.equal(ctl.stdout(), '', 'etcdctl has not run its command while we hold the lock');
      await ours.release();
      assert.equal(await ctl.exited, 0);
      const match = /rev=(\d+) key=(\S+)/.exec(ctl.stdout());
      assert.ok(match, `etcdctl output: ${ctl.stdout()}`);
      assert.ok(BigInt(match[1]!) > BigInt(held.fencingToken), 'its revision (fencing token) is above ours');
      assert.ok(match[2]!.startsWith(`${key}/`), 'its key sits under the same prefix');
    } finally {
      ctl.child.kill('SIGKILL');
    }
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
  });
});
