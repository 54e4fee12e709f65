import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { isAlive, logRecords, runLocker } from '../support/cli.js';
import { etcdForSuite, listKeys, uniquePrefix } from '../support/etcd.js';
import { until } from '../support/poll.js';
import { WATCHDOG_NAME } from '../../cli/watchdog.js';
import { assertInOrder, assertNothingLeft, holding, lockerScope, workerCommand } from '../support/locker-scope.js';

/** The PIDs of the watchdogs (cli/watchdog.ts) watching the process group `pgid`, from /proc. */
function watchdogsOf(pgid: number): number[] {
  const wanted = `\0${WATCHDOG_NAME}\0${pgid}\0`;
  return readdirSync('/proc').flatMap((entry) => {
    if (!/^\d+$/.test(entry)) return [];
    try {
      return readFileSync(`/proc/${entry}/cmdline`, 'latin1').includes(wanted) ? [Number(entry)] : [];
    } catch {
      return []; // gone meanwhile
    }
  });
}

/**
 * etcdlocker fails unexpectedly while its command runs (a bug of ours or of a library: an exception nothing caught,
 * a rejection nothing handled). Node.js would end the process and leave the command running, unsupervised, past
 * the lock's lease. Instead the command is stopped as on a loss, the lock released, and etcdlocker exits 70.
 *
 * The failure is injected with `NODE_OPTIONS=--require`: a script that, in etcdlocker's process only, throws (or
 * rejects) once the command has written its PID file. Nothing in etcdlocker knows about it.
 *
 * SIGKILL cannot be caught: there, etcdlocker's watchdog (cli/watchdog.ts) kills the command's group.
 */
describe('etcdlocker fails unexpectedly, or is killed, while the command runs', () => {
  const etcd = etcdForSuite();

  for (const failure of ['an uncaught exception', 'an unhandled rejection'] as const) {
    it(`${failure}: the command is stopped, the lock released, exit 70`, async (t) => {
      const s = lockerScope(t, 'crash');
      const key = `${uniquePrefix('cli-crash')}/${failure.split(' ')[2]}`;
      const fail =
        failure === 'an uncaught exception'
          ? "setTimeout(() => { throw new Error('injected failure'); }, 50)"
          : "setTimeout(() => void Promise.reject(new Error('injected failure')), 50)";
      const inject = s.file('inject.cjs');
      writeFileSync(
        inject,
        `if (process.argv[1] && process.argv[1].endsWith('etcdlocker.cjs')) {
          const fs = require('node:fs');
          const poll = setInterval(() => {
            if (!fs.existsSync(${JSON.stringify(s.file('pid'))})) return;
            clearInterval(poll);
            ${fail};
          }, 20);
        }`,
      );
      const locker = s.locker(['-e', etcd.endpoints.join(','), '-v', '-k', key, '--', ...workerCommand(s.dir)], {
        NODE_OPTIONS: `--require ${inject}`,
      });
      const held = await holding(locker);
      const pid = await s.pid();

      const result = await locker.result();
      assert.equal(result.code, 70, result.stderr);
      assert.equal(isAlive(pid), false, 'the command is gone');
      assertInOrder(result.stderr, [
        /unexpected failure: Error: injected failure/,
        /etcdlocker failed: SIGTERM to the command's process group/,
        /released the lock/,
      ]);
      await assertNothingLeft(etcd.endpoints, key, [held.leaseHex]);
    });
  }

  it('SIGKILLed itself (kill -9, the OOM killer): its watchdog kills the command at once, not when the lease ends', async (t) => {
    const s = lockerScope(t, 'killed');
    const key = `${uniquePrefix('cli-crash')}/killed`;
    const locker = s.locker([
      '-e',
      etcd.endpoints.join(','),
      '-v',
      '-t',
      '30',
      '-k',
      key,
      '--',
      ...workerCommand(s.dir),
    ]);
    const held = await holding(locker);
    const pid = await s.pid();
    assert.equal(watchdogsOf(pid).length, 1, 'one watchdog over the command');

    locker.process.kill('SIGKILL');
    await until(() => !isAlive(pid), 'the command to be killed', 5000);
    await until(() => watchdogsOf(pid).length === 0, 'the watchdog to be gone', 5000);
    // Nobody released the lock: it ends with the lease, 30 s on, long after the command.
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), [held.holderKey]);
    await etcd.client.leaseClient.leaseRevoke({ ID: held.leaseId });
  });

  it('a normal run: the watchdog stands down, and a background job the command left is not killed', async (t) => {
    // The watchdog exits whenever etcdlocker does; only the word `done` keeps it from killing the group first.
    const s = lockerScope(t, 'normal');
    const key = `${uniquePrefix('cli-crash')}/normal`;
    const bgPid = s.pidFile('bg.pid');
    const script = s.file('bg.sh');
    writeFileSync(script, `#!/bin/sh\nsleep 30 >/dev/null 2>&1 &\necho $! > ${bgPid}\n`, { mode: 0o755 });
    const result = await runLocker(['-e', etcd.endpoints.join(','), '--log-json', '-k', key, '--', script]);
    assert.equal(result.code, 0, result.stderr);
    const started = logRecords(result.stderr).find((r) => r.event === 'child-started');
    assert.ok(started?.event === 'child-started', result.stderr);
    await until(() => watchdogsOf(started.childPid).length === 0, 'the watchdog to exit');
    assert.ok(isAlive(Number(readFileSync(bgPid, 'utf8'))), 'the background job outlived the watchdog');
  });
});
