/**
 * What the CLI specs share once etcdlocker runs a real command: a per-test scope that cleans up every process it
 * started, reading what `-v` prints, ordered stderr assertions, and the "nothing left in etcd" check.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { FIXTURES, isAlive, type LockerProcess, startLocker, tempDir, waitForFile } from './cli.js';
import { listKeys, listLeases } from './etcd.js';

/** `node child-worker.mjs <dir>` as etcdlocker's command (see spec/cli/fixtures/child-worker.mjs). */
export function workerCommand(dir: string): string[] {
  return [process.execPath, path.join(FIXTURES, 'child-worker.mjs'), dir];
}

/** What `-v` says once the lock is held: the holder key, and its lease ID in hex (as in the key) and decimal. */
export async function holding(locker: LockerProcess) {
  const [, holderKey = ''] = await locker.waitForStderr(/holding (\S+) with fencing token \d+/);
  return holderOf(holderKey);
}

/** The holder key printed in `stderr` by `-v` (asserting there is one), with its lease ID. */
export function heldIn(stderr: string) {
  const [, holderKey = ''] = /holding (\S+) with fencing token/.exec(stderr) ?? [];
  assert.ok(holderKey, `the lock was held:\n${stderr}`);
  return holderOf(holderKey);
}

function holderOf(holderKey: string) {
  const leaseHex = holderKey.slice(holderKey.lastIndexOf('/') + 1);
  return { holderKey, leaseHex, leaseId: BigInt(`0x${leaseHex}`).toString() };
}

/** Asserts that each pattern matches `text`, each after the previous one's match. */
export function assertInOrder(text: string, patterns: RegExp[]): void {
  let from = 0;
  for (const pattern of patterns) {
    const match = pattern.exec(text.slice(from));
    assert.ok(match, `expected ${String(pattern)} after offset ${from} in:\n${text}`);
    from += match.index + match[0].length;
  }
}

/** Asserts no key is left under the lock `key` and none of the leases (hex, as in holder keys) is alive. */
export async function assertNothingLeft(endpoints: string[], key: string, leaseHexes: string[]): Promise<void> {
  assert.deepEqual(await listKeys(endpoints, `${key}/`), [], 'no key is left under the lock');
  const leases = new Set(await listLeases(endpoints));
  for (const hex of leaseHexes) assert.ok(!leases.has(BigInt(`0x${hex}`).toString()), `lease ${hex} is gone`);
}

/**
 * What one test starts, cleaned up after it even when it fails half-way: each etcdlocker still running gets
 * SIGTERM (it forwards it to its command's group, and releases), a second SIGTERM (which SIGKILLs a command that
 * ignored the first), then SIGKILL; then every PID its named PID files hold is SIGKILLed if still alive (only
 * those PIDs); then its temporary directory goes. An orphaned command would hold etcdlocker's stdout and stderr
 * open, and with them this test process.
 */
export function lockerScope(t: TestContext, label: string) {
  const tmp = tempDir(label);
  const lockers: LockerProcess[] = [];
  const pidFiles = new Set<string>();
  t.after(async () => {
    for (const signal of ['SIGTERM', 'SIGTERM', 'SIGKILL'] as const) {
      const running = lockers.filter(({ process: p }) => p.exitCode === null && p.signalCode === null);
      // SIGCONT too: a stopped etcdlocker (a Ctrl-Z test that failed half-way) would only queue the others.
      for (const locker of running) for (const sent of [signal, 'SIGCONT'] as const) locker.process.kill(sent);
      await Promise.all(running.map((locker) => exitWithin(locker.process, 3000)));
    }
    for (const file of pidFiles) {
      const pid = existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) : NaN;
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    tmp.remove();
  });
  return {
    dir: tmp.dir,
    file: (name: string) => tmp.file(name),
    subdir(name: string): string {
      mkdirSync(tmp.file(name));
      return tmp.file(name);
    },
    /** A PID file a command will write: that PID is killed at the end if still alive. */
    pidFile(name: string): string {
      pidFiles.add(tmp.file(name));
      return tmp.file(name);
    },
    /** Waits for the PID file `name` (registering it) and returns the PID. */
    async pid(name = 'pid'): Promise<number> {
      pidFiles.add(tmp.file(name));
      return Number((await waitForFile(tmp.file(name))).trim());
    },
    locker(args: string[], env?: NodeJS.ProcessEnv): LockerProcess {
      const locker = startLocker(args, env);
      lockers.push(locker);
      return locker;
    },
  };
}

/** Resolves once `child` has exited, or after `ms` (the timer does not outlive it). */
async function exitWithin(child: ChildProcess, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    child.once('exit', () => resolve());
    if (child.exitCode !== null || child.signalCode !== null) resolve();
  });
  clearTimeout(timer);
}
