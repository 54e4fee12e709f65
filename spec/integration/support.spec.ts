// The test support itself, against real etcd: if these fail, every other integration test is suspect.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import {
  etcdctl,
  etcdEndpointsFromEnv,
  listKeys,
  listLeases,
  startCluster,
  startEtcd,
  uniquePrefix,
  useEtcd,
} from '../support/etcd.js';
import { startProxy } from '../support/proxy.js';

const launchSkip = etcdEndpointsFromEnv() ? 'ETCD_ENDPOINTS is set: not launching local etcd processes' : false;
// Fail fast instead of etcdctl's 5 s command / 2 s dial defaults.
const quick = ['--dial-timeout=1s', '--command-timeout=1s'];

/** Whether a PID we started still exists (signal 0 only checks). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

async function timed<T>(run: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await run();
  return [result, performance.now() - started];
}

void describe('startEtcd', { skip: launchSkip }, () => {
  void test('serves etcdctl; stop() ends the process and removes the data dir, idempotently', async (t) => {
    const node = await startEtcd();
    t.after(() => node.stop());
    const prefix = uniquePrefix('support');
    assert.match(node.endpoint, /^127\.0\.0\.1:\d+$/);
    assert.equal(node.clientUrl, `http://${node.endpoint}`);

    assert.equal((await etcdctl([node.endpoint], ['put', `${prefix}/k`, 'v'])).code, 0);
    assert.equal((await etcdctl([node.endpoint], ['get', `${prefix}/k`, '--print-value-only'])).stdout, 'v\n');
    assert.deepEqual(await listKeys([node.endpoint], prefix), [`${prefix}/k`]);
    const lease = await etcdctl([node.endpoint], ['lease', 'grant', '60']);
    const leaseHex = /lease ([0-9a-f]+) granted/.exec(lease.stdout)?.[1] ?? '';
    assert.deepEqual(await listLeases([node.endpoint]), [BigInt(`0x${leaseHex}`).toString()]);

    const { pid, dataDir } = node;
    assert.ok(isAlive(pid));
    assert.ok(existsSync(dataDir));
    await node.stop();
    assert.equal(isAlive(pid), false);
    assert.equal(existsSync(dataDir), false);
    await node.stop();
  });

  void test('kill() then restart() keeps the data; pause() hangs requests until resume()', async (t) => {
    const node = await startEtcd();
    t.after(() => node.stop());
    const key = `${uniquePrefix('support')}/k`;
    await etcdctl([node.endpoint], ['put', key, 'kept']);

    const firstPid = node.pid;
    await node.kill();
    assert.equal(isAlive(firstPid), false);
    assert.notEqual((await etcdctl([node.endpoint], [...quick, 'get', key])).code, 0);
    await node.restart();
    assert.notEqual(node.pid, firstPid);
    assert.equal((await etcdctl([node.endpoint], ['get', key, '--print-value-only'])).stdout, 'kept\n');

    node.pause();
    const [paused, pausedMs] = await timed(() => etcdctl([node.endpoint], [...quick, 'get', key]));
    assert.notEqual(paused.code, 0);
    assert.ok(pausedMs < 5_000, `a paused etcd should time out in ~1 s, took ${pausedMs} ms`);
    node.resume();
    assert.equal((await etcdctl([node.endpoint], ['get', key, '--print-value-only'])).stdout, 'kept\n');
  });
});

void describe('startCluster', { skip: launchSkip }, () => {
  void test('elects a new leader when the leader is killed; stop() ends every member', async (t) => {
    const cluster = await startCluster(3);
    t.after(() => cluster.stop());
    const key = `${uniquePrefix('support')}/k`;
    assert.equal(cluster.endpoints.length, 3);
    assert.equal(new Set(cluster.endpoints).size, 3);
    assert.equal((await etcdctl(cluster.endpoints, ['put', key, 'v'])).code, 0);

    const oldLeader = await cluster.leader();
    await oldLeader.kill();
    const newLeader = await cluster.leader();
    assert.notEqual(newLeader, oldLeader);
    assert.ok(cluster.members.includes(newLeader));
    const survivors = cluster.members.filter((member) => member !== oldLeader).map((member) => member.endpoint);
    assert.equal((await etcdctl(survivors, ['get', key, '--print-value-only'])).stdout, 'v\n');

    const pids = cluster.members.map((member) => member.pid);
    const dataDirs = cluster.members.map((member) => member.dataDir);
    await cluster.stop();
    assert.deepEqual(pids.map(isAlive), [false, false, false]);
    assert.deepEqual(dataDirs.map(existsSync), [false, false, false]);
  });
});

void describe('startProxy', () => {
  void test('forwards etcdctl traffic; pause() hangs it, resume() restores it, cut() fails it fast', async (t) => {
    const etcd = await useEtcd();
    const [target = ''] = etcd.endpoints;
    const proxy = await startProxy(target);
    const prefix = uniquePrefix('support');
    const key = `${prefix}/k`;
    // One hook, because node 20 runs after() hooks first-in first-out: deleting after etcd.stop() would hang.
    t.after(async () => {
      await proxy.close();
      if (!etcd.node) await etcdctl(etcd.endpoints, ['del', '--prefix', prefix]);
      await etcd.stop();
    });
    const viaProxy = (args: string[]) => timed(() => etcdctl([proxy.endpoint], [...quick, ...args]));

    const [put] = await viaProxy(['put', key, 'through']);
    assert.equal(put.code, 0, put.stderr);

    proxy.pause();
    const [paused, pausedMs] = await viaProxy(['get', key]);
    assert.notEqual(paused.code, 0);
    assert.match(paused.stderr, /deadline exceeded/);
    assert.ok(pausedMs >= 900, `a paused proxy should hang until the timeout, failed after ${pausedMs} ms`);

    proxy.resume();
    const [resumed] = await viaProxy(['get', key, '--print-value-only']);
    assert.equal(resumed.stdout, 'through\n', resumed.stderr);

    proxy.cut();
    const [cut, cutMs] = await viaProxy(['get', key]);
    assert.notEqual(cut.code, 0);
    assert.match(cut.stderr, /TransientFailure|connection reset|connection error|unavailable/i, 'refused, not hung');
    assert.ok(cutMs < 5_000, `a cut proxy should fail fast, took ${cutMs} ms`);

    proxy.heal();
    const [healed] = await viaProxy(['del', key]);
    assert.equal(healed.stdout, '1\n', healed.stderr);
    assert.deepEqual(await listKeys(etcd.endpoints, prefix), []);
  });
});
