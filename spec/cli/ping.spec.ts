import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FIXTURES, isAlive } from '../support/cli.js';
import { assertInOrder, assertNothingLeft, heldIn, lockerScope } from '../support/locker-scope.js';
import { etcdForSuite, uniquePrefix } from '../support/etcd.js';

/**
 * Issue 3, `-n, --node` (or ETCD_CHILD_IS_NODE): the command is a Node.js module, forked with an IPC channel and
 * pinged with {ping: x} every refresh period; it must answer {pong: x} within the TTL. A wrong or missing answer
 * kills it, releases the lock and exits 4. The fixtures are in spec/cli/fixtures/child-*pong*.mjs, child-silent.mjs.
 */

const PONG = path.join(FIXTURES, 'child-pong.mjs');
const WRONG_PONG = path.join(FIXTURES, 'child-wrong-pong.mjs');
const SILENT = path.join(FIXTURES, 'child-silent.mjs');
/** A short TTL and a quick cadence so a run takes a second or two: pings every 0.5 s, answers due within 2 s. */
const FAST = ['-t', '2', '-r', '0.5'];

describe('etcdlocker -n: IPC pings to a Node.js child', () => {
  const etcd = etcdForSuite();

  const direct = () => ['-e', etcd.endpoints.join(',')];

  it("a child that answers every ping: etcdlocker exits with the child's own code", async (t) => {
    const s = lockerScope(t, 'pong');
    const key = `${uniquePrefix('cli-ping')}/pong`;
    // Answers 3 pings, then exits 42.
    const result = await s
      .locker([...direct(), '-v', ...FAST, '-n', '-k', key, '--', PONG, '3', '42', s.file('pings')])
      .result();

    assert.equal(result.code, 42, result.stderr);
    const pings = readFileSync(s.file('pings'), 'utf8').trim().split('\n');
    assert.equal(pings.length, 3, 'the child got three pings');
    assert.equal(new Set(pings).size, 3, 'each ping carries a new value');
    assert.match(result.stderr, /ping answered/);
    assert.doesNotMatch(result.stderr, /IPC ping failed/);
    assertInOrder(result.stderr, [/the command exited with code 42/, /released the lock/]);
    await assertNothingLeft(etcd.endpoints, key, [heldIn(result.stderr).leaseHex]);
  });

  it('ETCD_CHILD_IS_NODE=1 works like -n', async (t) => {
    const s = lockerScope(t, 'env');
    const key = `${uniquePrefix('cli-ping')}/env`;
    // Without an IPC channel child-pong.mjs would exit 70 at once: 42 means it was forked and pinged.
    const result = await s
      .locker([...direct(), '-v', ...FAST, '-k', key, '--', PONG, '2', '42', s.file('pings')], {
        ETCD_CHILD_IS_NODE: '1',
      })
      .result();

    assert.equal(result.code, 42, result.stderr);
    assert.equal(readFileSync(s.file('pings'), 'utf8').trim().split('\n').length, 2, 'the child got two pings');
    await assertNothingLeft(etcd.endpoints, key, [heldIn(result.stderr).leaseHex]);
  });

  it('a child that answers a wrong value is killed, and etcdlocker exits 4', async (t) => {
    const s = lockerScope(t, 'wrong');
    const key = `${uniquePrefix('cli-ping')}/wrong`;
    const locker = s.locker([...direct(), '-v', ...FAST, '-n', '-k', key, '--', WRONG_PONG, s.pidFile('pid')]);
    const pid = await s.pid('pid');
    const result = await locker.result();

    assert.equal(result.code, 4, result.stderr);
    assert.equal(isAlive(pid), false, 'the child is dead');
    const [, sent = '', got = ''] =
      /IPC ping failed: sent \{ping: (\d+)\}, got \{"pong":(\d+)\}/.exec(result.stderr) ?? [];
    assert.ok(sent && Number(got) === Number(sent) + 1, `etcdlocker says which answer was wrong:\n${result.stderr}`);
    assertInOrder(result.stderr, [/IPC ping failed/, /the command was killed by SIGTERM/, /released the lock/]);
    await assertNothingLeft(etcd.endpoints, key, [heldIn(result.stderr).leaseHex]);
  });

  it('a child that never answers is killed once the TTL has passed, and etcdlocker exits 4', async (t) => {
    const s = lockerScope(t, 'silent');
    const key = `${uniquePrefix('cli-ping')}/silent`;
    const locker = s.locker([...direct(), '-v', ...FAST, '-n', '-k', key, '--', SILENT, s.pidFile('pid')]);
    const pid = await s.pid('pid');
    const result = await locker.result();

    assert.equal(result.code, 4, result.stderr);
    assert.equal(isAlive(pid), false, 'the child is dead');
    // The answer was due within the TTL (-t 2).
    assert.match(result.stderr, /IPC ping failed: no answer to \{ping: \d+\} within 2000 ms/);
    assert.doesNotMatch(result.stderr, /ping answered/);
    assertInOrder(result.stderr, [/IPC ping failed/, /the command was killed by SIGTERM/, /released the lock/]);
    await assertNothingLeft(etcd.endpoints, key, [heldIn(result.stderr).leaseHex]);
  });
});
