import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import type { LogEvent, LogRecord } from '../../cli/log.js';
import { type LockerProcess, tempDir } from '../support/cli.js';
import { type ChildLine, readChildLog, toHolderEvents, watchWorker } from '../support/worker-log.js';

/** etcdlocker's `--log-json` records of `events`, one a millisecond from `at`. */
const records = (at: number, ...events: LogEvent[]): LogRecord[] =>
  events.map((event, i) => ({ ...event, at: at + i, pid: 9, key: '/k' }));

const acquired = (fencingToken: string): LogEvent => ({
  event: 'acquired',
  holderKey: '/k/694d8a1b2c3d',
  fencingToken,
  leaseId: '694d8a1b2c3d',
});

describe('toHolderEvents', () => {
  it('turns a run that released into acquired, child-started, released, child-reaped, on their own stamps', () => {
    const log = records(
      10,
      { event: 'connecting', etcd: 'http://127.0.0.1:2379', id: 'a' },
      { event: 'waiting' },
      acquired('7'),
      { event: 'child-started', childPid: 4242, command: ['node', 'child.mjs'] },
      { event: 'refreshed', fencingToken: '7', ttl: 3 },
      { event: 'child-signalled', signal: 'SIGTERM', why: 'forwarded' },
      { event: 'child-exited', code: 143, signal: null },
      { event: 'releasing' },
      { event: 'released' },
      { event: 'exit', code: 143 },
    );
    const child: ChildLine[] = [
      { kind: 'started', at: 12.5, token: '7', pid: 4242 },
      { kind: 'write', at: 13, token: '7', verdict: 'accepted' },
      { kind: 'sigterm', at: 15.5, token: '7' },
    ];
    assert.deepEqual(toHolderEvents('a', log, child, [{ pid: 4242, at: 16.5 }]), [
      { kind: 'acquired', holder: 'a', token: '7', at: 12 },
      { kind: 'child-started', holder: 'a', token: '7', at: 12.5, detail: 'pid 4242' },
      { kind: 'child-reaped', holder: 'a', token: '7', at: 16.5, detail: 'pid 4242' },
      { kind: 'released', holder: 'a', token: '7', at: 17 },
    ]);
  });

  it('stamps a release when etcdlocker was about to send the revoke (releasing), not when etcd answered it', () => {
    const log = records(0, acquired('7'), { event: 'child-exited', code: 0, signal: null }, { event: 'releasing' });
    log.push({ event: 'released', at: 50, pid: 9, key: '/k' });
    assert.deepEqual(
      toHolderEvents('a', log, [], []).map((e) => [e.kind, e.at]),
      [
        ['acquired', 0],
        ['released', 2],
      ],
    );
  });

  it('has no release until `released`; one without `releasing` is stamped at its own time', () => {
    const releasing = records(
      0,
      acquired('7'),
      { event: 'child-exited', code: 0, signal: null },
      { event: 'releasing' },
    );
    assert.deepEqual(
      toHolderEvents('a', releasing, [], []).map((e) => e.kind),
      ['acquired'],
    );
    const bare = records(0, acquired('7'), { event: 'released' });
    assert.deepEqual(
      toHolderEvents('a', bare, [], []).map((e) => [e.kind, e.at]),
      [
        ['acquired', 0],
        ['released', 1],
      ],
    );
  });

  it('turns a loss into lost (the reason), child-killed (SIGTERM, then SIGKILL), and the release once the group is gone', () => {
    const log = records(
      0,
      acquired('9'),
      { event: 'lost', fencingToken: '9', reason: 'expired', detail: 'Lost the lock "/k" (expired) [ETCDLOCK_LOST]' },
      { event: 'error', message: 'lost the lock (expired): ...; stopping the command' },
      { event: 'child-signalled', signal: 'SIGTERM', why: 'lost', graceMs: 562 },
      { event: 'child-signalled', signal: 'SIGKILL', why: 'kill-timeout', graceMs: 562 },
      { event: 'error', message: 'the command outlived SIGTERM by 562 ms: SIGKILL' },
      { event: 'child-exited', code: null, signal: 'SIGKILL' },
      { event: 'child-group-gone' },
      { event: 'releasing' },
      { event: 'released' },
      { event: 'exit', code: 2 },
    );
    assert.deepEqual(
      toHolderEvents('a', log, [], []).map((e) => [e.kind, e.at, e.detail]),
      [
        ['acquired', 0, undefined],
        ['lost', 1, 'expired'],
        ['child-killed', 3, 'SIGTERM'],
        ['child-killed', 4, 'SIGKILL'],
        ['released', 8, undefined],
      ],
    );
  });

  it('a failed ping stops the command too; a forwarded signal or a second one is not a stop', () => {
    const log = records(
      0,
      acquired('7'),
      { event: 'child-signalled', signal: 'SIGINT', why: 'forwarded' },
      { event: 'child-signalled', signal: 'SIGKILL', why: 'second-signal', received: 'SIGINT' },
      { event: 'child-signalled', signal: 'SIGTERM', why: 'ping-failed', graceMs: 100 },
    );
    assert.deepEqual(
      toHolderEvents('a', log, [], []).map((e) => [e.kind, e.at, e.detail]),
      [
        ['acquired', 0, undefined],
        ['child-killed', 3, 'SIGTERM'],
      ],
    );
  });

  it('ignores what comes before the lock is held (a waiter gave up), and a child that was never seen dead', () => {
    const gaveUp = records(
      0,
      { event: 'waiting', waitingFor: { id: 'b', fencingToken: '5' }, ahead: 1 },
      { event: 'wait-cancelled', signal: 'SIGTERM' },
      { event: 'releasing' },
      { event: 'released' },
    );
    assert.deepEqual(toHolderEvents('a', gaveUp, [], []), []);
    const child: ChildLine[] = [{ kind: 'started', at: 3, token: '7', pid: 1 }];
    assert.deepEqual(
      toHolderEvents('a', records(0, acquired('7')), child, [{ pid: 2, at: 9 }]).map((e) => e.kind),
      ['acquired', 'child-started'],
    );
  });
});

describe('watchWorker', () => {
  it("reads etcdlocker's own records from its stderr: not the child's JSON or text, not a line still being written", () => {
    const own = records(0, acquired('7'))[0]!;
    const stderr = [
      JSON.stringify(own),
      'a line of text from the command',
      JSON.stringify({ ...own, pid: 10 }),
      JSON.stringify({ event: 'released', at: 5, pid: 9, key: '/k' }).slice(0, 20),
    ].join('\n');
    const locker = { pid: 9, stderr: () => stderr } as unknown as LockerProcess;
    const worker = watchWorker('a', locker, '/nonexistent/child.jsonl');
    try {
      assert.deepEqual(worker.records(), [own]);
      assert.deepEqual(worker.events(), [{ kind: 'acquired', holder: 'a', token: '7', at: 0 }]);
    } finally {
      worker.stop();
    }
  });
});

describe('readChildLog', () => {
  const tmp = tempDir('worker-log');
  after(() => tmp.remove());

  it('reads the JSON lines, skipping a torn last line; a missing file is an empty log', () => {
    const file = tmp.file('child.jsonl');
    writeFileSync(file, '{"kind":"started","at":1,"token":"7","pid":3}\n{"kind":"write","at":2,"tok');
    assert.deepEqual(readChildLog(file), [{ kind: 'started', at: 1, token: '7', pid: 3 }]);
    assert.deepEqual(readChildLog(tmp.file('none.jsonl')), []);
  });
});
