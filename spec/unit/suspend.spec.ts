import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Child } from '../../cli/child.js';
import type { LogEvent } from '../../cli/log.js';
import { Suspension } from '../../cli/suspend.js';
import { until } from '../support/poll.js';

/**
 * The decisions of cli/suspend.ts after a resume, with etcd's answers scripted; spec/cli/suspend.spec.ts stops
 * and continues a real etcdlocker. Here etcdlocker does not really stop: `stopSelf` records the stop.
 */

interface Script {
  /** etcd's answers to the lease checks, in order: alive, gone, or a failure. */
  answers: Array<boolean | Error | Promise<boolean>>;
  running?: () => boolean;
}

function setUp(script: Script) {
  const signals: Array<NodeJS.Signals | 0> = [];
  const events: LogEvent[] = [];
  let leaseGone = 0;
  let stops = 0;
  let checks = 0;
  const child: Child = {
    process: undefined,
    outcome: new Promise(() => undefined),
    exited: false,
    signalGroup: (signal) => {
      signals.push(signal);
      return true;
    },
  };
  const suspension = new Suspension({
    child,
    log: { event: (e) => events.push(e), error: (message) => events.push({ event: 'error', message }) },
    leaseAlive: () => {
      const answer = script.answers[checks++];
      if (answer === undefined) return new Promise(() => undefined);
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
    },
    running: script.running ?? (() => true),
    onLeaseGone: () => leaseGone++,
    stopSelf: () => stops++,
  });
  return {
    suspension,
    signals,
    events,
    stops: () => stops,
    checks: () => checks,
    leaseGone: () => leaseGone,
  };
}

describe('Suspension (Ctrl-Z while the command runs)', () => {
  it('stops the command before etcdlocker, and continues it once etcd says the lease is alive', async () => {
    const s = setUp({ answers: [true] });
    s.suspension.suspend('SIGTSTP');
    assert.deepEqual(s.signals, ['SIGSTOP'], 'the command is stopped first');
    assert.equal(s.stops(), 1, 'then etcdlocker');
    assert.equal(s.suspension.commandStopped, true);
    await until(() => s.signals.length === 2, 'the command to be continued');
    assert.deepEqual(s.signals, ['SIGSTOP', 'SIGCONT']);
    assert.equal(s.suspension.commandStopped, false);
    assert.equal(s.leaseGone(), 0);
    assert.deepEqual(
      s.events.map((e) => e.event),
      ['suspended', 'resumed', 'child-signalled'],
    );
  });

  it('a lease gone at the resume: the loss is reported, the command killed, never continued', async () => {
    const s = setUp({ answers: [false] });
    s.suspension.suspend('SIGTSTP');
    await until(() => s.signals.length === 2, 'the command to be killed');
    assert.deepEqual(s.signals, ['SIGSTOP', 'SIGKILL']);
    assert.equal(s.leaseGone(), 1);
  });

  it('etcd cannot be asked: the command stays stopped and the check is sent again until etcd answers', async () => {
    const s = setUp({ answers: [new Error('unavailable'), new Error('unavailable'), true] });
    s.suspension.suspend('SIGTSTP');
    await until(() => s.signals.length === 2, 'the command to be continued');
    assert.equal(s.checks(), 3);
    assert.deepEqual(s.signals, ['SIGSTOP', 'SIGCONT']);
    assert.equal(s.events.filter((e) => e.event === 'lease-check-failed').length, 2);
  });

  it('once the run is stopping the command (a loss came first), the check continues nothing and kills nothing', async () => {
    let running = true;
    let answer!: (alive: boolean) => void;
    const s = setUp({ answers: [new Promise<boolean>((resolve) => (answer = resolve))], running: () => running });
    s.suspension.suspend('SIGTSTP');
    running = false;
    answer(true);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(s.signals, ['SIGSTOP']);
    assert.equal(s.suspension.commandStopped, true, 'still stopped: the run kills it without a grace');
  });

  it("a second Ctrl-Z before the first resume's check is answered: only the latest check may continue the command", async () => {
    let first!: (alive: boolean) => void;
    const s = setUp({ answers: [new Promise<boolean>((resolve) => (first = resolve)), true] });
    s.suspension.suspend('SIGTSTP');
    s.suspension.suspend('SIGTSTP');
    await until(() => s.signals.includes('SIGCONT'), 'the command to be continued');
    const continued = s.signals.filter((signal) => signal === 'SIGCONT').length;
    first(true);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(s.signals.filter((signal) => signal === 'SIGCONT').length, continued, 'the stale check did nothing');
    assert.deepEqual(s.signals, ['SIGSTOP', 'SIGSTOP', 'SIGCONT']);
  });
});
