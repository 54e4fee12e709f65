import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Etcd3 } from 'etcd3';
import { isAlive, waitForFile, writeScript } from '../support/cli.js';
import { assertInOrder, assertNothingLeft, holding, lockerScope, workerCommand } from '../support/locker-scope.js';
import { etcdForSuite, uniquePrefix } from '../support/etcd.js';
import { startProxy } from '../support/proxy.js';

/**
 * Issue 3, "Safe when the lock is lost": when etcdlocker loses the lock while its command runs, the command's
 * whole process group gets SIGTERM, then SIGKILL, etcdlocker exits 2 only once it is dead, and it is dead before
 * anyone else can be granted the lock: before the lease can expire, and before our key is let go.
 */

/** This process's monotonic clock (ms), for the lease-expiry bound; order checks across processes use Date.now(). */
const now = () => performance.timeOrigin + performance.now();

describe('etcdlocker when the lock is lost while the command runs', () => {
  const etcd = etcdForSuite();

  const direct = () => ['-e', etcd.endpoints.join(',')];

  /**
   * Runs `job` (which writes its PID to the scope's `pid` file) under the lock with `flags`, waits until the lock
   * is held and the job runs, calls `whileHeld`, deletes our key from outside, and waits for etcdlocker to exit.
   */
  async function deletedWhileRunning(
    s: ReturnType<typeof lockerScope>,
    key: string,
    flags: string[],
    job: string,
    whileHeld?: (pid: number) => void | Promise<void>,
  ) {
    const locker = s.locker([...direct(), '-v', '-k', key, ...flags, '--', job]);
    const held = await holding(locker);
    const pid = await s.pid('pid');
    await whileHeld?.(pid);
    await etcd.client.delete().key(held.holderKey).exec();
    return { held, pid, result: await locker.result() };
  }

  /** A second etcdlocker (talking to etcd directly) queued behind the first, running {@link nextHolder}. */
  const secondInLine = (key: string, ttl: string, dir: string, firstDir: string, s: ReturnType<typeof lockerScope>) =>
    s.locker([
      ...direct(),
      '-v',
      '-i',
      'second',
      '-k',
      key,
      '-t',
      ttl,
      '--',
      nextHolder(dir, path.join(firstDir, 'pid')),
    ]);

  it('kills the command when its key is deleted from outside, and exits 2 once it is dead', async (t) => {
    const s = lockerScope(t, 'deleted');
    const key = `${uniquePrefix('cli-loss')}/deleted`;
    const job = writeScript(s.file('job.sh'), `echo $$ > "${s.pidFile('pid')}"\nsleep 1000`);
    const { held, pid, result } = await deletedWhileRunning(s, key, ['-t', '10'], job, (pid) => {
      assert.ok(isAlive(pid), 'the command runs while the lock is held');
    });
    const aliveAtExit = isAlive(pid);

    assert.equal(result.code, 2, result.stderr);
    assert.equal(aliveAtExit, false, 'the command is dead when etcdlocker has exited');
    // etcdlocker reaped the command before it let go of the lock (and then exited).
    assertInOrder(result.stderr, [
      /etcdlocker: lost the lock \(deleted\)/,
      /lock lost: SIGTERM to the command's process group/,
      /the command was killed by SIGTERM/,
      /the command's process group is gone/,
      /released the lock/,
    ]);
    await assertNothingLeft(etcd.endpoints, key, [held.leaseHex]);
  });

  it("kills the command's whole process group, a background grandchild too", async (t) => {
    const s = lockerScope(t, 'group');
    const key = `${uniquePrefix('cli-loss')}/group`;
    const job = writeScript(
      s.file('job.sh'),
      [`sleep 1000 &`, `echo $! > "${s.pidFile('grandchild')}"`, `echo $$ > "${s.pidFile('pid')}"`, `wait`].join('\n'),
    );
    let grandchild = 0;
    const { held, pid, result } = await deletedWhileRunning(s, key, ['-t', '10'], job, async (pid) => {
      grandchild = await s.pid('grandchild');
      assert.ok(isAlive(pid) && isAlive(grandchild), 'the command and its grandchild run');
    });

    assert.equal(result.code, 2, result.stderr);
    assert.equal(isAlive(pid), false, 'the command is dead');
    assert.equal(isAlive(grandchild), false, 'the background grandchild in its group is dead too');
    await assertNothingLeft(etcd.endpoints, key, [held.leaseHex]);
  });

  for (const [label, extra] of [
    ['', []],
    [' (--kill-timeout 30 is capped)', ['--kill-timeout', '30']],
  ] as const) {
    it(`SIGKILLs a command that ignores SIGTERM, within what the lease allows, and exits 2${label}`, async (t) => {
      const s = lockerScope(t, 'ignores-term');
      const key = `${uniquePrefix('cli-loss')}/ignores-term`;
      // An ignored signal stays ignored across exec, so the shell's sleeps ignore SIGTERM as well.
      const job = writeScript(
        s.file('job.sh'),
        [`trap '' TERM`, `echo $$ > "${s.pidFile('pid')}"`, `while :; do sleep 1; done`].join('\n'),
      );
      const { held, pid, result } = await deletedWhileRunning(s, key, ['-t', '4', ...extra], job);

      assert.equal(result.code, 2, result.stderr);
      assert.equal(isAlive(pid), false, 'the command is dead');
      const [, grace = ''] = /SIGTERM to the command's process group, SIGKILL after (\d+) ms/.exec(result.stderr) ?? [];
      // -t 4 with the default refresh (2 s) puts the local deadline 1 s before the lease can expire: the grace
      // between SIGTERM and SIGKILL must fit in that.
      assert.ok(Number(grace) > 0 && Number(grace) < 1000, `grace ${grace} ms fits in the 1000 ms loss margin`);
      assertInOrder(result.stderr, [
        /lost the lock \(deleted\)/,
        new RegExp(`SIGTERM to the command's process group, SIGKILL after ${grace} ms`),
        new RegExp(`the command outlived SIGTERM by ${grace} ms: SIGKILL`),
        /the command was killed by SIGKILL/,
        /released the lock/,
      ]);
      await assertNothingLeft(etcd.endpoints, key, [held.leaseHex]);
    });
  }

  it('--kill-timeout 0.2: SIGTERM first, SIGKILL after that grace', async (t) => {
    const s = lockerScope(t, 'kill-timeout');
    const key = `${uniquePrefix('cli-loss')}/kill-timeout`;
    // Notes each SIGTERM and carries on; its foreground sleep dies of it, the loop starts another.
    const job = writeScript(
      s.file('job.sh'),
      [
        `trap 'echo TERM >> "${s.file('signals')}"' TERM`,
        `echo $$ > "${s.pidFile('pid')}"`,
        `while :; do sleep 0.1; done`,
      ].join('\n'),
    );
    const { held, pid, result } = await deletedWhileRunning(s, key, ['-t', '10', '--kill-timeout', '0.2'], job);

    assert.equal(result.code, 2, result.stderr);
    assert.equal(isAlive(pid), false, 'the command is dead');
    assert.match(readFileSync(s.file('signals'), 'utf8'), /^TERM$/m, 'the command got SIGTERM and outlived it');
    assertInOrder(result.stderr, [
      /lost the lock \(deleted\)/,
      /SIGTERM to the command's process group, SIGKILL after 200 ms/,
      /the command outlived SIGTERM by 200 ms: SIGKILL/,
      /the command was killed by SIGKILL/,
      /the command's process group is gone/,
      /released the lock/,
    ]);
    await assertNothingLeft(etcd.endpoints, key, [held.leaseHex]);
  });

  for (const fault of ['pause', 'cut'] as const) {
    it(`etcd unreachable (connection ${fault === 'pause' ? 'hangs' : 'reset'}): the command is dead before the lease can expire and before the next holder starts`, async (t) => {
      const s = lockerScope(t, `unreachable-${fault}`);
      const key = `${uniquePrefix('cli-loss')}/unreachable-${fault}`;
      const proxy = await startProxy(etcd.endpoints[0]!);
      t.after(() => proxy.close());
      const firstDir = s.subdir('first');
      const secondDir = s.subdir('second');
      s.pidFile('first/pid');
      s.pidFile('second/pid');

      // The first talks to etcd through the proxy; -t 4 with the default refresh (2 s): a 1 s loss margin.
      const first = s.locker([
        '-e',
        proxy.endpoint,
        '-v',
        '-i',
        'first',
        '-k',
        key,
        '-t',
        '4',
        '--',
        ...workerCommand(firstDir),
      ]);
      const held = await holding(first);
      const firstPid = await s.pid('first/pid');
      // The second talks to etcd directly and waits its turn; its command notes when it starts, and whether the
      // first command was still around at that moment.
      const second = secondInLine(key, '4', secondDir, firstDir, s);
      await second.waitForStderr(/waiting behind first/);

      if (fault === 'pause') proxy.pause();
      else proxy.cut();
      const expiry = watchLeaseExpiry(etcd.client, held.leaseId);
      while (isAlive(firstPid)) await sleep(5);
      // The command died at this moment or before: on the clock of the lease's expiry, and on the wall clock.
      const diedBy = now();
      const diedByWallClock = Date.now();
      const keyAtDeath = await etcd.client.get(held.holderKey).string();
      await expiry.done;

      assert.ok(expiry.answers > 0, 'etcd answered at least one TTL request with a second or more left');
      const marginMs = expiry.expiresNoEarlierThan - diedBy;
      assert.ok(
        marginMs > 0,
        `the command was dead ${Math.round(marginMs)} ms before the lease could expire (must be > 0)`,
      );
      assert.equal(keyAtDeath, 'first', 'our key was still in etcd when the command was found dead');

      if (fault === 'pause') proxy.resume();
      else proxy.heal();
      const result = await first.result();
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /lost the lock \(expired\)/);
      assertInOrder(result.stderr, [/lost the lock/, /the command was killed by SIGTERM/, /released the lock/]);

      // The next holder's command started only after the first command was dead, and saw no trace of it.
      const secondStarted = Number(await waitForFile(path.join(secondDir, 'start'))) / 1e6;
      assert.ok(diedByWallClock < secondStarted, `the first command died before the second started`);
      assert.equal((await waitForFile(path.join(secondDir, 'other'))).trim(), 'gone', 'the first command was reaped');

      second.process.kill('SIGTERM');
      assert.equal((await second.result()).code, 143);
      await assertNothingLeft(etcd.endpoints, key, [held.leaseHex]);
    });
  }

  it('after a loss (key changed) the key stays until the command is dead: a waiter is not granted before', async (t) => {
    const s = lockerScope(t, 'changed');
    const key = `${uniquePrefix('cli-loss')}/changed`;
    const firstDir = s.subdir('first');
    const secondDir = s.subdir('second');
    s.pidFile('first/pid');
    s.pidFile('second/pid');

    // The first command takes 300 ms to stop after SIGTERM (well inside the grace a 10 s TTL allows).
    const first = s.locker(
      [...direct(), '-v', '-i', 'first', '-k', key, '-t', '10', '--', ...workerCommand(firstDir)],
      {
        CHILD_SIGNALS: 'SIGTERM=linger:300',
      },
    );
    const held = await holding(first);
    const firstPid = await s.pid('first/pid');
    const second = secondInLine(key, '10', secondDir, firstDir, s);
    await second.waitForStderr(/waiting behind first/);

    // Someone overwrites our key but keeps it on our lease: the lock is lost ('changed'), the key stays.
    await etcd.client.put(held.holderKey).value('intruder').lease(held.leaseId).exec();
    const result = await first.result();

    assert.equal(result.code, 2, result.stderr);
    assert.equal(isAlive(firstPid), false);
    assert.equal(readFileSync(path.join(firstDir, 'signals'), 'utf8'), 'SIGTERM\n', 'the command got SIGTERM once');
    assertInOrder(result.stderr, [/lost the lock \(changed\)/, /the command exited with code 0/, /released the lock/]);

    const firstEnded = Number(await waitForFile(path.join(firstDir, 'end')));
    const secondStarted = Number(await waitForFile(path.join(secondDir, 'start'))) / 1e6;
    assert.ok(firstEnded < secondStarted, 'the second command started after the first one stopped');
    assert.equal((await waitForFile(path.join(secondDir, 'other'))).trim(), 'gone', 'the first command was reaped');

    second.process.kill('SIGTERM');
    assert.equal((await second.result()).code, 143);
    await assertNothingLeft(etcd.endpoints, key, [held.leaseHex]);
  });
});

/**
 * The next holder's command, written into `dir`: a shell script, so that it takes its notes within a millisecond
 * or two of being started (node needs tens of ms to boot). It writes <dir>/start (when it started: ns since the
 * epoch, from `date`), <dir>/other ("present" if the PID in `otherPidFile` still existed then, running or a
 * zombie; "gone" once reaped) and <dir>/pid, then sleeps until killed.
 */
function nextHolder(dir: string, otherPidFile: string): string {
  const put = (name: string, value: string) =>
    `echo "${value}" > "${dir}/${name}.tmp" && mv "${dir}/${name}.tmp" "${dir}/${name}"`;
  return writeScript(
    path.join(dir, 'next-holder.sh'),
    [
      'started=$(date +%s%N)',
      `read other < "${otherPidFile}"`,
      'if [ -e "/proc/$other" ]; then state=present; else state=gone; fi',
      put('pid', '$$'),
      put('other', '$state'),
      put('start', '$started'),
      'exec sleep 1000',
    ].join('\n'),
  );
}

/**
 * Polls a lease's remaining TTL on etcd (directly, not through a proxy) and keeps a lower bound on when it can
 * expire, on this process's clock. etcd answers the remaining time truncated to whole seconds, so an answer of
 * k >= 1 to a request sent at t means the lease lives until t + k s at least (etcd handles the request after we
 * send it, and the expiry only moves later while we watch). Answers below 1 prove nothing: etcd says 0 both for
 * "under a second left" and for "expired under a second ago" (it truncates towards zero), -1 once it is gone.
 * Polling stops at the first such answer: the bound is then within one polling round of the true expiry.
 */
function watchLeaseExpiry(client: Etcd3, leaseId: string) {
  const state = { expiresNoEarlierThan: -Infinity, answers: 0, done: Promise.resolve() };
  state.done = (async () => {
    const giveUp = now() + 30_000;
    while (now() < giveUp) {
      const sentAt = now();
      const ttl = Number((await client.leaseClient.leaseTimeToLive({ ID: leaseId })).TTL);
      if (ttl < 1) return;
      state.answers++;
      state.expiresNoEarlierThan = Math.max(state.expiresNoEarlierThan, sentAt + ttl * 1000);
      await sleep(10);
    }
  })();
  return state;
}
