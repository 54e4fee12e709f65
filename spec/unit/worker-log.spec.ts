import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { tempDir } from '../support/cli.js';
import { type ChildLine, readChildLog, toHolderEvents } from '../support/worker-log.js';

/** etcdlocker's `-v` stderr, one line a millisecond from `at`: progress lines stamped, errors not. */
const stderr = (at: number, ...texts: string[]) =>
  texts.map((text, i) => ({
    at: at + i,
    text: text.startsWith(':') ? `etcdlocker${text}` : `etcdlocker 0.123s ${text}`,
  }));

describe('toHolderEvents', () => {
  it('turns a run that released into acquired, child-started, child-reaped, released', () => {
    const lines = stderr(
      10,
      'connecting to 127.0.0.1:2379 for "/k" as a',
      'holding /k/694d8a1b2c3d with fencing token 7',
      'running node child.mjs',
      'refreshed the lease (TTL 3 s)',
      'forwarding SIGTERM to the command',
      'the command exited with code 143',
      'released the lock',
    );
    const child: ChildLine[] = [
      { kind: 'started', at: 12.5, token: '7', pid: 4242 },
      { kind: 'write', at: 13, token: '7', verdict: 'accepted' },
      { kind: 'sigterm', at: 14.5, token: '7' },
    ];
    assert.deepEqual(toHolderEvents('a', lines, child, [{ pid: 4242, at: 15.5 }]), [
      { kind: 'acquired', holder: 'a', token: '7', at: 11 },
      { kind: 'child-started', holder: 'a', token: '7', at: 12.5, detail: 'pid 4242' },
      { kind: 'released', holder: 'a', token: '7', at: 15 },
      { kind: 'child-reaped', holder: 'a', token: '7', at: 15.5, detail: 'pid 4242' },
    ]);
  });

  it('stamps a release when the command was over (the revoke follows), not when etcd answered it', () => {
    const lines = stderr(0, 'holding /k/1 with fencing token 7', 'the command exited with code 0');
    lines.push({ at: 50, text: 'etcdlocker 0.200s released the lock' });
    assert.deepEqual(
      toHolderEvents('a', lines, [], []).map((e) => [e.kind, e.at]),
      [
        ['acquired', 0],
        ['released', 1],
      ],
    );
  });

  it('has no release until `released the lock`, and stamps it on arrival when nothing said the command was over', () => {
    const over = stderr(0, 'holding /k/1 with fencing token 7', 'the command was killed by SIGKILL');
    assert.deepEqual(
      toHolderEvents('a', over, [], []).map((e) => e.kind),
      ['acquired'],
    );
    const bare = stderr(0, 'holding /k/1 with fencing token 7', 'released the lock');
    assert.deepEqual(
      toHolderEvents('a', bare, [], []).map((e) => [e.kind, e.at]),
      [
        ['acquired', 0],
        ['released', 1],
      ],
    );
  });

  it('turns a loss into lost, child-killed (SIGTERM, then SIGKILL), and the release after the group is gone', () => {
    const lines = stderr(
      0,
      'holding /k/1 with fencing token 9',
      ': lost the lock (expired): Lost the lock "/k" (expired): lease 1: no answer [ETCDLOCK_LOST]; stopping the command',
      "lock lost: SIGTERM to the command's process group, SIGKILL after 562 ms",
      ': the command outlived SIGTERM by 562 ms: SIGKILL',
      'the command was killed by SIGKILL',
      "the command's process group is gone",
      'released the lock',
    );
    assert.deepEqual(
      toHolderEvents('a', lines, [], []).map((e) => [e.kind, e.at, e.detail]),
      [
        ['acquired', 0, undefined],
        ['lost', 1, 'expired'],
        ['child-killed', 2, 'SIGTERM'],
        ['child-killed', 3, 'SIGKILL'],
        ['released', 5, undefined],
      ],
    );
  });

  it('ignores what comes before the lock is held (a waiter gave up), and a child that was never seen dead', () => {
    const lines = stderr(0, 'waiting behind b (token 5)', 'SIGTERM: giving up the wait', 'released the lock');
    assert.deepEqual(toHolderEvents('a', lines, [], []), []);
    const child: ChildLine[] = [{ kind: 'started', at: 3, token: '7', pid: 1 }];
    assert.deepEqual(
      toHolderEvents('a', stderr(0, 'holding /k/1 with fencing token 7'), child, [{ pid: 2, at: 9 }]).map(
        (e) => e.kind,
      ),
      ['acquired', 'child-started'],
    );
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
