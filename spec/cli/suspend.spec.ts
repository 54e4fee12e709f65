import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it, type TestContext } from 'node:test';
import { isAlive, processState, runLocker, writeScript } from '../support/cli.js';
import { assertInOrder, assertNothingLeft, holding, lockerScope } from '../support/locker-scope.js';
import { etcdctl, etcdForSuite, listKeys, uniquePrefix } from '../support/etcd.js';
import { until } from '../support/poll.js';

/**
 * Ctrl-Z (SIGTSTP) while the command runs. The command has a process group of its own, so a terminal's stop signal
 * reaches etcdlocker alone. Stopped, etcdlocker keeps no lease alive: the command must be stopped with it, and once
 * continued it may go on only if etcd still has the lease; a lease that ended meanwhile means the lock went to
 * someone else, and the command must never run again (cli/suspend.ts). Before, the command ran on unsupervised
 * while the lease ran out.
 */

describe('etcdlocker and Ctrl-Z', () => {
  const etcd = etcdForSuite();
  const direct = () => ['-e', etcd.endpoints.join(',')];

  /**
   * etcdlocker (TTL `ttl`, `-v`) running a command that appends a line to <dir>/ticks every 50 ms, once it has
   * written its PID: resolves when the lock is held and the command ticks.
   */
  async function holdingTicker(t: TestContext, label: string, ttl: number) {
    const s = lockerScope(t, `ctrl-z-${label}`);
    const key = `${uniquePrefix('cli-suspend')}/${label}`;
    const script = writeScript(
      s.file('ticker.sh'),
      `echo $$ > "$1/pid.tmp" && mv "$1/pid.tmp" "$1/pid"\nwhile :; do echo tick >> "$1/ticks"; sleep 0.05; done`,
    );
    const ticks = () => {
      try {
        return readFileSync(s.file('ticks'), 'utf8').length;
      } catch {
        return 0;
      }
    };
    const locker = s.locker([...direct(), '-v', '-t', String(ttl), '-k', key, '--', script, s.dir]);
    const held = await holding(locker);
    const pid = await s.pid();
    await until(() => ticks() > 0, 'the command to tick');
    return { key, locker, held, pid, ticks };
  }

  /** Sends SIGTSTP to etcdlocker and waits until both it and its command are stopped. */
  async function ctrlZ(lockerPid: number, commandPid: number): Promise<void> {
    process.kill(lockerPid, 'SIGTSTP');
    await until(
      () => processState(lockerPid) === 'T' && processState(commandPid) === 'T',
      'etcdlocker and its command to be stopped',
    );
  }

  it('stopped past the TTL: the lock goes to the next holder while the command is frozen; continued, the command is killed without running again, exit 2', async (t) => {
    const { key, locker, held, pid, ticks } = await holdingTicker(t, 'expired', 2);

    await ctrlZ(locker.pid, pid);
    const frozenAt = ticks();
    // The lease runs out (nobody keeps it alive) and the next contender gets the lock while ours is frozen.
    const next = await runLocker([...direct(), '-w', '20', '-k', key, '--', 'true']);
    assert.equal(next.code, 0, next.stderr);
    assert.equal(ticks(), frozenAt, 'the command did not run while etcdlocker was stopped');

    process.kill(locker.pid, 'SIGCONT');
    const result = await locker.result();

    assert.equal(result.code, 2, result.stderr);
    assert.equal(isAlive(pid), false, 'the command is dead');
    assert.equal(ticks(), frozenAt, 'the command never ran again after the lease had ended');
    assertInOrder(result.stderr, [
      /SIGTSTP: stopping the command, then etcdlocker/,
      /continued: asking etcd whether the lease is still alive/,
      /lost the lock/,
      /the command was killed by SIGKILL/,
      /released the lock/,
    ]);
    assert.doesNotMatch(result.stderr, /etcd still has the lease/);
    await assertNothingLeft(etcd.endpoints, key, [held.leaseHex]);
  });

  it('stopped briefly: the lock is kept; continued, the command goes on once etcd confirms the lease', async (t) => {
    // TTL 10 s: the local deadline is at least 2.5 s away at any moment, far more than the stop below.
    const { key, locker, held, pid, ticks } = await holdingTicker(t, 'brief', 10);

    await ctrlZ(locker.pid, pid);
    const frozenAt = ticks();
    await sleep(300);
    assert.equal(ticks(), frozenAt, 'the command is stopped with etcdlocker');
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), [held.holderKey], 'the lock is still ours');

    process.kill(locker.pid, 'SIGCONT');
    await locker.waitForStderr(/etcd still has the lease: the command goes on/);
    await until(() => ticks() > frozenAt, 'the command to tick again');
    assert.equal(locker.process.exitCode, null, 'etcdlocker still runs');

    locker.process.kill('SIGTERM');
    const result = await locker.result();
    assert.equal(result.code, 143, result.stderr);
    assertInOrder(result.stderr, [
      /SIGTSTP: stopping the command, then etcdlocker/,
      /continued: asking etcd whether the lease is still alive/,
      /etcd still has the lease: the command goes on/,
      /forwarding SIGTERM to the command/,
      /released the lock/,
    ]);
    await assertNothingLeft(etcd.endpoints, key, [held.leaseHex]);
  });

  it('the lease revoked while stopped: continued, the command is killed without running again, exit 2', async (t) => {
    const { key, locker, held, pid, ticks } = await holdingTicker(t, 'revoked', 10);

    await ctrlZ(locker.pid, pid);
    const frozenAt = ticks();
    const revoked = await etcdctl(etcd.endpoints, ['lease', 'revoke', held.leaseHex]);
    assert.equal(revoked.code, 0, revoked.stderr);

    process.kill(locker.pid, 'SIGCONT');
    const result = await locker.result();

    assert.equal(result.code, 2, result.stderr);
    assert.equal(isAlive(pid), false, 'the command is dead');
    assert.equal(ticks(), frozenAt, 'the command never ran again after the lease had ended');
    // Whichever tells first, the watch (our key deleted) or the lease check, the command is killed outright.
    assertInOrder(result.stderr, [/continued:/, /lost the lock/, /killed by SIGKILL/, /released the lock/]);
    await assertNothingLeft(etcd.endpoints, key, [held.leaseHex]);
  });

  it('Ctrl-Z while waiting for the lock stops etcdlocker; continued, it goes on waiting and runs the command', async (t) => {
    const s = lockerScope(t, 'ctrl-z-waiting');
    const key = `${uniquePrefix('cli-suspend')}/waiting`;
    const holder = s.locker([...direct(), '-v', '-i', 'holder', '-k', key, '--', 'sleep', '30']);
    await holding(holder);
    const waiter = s.locker([...direct(), '-v', '-i', 'waiter', '-t', '10', '-k', key, '--', 'true']);
    await waiter.waitForStderr(/waiting behind holder/);

    process.kill(waiter.pid, 'SIGTSTP');
    await until(() => processState(waiter.pid) === 'T', 'the waiter to be stopped');
    process.kill(waiter.pid, 'SIGCONT');
    holder.process.kill('SIGTERM');

    const result = await waiter.result();
    assert.equal(result.code, 0, result.stderr);
    assertInOrder(result.stderr, [/holding /, /the command exited with code 0/, /released the lock/]);
    assert.equal((await holder.result()).code, 143);
  });
});
