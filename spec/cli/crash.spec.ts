import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { isAlive } from '../support/cli.js';
import { etcdForSuite, uniquePrefix } from '../support/etcd.js';
import { assertInOrder, assertNothingLeft, holding, lockerScope, workerCommand } from '../support/locker-scope.js';

/**
 * etcdlocker fails unexpectedly while its command runs (a bug of ours or of a library: an exception nothing caught,
 * a rejection nothing handled). Node.js would end the process and leave the command running, unsupervised, past
 * the lock's lease. Instead the command is stopped as on a loss, the lock released, and etcdlocker exits 70.
 *
 * The failure is injected with `NODE_OPTIONS=--require`: a script that, in etcdlocker's process only, throws (or
 * rejects) once the command has written its PID file. Nothing in etcdlocker knows about it.
 */
describe('etcdlocker fails unexpectedly while the command runs', () => {
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
});
