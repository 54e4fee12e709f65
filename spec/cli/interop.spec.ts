import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startLocker, tempDir } from '../support/cli.js';
import { etcdctlLock } from '../support/etcdctl-lock.js';
import { etcdForSuite, listKeys, uniquePrefix } from '../support/etcd.js';

describe('etcdlocker and `etcdctl lock` exclude each other', () => {
  const etcd = etcdForSuite();
  const tmp = tempDir('interop');
  after(() => tmp.remove());

  it('etcdlocker waits behind etcdctl lock, then runs with a higher revision', async () => {
    const key = `${uniquePrefix('cli-interop')}/a`;
    const ctl = etcdctlLock(etcd.endpoints, key);
    try {
      while (!ctl.stdout().startsWith(`${key}/`)) await sleep(10);
      const locker = startLocker([
        '-v',
        '-e',
        etcd.endpoints.join(','),
        '-k',
        key,
        '--',
        'sh',
        '-c',
        'echo "$ETCD_LOCK_REV"',
      ]);
      await locker.waitForStderr(/waiting behind/);
      await sleep(300);
      assert.equal(locker.stdout(), '', 'the command has not run while etcdctl holds the lock');
      ctl.child.kill('SIGINT');
      await ctl.exited;
      const r = await locker.result();
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^\d+\n$/);
    } finally {
      ctl.child.kill('SIGKILL');
    }
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
  });

  it('etcdctl lock waits while etcdlocker runs its command, and gets a higher ETCD_LOCK_REV', async () => {
    const key = `${uniquePrefix('cli-interop')}/b`;
    const go = tmp.file('b.go');
    const locker = startLocker([
      '-v',
      '-e',
      etcd.endpoints.join(','),
      '-k',
      key,
      '--',
      'sh',
      '-c',
      `echo "$ETCD_LOCK_REV"; while [ ! -e ${go} ]; do sleep 0.02; done`,
    ]);
    await locker.waitForStderr(/running sh/);
    const ctl = etcdctlLock(etcd.endpoints, key, ['--', 'sh', '-c', 'echo "$ETCD_LOCK_REV"']);
    try {
      await sleep(700);
      assert.equal(ctl.stdout(), '', 'etcdctl has not run its command while etcdlocker holds the lock');
      writeFileSync(go, 'go');
      const r = await locker.result();
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await ctl.exited, 0);
      assert.ok(BigInt(ctl.stdout().trim()) > BigInt(r.stdout.trim()), `${ctl.stdout()} > ${r.stdout}`);
    } finally {
      ctl.child.kill('SIGKILL');
    }
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
  });
});
