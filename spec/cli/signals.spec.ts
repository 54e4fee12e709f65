import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { isAlive } from '../support/cli.js';
import { assertInOrder, assertNothingLeft, holding, lockerScope, workerCommand } from '../support/locker-scope.js';
import { etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { until } from '../support/poll.js';

/**
 * Issue 3: SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to the command as the same signal; once it has
 * exited the lock is released and etcdlocker exits 128 + the signal. A signal while still waiting cancels the
 * wait and leaves no key. A second SIGINT or SIGTERM kills the command at once. The lock is released as soon as
 * the command exits, before etcdlocker does.
 */

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;
const exitCodeOf = (signal: NodeJS.Signals) => 128 + os.constants.signals[signal];

describe('etcdlocker and signals', () => {
  const etcd = etcdForSuite();

  const direct = () => ['-e', etcd.endpoints.join(',')];

  for (const signal of SIGNALS) {
    it(`${signal} while the command runs: forwarded as ${signal}, lock released, exit ${exitCodeOf(signal)}`, async (t) => {
      const s = lockerScope(t, `forward-${signal}`);
      const key = `${uniquePrefix('cli-signals')}/forward-${signal}`;
      // The command notes the signal it gets and exits 0: the exit code must still say etcdlocker was signalled.
      const locker = s.locker([...direct(), '-v', '-k', key, '--', ...workerCommand(s.dir)], {
        CHILD_SIGNALS: SIGNALS.map((name) => `${name}=exit`).join(','),
      });
      const held = await holding(locker);
      const pid = await s.pid();

      locker.process.kill(signal);
      const result = await locker.result();

      assert.equal(result.code, exitCodeOf(signal), result.stderr);
      assert.equal(readFileSync(s.file('signals'), 'utf8'), `${signal}\n`, `the command got ${signal}, once`);
      assert.equal(isAlive(pid), false);
      assertInOrder(result.stderr, [
        new RegExp(`forwarding ${signal} to the command`),
        /the command exited with code 0/,
        /released the lock/,
      ]);
      await assertNothingLeft(etcd.endpoints, key, [held.leaseHex]);
    });
  }

  for (const signal of SIGNALS) {
    it(`${signal} while waiting for the lock: exit ${exitCodeOf(signal)}, no key of its own left, the holder unaffected`, async (t) => {
      const s = lockerScope(t, `waiting-${signal}`);
      const key = `${uniquePrefix('cli-signals')}/waiting-${signal}`;
      const holderDir = s.subdir('holder');
      const waiterDir = s.subdir('waiter');
      const holder = s.locker([...direct(), '-v', '-i', 'holder', '-k', key, '--', ...workerCommand(holderDir)]);
      const held = await holding(holder);
      const holderPid = await s.pid('holder/pid');
      const waiter = s.locker([...direct(), '-v', '-i', 'waiter', '-k', key, '--', ...workerCommand(waiterDir)]);
      s.pidFile('waiter/pid');
      await waiter.waitForStderr(/waiting behind holder/);
      const queued = (await listKeys(etcd.endpoints, `${key}/`)).filter((k) => k !== held.holderKey);
      assert.equal(queued.length, 1, 'the waiter has queued a key of its own');
      const waiterLeaseHex = queued[0]!.slice(queued[0]!.lastIndexOf('/') + 1);

      waiter.process.kill(signal);
      const result = await waiter.result();

      assert.equal(result.code, exitCodeOf(signal), result.stderr);
      assert.match(result.stderr, new RegExp(`${signal}: giving up the wait`));
      assert.equal(existsSync(path.join(waiterDir, 'start')), false, "the waiter's command never started");
      assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), [held.holderKey], "only the holder's key is left");
      assert.ok(
        !(await listLeases(etcd.endpoints)).includes(BigInt(`0x${waiterLeaseHex}`).toString()),
        "the waiter's lease is revoked",
      );
      assert.ok(isAlive(holderPid), "the holder's command still runs");
      assert.equal(holder.process.exitCode, null, 'the holder still runs');

      holder.process.kill('SIGTERM');
      assert.equal((await holder.result()).code, 143);
      await assertNothingLeft(etcd.endpoints, key, [held.leaseHex, waiterLeaseHex]);
    });
  }

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`a second ${signal} kills a command that ignores the first, and exits ${exitCodeOf(signal)}`, async (t) => {
      const s = lockerScope(t, `again-${signal}`);
      const key = `${uniquePrefix('cli-signals')}/again-${signal}`;
      const locker = s.locker([...direct(), '-v', '-k', key, '--', ...workerCommand(s.dir)], {
        CHILD_SIGNALS: `${signal}=ignore`,
      });
      const held = await holding(locker);
      const pid = await s.pid();

      locker.process.kill(signal);
      await until(() => existsSync(s.file('signals')), 'the command to note the first signal');
      assert.ok(isAlive(pid), 'the command outlives the first signal');
      locker.process.kill(signal);
      const result = await locker.result();

      assert.equal(result.code, exitCodeOf(signal), result.stderr);
      assert.equal(isAlive(pid), false, 'the command is dead');
      assert.equal(readFileSync(s.file('signals'), 'utf8'), `${signal}\n`, 'only the first signal was forwarded');
      assertInOrder(result.stderr, [
        new RegExp(`forwarding ${signal} to the command`),
        new RegExp(`${signal} again: killing the command`),
        /the command was killed by SIGKILL/,
        /released the lock/,
      ]);
      await assertNothingLeft(etcd.endpoints, key, [held.leaseHex]);
    });
  }

  for (const [label, command, code] of [
    ['exits 0', ['true'], 0],
    ['exits 7', ['sh', '-c', 'exit 7'], 7],
  ] as const) {
    it(`releases the lock as soon as the command ${label}: the key and lease are gone when etcdlocker has exited`, async (t) => {
      const s = lockerScope(t, 'released');
      const key = `${uniquePrefix('cli-signals')}/released`;
      // The default TTL (60 s): a key left behind could not expire before we look.
      const locker = s.locker([...direct(), '-v', '-k', key, '--', ...command]);
      const result = await locker.result();
      const [keys, leases] = await Promise.all([listKeys(etcd.endpoints, `${key}/`), listLeases(etcd.endpoints)]);

      assert.equal(result.code, code, result.stderr);
      const [, holderKey = ''] = /holding (\S+) with fencing token/.exec(result.stderr) ?? [];
      const leaseHex = holderKey.slice(holderKey.lastIndexOf('/') + 1);
      assert.match(leaseHex, /^[0-9a-f]+$/, result.stderr);
      assert.deepEqual(keys, [], 'no key is left under the lock');
      assert.ok(!leases.includes(BigInt(`0x${leaseHex}`).toString()), 'the lease is revoked');
      assertInOrder(result.stderr, [new RegExp(`the command exited with code ${code}`), /released the lock/]);
    });
  }
});
