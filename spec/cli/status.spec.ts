import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lock$ } from '../../lib/lock-stream.js';
import type { HeldState } from '../../lib/state.js';
import { runLocker } from '../support/cli.js';
import { etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { etcdctlLock } from '../support/etcdctl-lock.js';
import { until } from '../support/poll.js';
import { record, type Recorded } from '../support/recorder.js';

interface StatusJson {
  key: string;
  holder: { id: string; fencingToken: string; leaseId: string; ttl: number | null; key: string } | null;
  waiting: Array<{ id: string; fencingToken: string; leaseId: string; ttl: number | null; key: string }>;
}

describe('etcdlocker --status (the built binary)', () => {
  const etcd = etcdForSuite();
  const status = (key: string, ...more: string[]) =>
    runLocker(['--status', '-e', etcd.endpoints.join(','), '-k', key, ...more]);

  /** A holder and waiters behind it (lock$ in this process), each queued before the next one subscribes. */
  async function queue(key: string, ids: string[]): Promise<{ contenders: Recorded[]; held: HeldState }> {
    const contenders: Recorded[] = [];
    for (const [position, id] of ids.entries()) {
      const contender = record((onRelease) => lock$(etcd.client, key, { id, ttl: 30, onRelease }));
      if (position === 0) await contender.next('held');
      else await until(() => contender.states.some((s) => s.kind === 'acquiring' && s.ahead === position), id);
      contenders.push(contender);
    }
    return { contenders, held: (await contenders[0]!.next('held')) as HeldState };
  }

  it('on a free lock: "<key>: free", exit 0, and no key or lease created', async () => {
    const key = `${uniquePrefix('status')}/free`;
    const leasesBefore = etcd.node ? await listLeases(etcd.endpoints) : undefined;
    const r = await status(key);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${key}: free\n`);
    assert.equal(r.stderr, '');
    assert.deepEqual(await listKeys(etcd.endpoints, key), [], 'no key created');
    if (leasesBefore) assert.deepEqual(await listLeases(etcd.endpoints), leasesBefore, 'no lease created');

    const json = JSON.parse((await status(key, '--json')).stdout) as StatusJson;
    assert.deepEqual(json, { key, holder: null, waiting: [] });
  });

  it('on a held lock with a queue: the holder, then the waiters in order, as a table', async () => {
    const key = `${uniquePrefix('status')}/held`;
    const { contenders, held } = await queue(key, ['worker-a', 'worker-b', 'worker-c']);
    const leasesBefore = etcd.node ? await listLeases(etcd.endpoints) : undefined;
    try {
      const r = await status(key);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trimEnd().split('\n');
      assert.equal(lines[0], `${key}: held by worker-a (fencing token ${held.fencingToken}), 2 waiting`);
      assert.match(lines[1] ?? '', /^POSITION +ID +FENCING TOKEN +LEASE +TTL LEFT$/);
      const rows = lines.slice(2).map((line) => line.split(/ {2,}/));
      const { kvs } = await etcd.client.getAll().prefix(`${key}/`).sort('Create', 'Ascend').exec();
      assert.deepEqual(
        rows.map((row) => row.slice(0, 4)),
        [
          ['holder', 'worker-a', held.fencingToken, held.leaseId],
          ['1', 'worker-b', kvs[1]!.create_revision, BigInt(kvs[1]!.lease).toString(16)],
          ['2', 'worker-c', kvs[2]!.create_revision, BigInt(kvs[2]!.lease).toString(16)],
        ],
      );
      for (const row of rows) {
        const seconds = Number(/^(\d+) s$/.exec(row[4] ?? '')?.[1]);
        assert.ok(seconds > 0 && seconds <= 30, `TTL left ${row[4]}`);
      }
      assert.equal(contenders[0]!.states.filter((s) => s.kind === 'held').length, 1, 'the holder still holds');
      if (leasesBefore) assert.deepEqual(await listLeases(etcd.endpoints), leasesBefore, '--status took no lease');
    } finally {
      await Promise.all(contenders.map((contender) => contender.release()));
    }
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
  });

  it('--json: { key, holder, waiting } with each one’s id, token, lease, TTL left and key', async () => {
    const key = `${uniquePrefix('status')}/json`;
    const { contenders, held } = await queue(key, ['worker-a', 'worker-b']);
    try {
      const r = await status(key, '--json');
      assert.equal(r.code, 0, r.stderr);
      const json = JSON.parse(r.stdout) as StatusJson;
      assert.equal(json.key, key);
      assert.deepEqual(
        { ...json.holder, ttl: undefined },
        { id: 'worker-a', fencingToken: held.fencingToken, leaseId: held.leaseId, ttl: undefined, key: held.holderKey },
      );
      assert.ok(json.holder!.ttl! > 0 && json.holder!.ttl! <= 30);
      assert.deepEqual(
        json.waiting.map((waiter) => waiter.id),
        ['worker-b'],
      );
      assert.ok(BigInt(json.waiting[0]!.fencingToken) > BigInt(held.fencingToken));
      assert.equal(json.waiting[0]!.key, `${key}/${json.waiting[0]!.leaseId}`);
    } finally {
      await Promise.all(contenders.map((contender) => contender.release()));
    }
  });

  it('shows a holder from `etcdctl lock` (which stores no id) quoted as ""', async () => {
    const key = `${uniquePrefix('status')}/etcdctl`;
    const ctl = etcdctlLock(etcd.endpoints, key);
    try {
      await until(() => ctl.stdout().startsWith(`${key}/`), 'etcdctl to hold the lock');
      const r = await status(key);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^${key}: held by "" \\(fencing token \\d+\\), 0 waiting\n`));
      assert.match(
        r.stdout,
        new RegExp(
          `\nholder +"" +\\d+ +${ctl
            .stdout()
            .trim()
            .slice(key.length + 1)} +\\d+ s\n$`,
        ),
      );
    } finally {
      ctl.child.kill('SIGINT');
      await ctl.exited;
    }
  });

  it('reads ETCD_LOCK_KEY and ETCD_LOCK_HOST, and ignores the other variables', async () => {
    const key = `${uniquePrefix('status')}/env`;
    const r = await runLocker(['--status'], {
      ETCD_LOCK_KEY: key,
      ETCD_LOCK_HOST: etcd.endpoints.join(','),
      ETCD_LOCK_TTL: 'not a number',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${key}: free\n`);
  });

  it('exits 1 with the reason when etcd cannot be read, and 64 for bad usage', async () => {
    const unreachable = await runLocker(['--status', '-e', '127.0.0.1:1', '-k', '/anything']);
    assert.equal(unreachable.code, 1, unreachable.stderr);
    assert.match(unreachable.stderr, /^etcdlocker: cannot read the lock "\/anything" from http:\/\/127\.0\.0\.1:1: /m);
    assert.equal(unreachable.stdout, '');

    const usage: Array<[string[], RegExp]> = [
      [['--status', '-k', '/a', '--', 'true'], /--status takes no command, got "true"/],
      [['--status', '-k', '/a', '-t', '5'], /--status takes no -t\/--ttl/],
      [['--status', '-k', '/a', '-w', '0'], /--status takes no -w\/--wait/],
      [['--status'], /missing the lock key/],
      [['--json', '-k', '/a', 'true'], /--json goes with --status/],
    ];
    for (const [args, message] of usage) {
      const r = await runLocker(['-e', '127.0.0.1:1', ...args], { ETCD_LOCK_KEY: '' });
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /\nusage: etcdlocker /);
    }
  });

  it('--help documents --status and --json', async () => {
    const r = await runLocker(['--help']);
    assert.match(r.stdout, /^ +etcdlocker --status -k key/m);
    assert.match(r.stdout, /--status +show who holds the lock/);
    assert.match(r.stdout, /--json +with --status/);
  });
});
