/**
 * etcdlocker under faults that really happen, one at a time, on a single etcd (issue 4): two workers `a` and `b`
 * on one key, each an etcdlocker running spec/faults/fixtures/fenced-child.mjs, which writes to a fence in a loop
 * with its ETCD_LOCK_REV; the fault hits `a` while it holds; after the heal a third worker `c` takes the lock over
 * from `b`. Every test checks the run with the checker (spec/support/checker.ts, on events from
 * spec/support/worker-log.ts), that the fault did happen, and that nothing of the run is left in etcd.
 *
 * No timed assertions but the liveness bound (someone holds again within TTL + a few seconds of the heal,
 * here TTL + 5 s): the order of events and their presence only. The figures (when the loss was detected, when the
 * next holder got the lock) are printed as `[faults] ...` lines for docs/safety.md, never asserted.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { check, childReapedBeforeNextGrant, type HolderEvent } from '../support/checker.js';
import { isAlive, ROOT, startLocker } from '../support/cli.js';
import { etcdctl, etcdForSuite, listKeys, uniquePrefix } from '../support/etcd.js';
import { type FenceAttempt, type FenceServer, now, startFence } from '../support/fence.js';
import { assertNothingLeft } from '../support/locker-scope.js';
import { until } from '../support/poll.js';
import { startProxy, type TcpProxy } from '../support/proxy.js';
import { watchWorker, type WorkerLog } from '../support/worker-log.js';
import { faultLogDir, printFigures } from './support-workers.js';

const CHILD = path.join(ROOT, 'spec/faults/fixtures/fenced-child.mjs');
const TTL = 3;
/** The liveness bound: someone holds the lock again within TTL + a few seconds of the heal. */
const HELD_AGAIN_WITHIN_MS = (TTL + 5) * 1000;
/** How long the test waits for a grant that needs a lease to expire first: never a bound, only a give-up. */
const GRANT_AFTER_EXPIRY_TIMEOUT_MS = (TTL + 15) * 1000;

/** The state letter of a process (`/proc/<pid>/stat`): `T` once a SIGSTOP has taken effect. */
function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.charAt(stat.lastIndexOf(')') + 2);
}

describe('etcdlocker under faults: the child is gone before the next grant, the fence stops late writers', () => {
  const etcd = etcdForSuite();
  /** Each worker's logs: `<label>-<name>-<n>.child.jsonl` (its child's) and `.etcdlocker.jsonl` (its stderr). */
  const tmp = faultLogDir('faults');
  after(() => tmp.remove());

  interface Run {
    key: string;
    fence: FenceServer;
    proxy: TcpProxy;
    workers: WorkerLog[];
    /** When the test saw etcd delete each key under the lock (`<key>/<lease hex>`). */
    deletedAt: Map<string, number>;
    /** Starts `etcdlocker --log-json -e endpoint -k key -i name -t TTL -- node fenced-child.mjs ...`, watching it. */
    start(name: string, endpoint: string): WorkerLog;
  }

  /**
   * Sets up a fence, a proxy to etcd and a watch on the lock's keys; runs `body`; stops whatever the test started.
   * When `body` passed, nothing may be left in etcd: no key under the lock, no lease that any key of the run was
   * attached to (queued waiters' too: the watch sees every key put).
   */
  async function withRun<T>(label: string, enforce: boolean, body: (run: Run) => Promise<T>): Promise<T> {
    const key = `${uniquePrefix(label)}/lock`;
    const fence = await startFence({ enforce });
    const proxy = await startProxy(etcd.endpoints[0]!);
    const deletedAt = new Map<string, number>();
    const leaseHexes = new Set<string>();
    const watcher = await etcd.client.watch().prefix(`${key}/`).create();
    watcher.on('put', (kv) => leaseHexes.add(BigInt(kv.lease).toString(16)));
    watcher.on('delete', (kv) => deletedAt.set(kv.key.toString(), now()));
    const workers: WorkerLog[] = [];
    const run: Run = {
      key,
      fence,
      proxy,
      workers,
      deletedAt,
      start(name, endpoint) {
        const log = tmp.file(`${label}-${name}-${workers.length}.child.jsonl`);
        const args = ['--log-json', '-e', endpoint, '-k', key, '-i', name, '-t', String(TTL), '--'];
        const worker = watchWorker(name, startLocker([...args, process.execPath, CHILD, log, fence.url, name]), log);
        workers.push(worker);
        return worker;
      },
    };
    let passed = false;
    try {
      const result = await body(run);
      passed = true;
      return result;
    } finally {
      // Only what this test started: its etcdlockers (woken first if stopped; kill() on an exited one sends
      // nothing) and the children they started, each the leader of its own process group.
      for (const [n, worker] of workers.entries()) {
        worker.locker.process.kill('SIGCONT');
        worker.locker.kill();
        for (const pid of worker.childPids()) {
          if (isAlive(pid)) process.kill(-pid, 'SIGKILL');
        }
        worker.stop();
        writeFileSync(tmp.file(`${label}-${worker.holder}-${n}.etcdlocker.jsonl`), worker.locker.stderr());
      }
      await watcher.cancel();
      proxy.resume();
      proxy.heal();
      await proxy.close();
      await fence.close();
      if (passed) {
        await assertNothingLeft(etcd.endpoints, key, [...leaseHexes]);
      } else {
        for (const leftKey of await listKeys(etcd.endpoints, `${key}/`)) {
          await etcdctl(etcd.endpoints, ['lease', 'revoke', leftKey.slice(key.length + 1)]);
        }
      }
    }
  }

  /** The holder key and grant token of a worker's `acquired` record, waiting for it. */
  async function held(worker: WorkerLog, timeoutMs = 20_000): Promise<{ key: string; token: string }> {
    const acquired = await worker.next('acquired', timeoutMs);
    return { key: acquired.holderKey, token: acquired.fencingToken };
  }

  /** Waits until `worker` is queued behind `holder` (a `waiting` record naming it). */
  async function waitingBehind(worker: WorkerLog, holder: string): Promise<void> {
    await until(
      () => worker.records().some((r) => r.event === 'waiting' && r.waitingFor?.id === holder),
      `${worker.holder} waiting behind ${holder}`,
    );
  }

  /** Resolves with the first attempt the fence logged that matches `probe`, waiting for it. */
  async function fenceSaw(
    fence: FenceServer,
    probe: (w: FenceAttempt) => boolean,
    what: string,
  ): Promise<FenceAttempt> {
    await until(() => fence.log().some(probe), what);
    return fence.log().find(probe)!;
  }

  /** Resolves once every child the workers started is dead, then stops watching (so the logs are complete). */
  async function childrenGone(workers: readonly WorkerLog[]): Promise<void> {
    await until(() => workers.every((w) => w.childPids().every((pid) => !isAlive(pid))), 'every child dead');
    for (const worker of workers) worker.stop();
  }

  /** A worker's exit code once it has exited (each exits on its own, or on the test's SIGTERM). */
  async function exitCode(worker: WorkerLog): Promise<number> {
    return (await worker.locker.result(30_000)).code;
  }

  /**
   * After the heal: `c` (through `endpoint`) queues behind `b`; `b` gets SIGTERM (forwarded to its child; it
   * releases once the child is gone, exit 143); `c` takes the lock and writes; `c` is stopped the same way.
   */
  async function handOverAfterHeal(run: Run, b: WorkerLog, endpoint: string): Promise<void> {
    const c = run.start('c', endpoint);
    await waitingBehind(c, 'b');
    b.locker.process.kill('SIGTERM');
    assert.equal(await exitCode(b), 143, b.locker.stderr());
    const heldC = await held(c);
    await fenceSaw(run.fence, (w) => w.writer === 'c' && w.verdict === 'accepted', "c's first write");
    c.locker.process.kill('SIGTERM');
    assert.equal(await exitCode(c), 143, c.locker.stderr());
    assert.ok(BigInt(heldC.token) > 0n);
  }

  /** The first event of `kind` for `holder`, asserting there is one. */
  function first(events: readonly HolderEvent[], holder: string, kind: HolderEvent['kind']): HolderEvent {
    const event = events.find((e) => e.holder === holder && e.kind === kind);
    const seen = events.filter((e) => e.holder === holder).map((e) => e.kind);
    assert.ok(event, `${holder} has a ${kind} event; its events: ${seen.join(', ')}`);
    return event;
  }

  const ms = (from: number, to: number | undefined) => (to === undefined ? null : Math.round(to - from));

  /**
   * The holder's etcdlocker is stopped (SIGSTOP on its PID) while it holds: it can neither refresh its lease nor
   * stop its child, which keeps writing with its token. etcd expires the lease; `b` gets the lock and writes; `a`'s
   * child writes again with the old token. Then `a` is woken (SIGCONT): it finds its deadline passed, stops its
   * child and exits 2.
   *
   * The checker's child-reaped-before-next-grant rule is etcdlocker's promise for a holder that runs. A stopped
   * process cannot keep it (docs/cli.md: "a process paused longer than its TTL cannot stop itself in time"), and
   * the run shows it: the rule reports `a`. So `a`'s grant is judged by what protects the resource in that case,
   * the fence: every other check runs on the log without `a`'s child events, and must be clean, no-stale-write
   * included. `a`'s grant ends, as etcd saw it, when the test saw etcd delete its key (its lease expired).
   */
  async function pausedHolderRun(enforce: boolean) {
    const fault = enforce ? 'etcdlocker-sigstop' : 'etcdlocker-sigstop-unfenced';
    return withRun(fault, enforce, async (run) => {
      const endpoint = etcd.endpoints[0]!;
      const a = run.start('a', endpoint);
      const heldA = await held(a);
      await fenceSaw(run.fence, (w) => w.writer === 'a' && w.verdict === 'accepted', "a's first write");
      const b = run.start('b', endpoint);
      await waitingBehind(b, 'a');

      process.kill(a.locker.pid, 'SIGSTOP');
      const stoppedAt = now();
      await until(() => processState(a.locker.pid) === 'T', "a's etcdlocker to be stopped");
      const heldB = await held(b, GRANT_AFTER_EXPIRY_TIMEOUT_MS);
      const firstB = await fenceSaw(run.fence, (w) => w.writer === 'b' && w.verdict === 'accepted', "b's write");
      // a's child, still running under a stopped etcdlocker, writes with its old token after b's write.
      await fenceSaw(run.fence, (w) => w.writer === 'a' && w.at > firstB.at, "a's late write");
      // Stopped past its TTL, whatever the phase of its last keepalive; its child writes on, rejected or not.
      await sleep(Math.max(0, stoppedAt + TTL * 1000 - now()));
      // The fault held all along: a's etcdlocker is still stopped, so etcd expired its lease on its own.
      assert.equal(processState(a.locker.pid), 'T', "a's etcdlocker was stopped until now");
      process.kill(a.locker.pid, 'SIGCONT');
      const resumedAt = now();

      const codeA = await exitCode(a);
      await handOverAfterHeal(run, b, endpoint);
      await childrenGone(run.workers);

      assert.equal(codeA, 2, a.locker.stderr());
      assert.deepEqual(
        a.records().flatMap((r) => (r.event === 'lost' ? [r.reason] : [])),
        ['expired'],
        a.locker.stderr(),
      );
      const keyDeletedAt = run.deletedAt.get(heldA.key);
      assert.ok(keyDeletedAt !== undefined, "etcd deleted a's key");
      assert.ok(stoppedAt < keyDeletedAt && keyDeletedAt < resumedAt, "a's key went while a was stopped");
      assert.ok(BigInt(heldB.token) > BigInt(heldA.token));

      const events = run.workers.flatMap((w) => w.events(w === a ? { etcdEndedAt: keyDeletedAt } : {}));
      const writes = run.fence.log();
      const late = writes.filter((w) => w.writer === 'a' && w.at > firstB.at);
      const ownLoss = events.find((e) => e.holder === 'a' && e.kind === 'lost' && e.at > resumedAt);
      printFigures({
        fault,
        ttlSeconds: TTL,
        stoppedForMs: ms(stoppedAt, resumedAt),
        stopToKeyExpiredMs: ms(stoppedAt, keyDeletedAt),
        stopToNextGrantMs: ms(stoppedAt, first(events, 'b', 'acquired').at),
        resumeToOwnLossMs: ms(resumedAt, ownLoss?.at),
        resumeToChildReapedMs: ms(resumedAt, events.find((e) => e.holder === 'a' && e.kind === 'child-reaped')?.at),
        lateWritesAccepted: late.filter((w) => w.verdict === 'accepted').length,
        lateWritesRejected: late.filter((w) => w.verdict === 'rejected').length,
      });
      return {
        events,
        // Without a's child events: see above.
        judged: events.filter((e) => !(e.holder === 'a' && e.kind.startsWith('child-'))),
        writes,
        late,
        heal: { at: resumedAt, withinMs: HELD_AGAIN_WITHIN_MS },
        tokens: { a: heldA.token, b: heldB.token },
      };
    });
  }

  it("a holder's etcdlocker paused past its TTL: b gets the lock, the fence rejects a's child's stale writes", async () => {
    const run = await pausedHolderRun(true);
    // The fault happened: a's child wrote with the old token after b's first accepted write, and was refused.
    assert.ok(run.late.length > 0, 'a wrote after b');
    assert.deepEqual([...new Set(run.late.map((w) => w.verdict))], ['rejected']);
    // ... and its child outlived its grant, which is what the child rule reports (and why it is waived for a).
    assert.deepEqual(
      childReapedBeforeNextGrant(run.events).map((v) => v.message.startsWith(`a (token ${run.tokens.a})`)),
      [true],
    );
    assert.deepEqual(check({ events: run.judged, writes: run.writes, heal: run.heal }), []);
  });

  it('negative control: the same paused holder against a fence that trusts every writer, and the checker reports the stale write', async () => {
    const run = await pausedHolderRun(false);
    assert.ok(run.late.length > 0, 'a wrote after b');
    assert.deepEqual([...new Set(run.late.map((w) => w.verdict))], ['accepted']);
    const violations = check({ events: run.judged, writes: run.writes, heal: run.heal });
    assert.deepEqual([...new Set(violations.map((v) => v.property))], ['no-stale-write'], JSON.stringify(violations));
    // One violation per late write that got through, the first of them named.
    assert.equal(violations.length, run.late.length);
    assert.match(
      violations[0]!.message,
      new RegExp(`stale write from a \\(token ${run.tokens.a}\\) .* with the newer token ${run.tokens.b}$`),
    );
  });

  for (const mode of ['pause', 'cut'] as const) {
    const how = mode === 'pause' ? 'paused (its connections hang)' : 'cut (its connections reset)';
    it(`the holder cut off from etcd by a proxy ${how} for 2 x TTL: its child is dead before b's starts, exit 2`, async () => {
      const fault = `proxy-${mode}`;
      await withRun(fault, true, async (run) => {
        const a = run.start('a', run.proxy.endpoint);
        const heldA = await held(a);
        await fenceSaw(run.fence, (w) => w.writer === 'a' && w.verdict === 'accepted', "a's first write");
        const b = run.start('b', etcd.endpoints[0]!);
        await waitingBehind(b, 'a');

        const faultAt = now();
        if (mode === 'pause') run.proxy.pause();
        else run.proxy.cut();
        const heldB = await held(b, GRANT_AFTER_EXPIRY_TIMEOUT_MS);
        await fenceSaw(run.fence, (w) => w.writer === 'b' && w.verdict === 'accepted', "b's first write");
        await sleep(Math.max(0, faultAt + 2 * TTL * 1000 - now())); // the fault lasts 2 x TTL
        if (mode === 'pause') run.proxy.resume();
        else run.proxy.heal();
        const healedAt = now();

        await handOverAfterHeal(run, b, run.proxy.endpoint);
        const codeA = await exitCode(a);
        await childrenGone(run.workers);

        assert.equal(codeA, 2, a.locker.stderr());
        const events = run.workers.flatMap((w) => w.events());
        const writes = run.fence.log();
        assert.deepEqual(check({ events, writes, heal: { at: healedAt, withinMs: HELD_AGAIN_WITHIN_MS } }), []);

        // The fault happened: a lost the lock by its own deadline (no keepalive answered), and etcd expired its
        // lease while the proxy kept a away (a could not have revoked it).
        const lostA = first(events, 'a', 'lost');
        assert.equal(lostA.detail, 'expired');
        assert.ok(faultAt < lostA.at && lostA.at < healedAt, 'a lost the lock during the fault');
        const keyDeletedAt = run.deletedAt.get(heldA.key);
        assert.ok(keyDeletedAt !== undefined && faultAt < keyDeletedAt && keyDeletedAt < healedAt, 'a expired');
        // ... and was handled in order: a lost the lock, signalled its child, the child died, and only then was b
        // granted the lock and its child started.
        const killedA = first(events, 'a', 'child-killed');
        const reapedA = first(events, 'a', 'child-reaped');
        const acquiredB = first(events, 'b', 'acquired');
        const startedB = first(events, 'b', 'child-started');
        assert.ok(lostA.at <= killedA.at && killedA.at <= reapedA.at, 'lost, then SIGTERM, then dead');
        assert.ok(reapedA.at < acquiredB.at, "a's child was dead before b was granted the lock");
        assert.ok(acquiredB.at <= startedB.at, "b's child started once b held the lock");
        assert.equal(killedA.detail, 'SIGTERM');
        assert.ok(
          a.childLines().some((l) => l.kind === 'sigterm'),
          "a's child got SIGTERM",
        );
        assert.ok(BigInt(heldB.token) > BigInt(heldA.token));
        // Every write of a's token came before b's first one: a's child never wrote late.
        const firstB = writes.find((w) => w.writer === 'b')!;
        assert.deepEqual(
          writes.filter((w) => w.writer === 'a' && w.at > firstB.at),
          [],
        );

        printFigures({
          fault,
          ttlSeconds: TTL,
          faultLastedMs: ms(faultAt, healedAt),
          faultToLossMs: ms(faultAt, lostA.at),
          faultToChildReapedMs: ms(faultAt, reapedA.at),
          faultToKeyExpiredMs: ms(faultAt, keyDeletedAt),
          faultToNextGrantMs: ms(faultAt, acquiredB.at),
          childReapedBeforeNextGrantByMs: ms(reapedA.at, acquiredB.at),
          // c is started at the heal, through the proxy: this includes its start-up and b's hand-over.
          healToGrantThroughProxyMs: ms(healedAt, first(events, 'c', 'acquired').at),
        });
      });
    });
  }
});
