import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LogEventName, LogRecord } from '../../cli/log.js';
import {
  type FakeEtcd,
  isAlive,
  type LockerProcess,
  logRecords,
  runLocker,
  startFakeEtcd,
  startLocker,
  writeScript,
} from '../support/cli.js';
import { etcdForSuite, uniquePrefix } from '../support/etcd.js';
import { assertNothingLeft, lockerScope } from '../support/locker-scope.js';

/**
 * Issue 4, "every process logs JSON lines": `etcdlocker --log-json` writes one JSON object per event on stderr,
 * each with `event`, `at` (performance.timeOrigin + performance.now()), its `pid` and the `key`, and nothing else.
 */

type RecordOf<E extends LogEventName> = Extract<LogRecord, { event: E }>;

/** The one record of `event` in `records`, asserting there is exactly one. */
function only<E extends LogEventName>(records: readonly LogRecord[], event: E): RecordOf<E> {
  const found = records.filter((r): r is RecordOf<E> => r.event === event);
  assert.equal(found.length, 1, `one ${event} in ${JSON.stringify(records)}`);
  return found[0]!;
}

/** Waits for etcdlocker's first whole `event` line, and returns it parsed. */
async function next<E extends LogEventName>(locker: LockerProcess, event: E): Promise<RecordOf<E>> {
  await locker.waitForStderr(new RegExp(`"event":"${event}"[^\\n]*\\n`));
  return logRecords(locker.stderr()).find((r): r is RecordOf<E> => r.event === event)!;
}

/** Every line of `stderr` is a record of etcdlocker's (`pid`), `key`, on a clock that never goes back. */
function assertOnlyRecords(stderr: string, pid: number, key: string): LogRecord[] {
  const records = logRecords(stderr);
  assert.equal(records.length, stderr.split('\n').length - 1, `every line is a JSON record:\n${stderr}`);
  assert.ok(stderr.endsWith('\n'));
  records.forEach((record, i) => {
    assert.equal(record.pid, pid, `${record.event} has etcdlocker's pid`);
    assert.equal(record.key, key);
    assert.ok(Number.isFinite(record.at) && record.at > 1.6e12, `${record.event}: at is ms since the epoch`);
    if (i > 0) assert.ok(record.at >= records[i - 1]!.at, `${record.event} is not stamped before the line before it`);
  });
  return records;
}

/** The event names in order, a repeated `waiting` (the wait re-examined) counted once. */
const names = (records: readonly LogRecord[]) =>
  records.map((r) => r.event).filter((name, i, all) => !(name === 'waiting' && all[i - 1] === 'waiting'));

describe('etcdlocker --log-json (the built binary, real etcd)', () => {
  const etcd = etcdForSuite();
  const direct = () => ['-e', etcd.endpoints.join(',')];

  it('a run that acquires, runs `true` and releases: its events in order, the token etcd gave, exit 0', async () => {
    const key = `${uniquePrefix('log-json')}/run`;
    // What etcd says our key is: its create revision is the fencing token.
    const puts: Array<{ key: string; createRevision: string; lease: string }> = [];
    const watcher = await etcd.client.watch().prefix(`${key}/`).create();
    watcher.on('put', (kv) =>
      puts.push({ key: kv.key.toString(), createRevision: kv.create_revision, lease: kv.lease }),
    );
    const locker = startLocker([...direct(), '--log-json', '-k', key, '-i', 'json-1', '-t', '5', '--', 'true']);
    const result = await locker.result().finally(() => watcher.cancel());
    assert.equal(result.code, 0, result.stderr);

    const records = assertOnlyRecords(result.stderr, locker.pid, key);
    assert.deepEqual(names(records), [
      'connecting',
      'waiting',
      'acquired',
      'child-started',
      'child-exited',
      'releasing',
      'released',
      'exit',
    ]);
    assert.equal(only(records, 'connecting').id, 'json-1');
    const acquired = only(records, 'acquired');
    assert.equal(puts.length, 1, JSON.stringify(puts));
    assert.deepEqual(
      { holderKey: acquired.holderKey, fencingToken: acquired.fencingToken, leaseId: acquired.leaseId },
      { holderKey: puts[0]!.key, fencingToken: puts[0]!.createRevision, leaseId: BigInt(puts[0]!.lease).toString(16) },
    );
    const started = only(records, 'child-started');
    assert.ok(started.childPid > 0 && started.childPid !== started.pid);
    assert.deepEqual(started.command, ['true']);
    assert.deepEqual(
      { code: only(records, 'child-exited').code, signal: only(records, 'child-exited').signal },
      { code: 0, signal: null },
    );
    assert.equal(only(records, 'exit').code, 0);
    await assertNothingLeft(etcd.endpoints, key, [acquired.leaseId]);
  });

  it('the key deleted while the command runs: lost (deleted), the command signalled and exited, exit 2', async (t) => {
    const s = lockerScope(t, 'log-json-loss');
    const key = `${uniquePrefix('log-json')}/loss`;
    const job = writeScript(s.file('job.sh'), `echo $$ > "${s.pidFile('pid')}"\nexec sleep 1000`);
    const locker = s.locker([...direct(), '--log-json', '-k', key, '-t', '10', '--', job]);
    const acquired = await next(locker, 'acquired');
    const pid = await s.pid('pid');
    assert.ok(isAlive(pid), 'the command runs while the lock is held');
    await etcd.client.delete().key(acquired.holderKey).exec();
    const result = await locker.result();
    assert.equal(result.code, 2, result.stderr);
    assert.equal(isAlive(pid), false, 'the command is dead once etcdlocker has exited');

    const records = assertOnlyRecords(result.stderr, locker.pid, key);
    const lost = only(records, 'lost');
    assert.equal(lost.reason, 'deleted');
    assert.equal(lost.fencingToken, acquired.fencingToken);
    assert.match(lost.detail, /ETCDLOCK_LOST/);
    assert.match(only(records, 'error').message, /^lost the lock \(deleted\): .*; stopping the command$/);
    const signalled = only(records, 'child-signalled');
    assert.deepEqual([signalled.signal, signalled.why], ['SIGTERM', 'lost']);
    assert.ok(signalled.graceMs !== undefined && signalled.graceMs > 0);
    const exited = only(records, 'child-exited');
    assert.deepEqual([exited.code, exited.signal], [null, 'SIGTERM']);
    assert.equal(only(records, 'exit').code, 2);
    // In this order, the command dead before the release: lost, SIGTERM, exited, group gone, releasing, released.
    const fromLoss = names(records).slice(names(records).indexOf('lost'));
    assert.deepEqual(fromLoss, [
      'lost',
      'error',
      'child-signalled',
      'child-exited',
      'child-group-gone',
      'releasing',
      'released',
      'exit',
    ]);
    await assertNothingLeft(etcd.endpoints, key, [acquired.leaseId]);
  });
});

describe('etcdlocker --log-json without etcd', () => {
  let fake: FakeEtcd;
  before(async () => {
    fake = await startFakeEtcd();
  });
  after(() => fake.close());

  it('a bad flag value: the usage error stays text (the format is not known yet), exit 64, no connection', async () => {
    for (const [args, env] of [
      [['--log-json', '-t', '0', '-k', 'k', '--', 'true'], {}],
      [['-k', 'k', '--', 'true'], { ETCD_LOCK_LOG_JSON: 'maybe' }],
    ] as const) {
      const before = fake.connections();
      const r = await runLocker(['-e', fake.endpoint, ...args], env);
      assert.equal(r.code, 64, r.stderr);
      assert.match(r.stderr, /^etcdlocker: (-t\/--ttl|ETCD_LOCK_LOG_JSON) must be .*\nusage: etcdlocker /);
      assert.deepEqual(logRecords(r.stderr), []);
      assert.equal(fake.connections(), before, 'no connection was made');
    }
  });

  it('etcd unreachable: the error is a JSON line too, then releasing, released and exit 1', async () => {
    const key = '/log-json/unreachable';
    const locker = startLocker(['-e', fake.endpoint, '--log-json', '-w', '5', '-k', key, '--', 'true']);
    const r = await locker.result();
    assert.equal(r.code, 1, r.stderr);
    const records = assertOnlyRecords(r.stderr, locker.pid, key);
    assert.deepEqual(names(records), ['connecting', 'waiting', 'error', 'releasing', 'released', 'exit']);
    assert.match(only(records, 'error').message, /^could not acquire "\/log-json\/unreachable" \(etcd: /);
    assert.equal(only(records, 'exit').code, 1);
  });
});
