/**
 * Safety under real faults of the etcd cluster (issue 4): library workers contend for one lock on a 3-member
 * cluster, each on its own etcd3 client with every member's endpoint, writing to a fence with their fencing token
 * while they hold it. One fault per test, injected while a worker is in the middle of a (long) hold; after it, the
 * checker must find the run clean (tokens rise, no overlap, no stale write accepted) and someone must hold the
 * lock again soon after the heal. The negative control runs the same fault with workers that ignore `lost` and a
 * fence that trusts every writer: there the checker must find the overlap and the stale writes.
 *
 * The figures (fault to first loss against the window the local deadline allows, loss to etcd's deletion of the
 * key, heal to next grant) are printed as `[faults] ...` lines for docs/safety.md, never asserted: CI machines are
 * too uneven for that. The one bound asserted is the liveness promise, "held again within TTL + a few
 * seconds" of the heal, with room to spare (TTL + 10 s); the rest are orders of events.
 *
 * The workers' clients use etcdlocker's lock-friendly fault handling (`cli/client.ts`);
 * `FAULTS_CLIENT=default` runs the same tests with etcd3's default circuit breaker, for comparison.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { check, grants, type HolderEvent, type Violation } from '../support/checker.js';
import { etcdEndpointsFromEnv } from '../support/etcd.js';
import { now } from '../support/fence.js';
import { netnsUnavailable } from './netns-partition.js';
import {
  FAULTS,
  type FaultName,
  type FaultOutcome,
  type FaultRun,
  faultWhileHeld,
  staleLeaderRevocations,
  startRun,
  stopAll,
  violationsToFailOn,
} from './support-run.js';
import { clientKindFromEnv, errorCounts, figures, holdDetail, printFigures, waitFor } from './support-workers.js';

const TTL = 3;
/** Every fault lasts past the TTL, so that a holder cut off by it must lose the lock. */
const FAULT_MS = TTL * 1000 + 1000;
const HEAL_WITHIN_MS = (TTL + 10) * 1000;

describe(
  'cluster faults: the lock stays safe and comes back',
  {
    skip: etcdEndpointsFromEnv() ? 'ETCD_ENDPOINTS is set: these tests kill, pause and restart etcd members' : false,
  },
  () => {
    const clientKind = clientKindFromEnv();

    /** What a finished run left for a test's own assertions. */
    interface Finished {
      events: HolderEvent[];
      outcome: FaultOutcome;
      deletedAt: ReadonlyMap<string, number>;
    }

    /**
     * Starts a run, lets the workers trade the lock, injects the fault while one of `who` holds it, and checks the
     * whole log: clean, held again after the heal, written to after the heal, every grant ended, no key left.
     */
    async function faultRun(
      fault: FaultName,
      options: { isolated?: boolean; who?: (run: FaultRun) => FaultRun['workers'] } = {},
    ): Promise<Finished> {
      const run = await startRun({
        label: `faults-${fault}`,
        ttl: TTL,
        clientKind,
        isolated: options.isolated ?? false,
      });
      try {
        assert.ok(await run.grantsSince(0, 3, 30_000), 'the workers trade the lock before the fault');
        const outcome = await faultWhileHeld(run, FAULTS[fault], FAULT_MS, options.who?.(run));
        // Give the lock its chance to come back, then a little more traffic after it.
        if (await run.grantsSince(outcome.healedAt, 1, HEAL_WITHIN_MS)) {
          await run.grantsSince(outcome.healedAt, 3, 10_000);
        }
        await run.stopWorkers();

        const events = run.loggedEvents();
        const writes = run.fence.log();
        printFigures({
          ...figures({
            fault,
            client: clientKind,
            ttlSeconds: TTL,
            events,
            deletedAt: run.deletedAt,
            ...outcome,
          }),
          ...outcome.detail,
          holdersRevokedAtResume: staleLeaderRevocations(events, outcome),
          errors: errorCounts(run.workers),
          writesAccepted: writes.filter((w) => w.verdict === 'accepted').length,
          writesRejected: writes.filter((w) => w.verdict === 'rejected').length,
        });

        const heal = { at: outcome.healedAt, withinMs: HEAL_WITHIN_MS };
        assert.deepEqual(violationsToFailOn(run, fault, [outcome], heal), []);
        assert.ok(
          writes.some((w) => w.verdict === 'accepted' && w.at > outcome.healedAt),
          'a holder wrote through the fence after the heal',
        );
        // Every grant ended: the workers released (or lost) everything before they stopped.
        assert.deepEqual(
          grants(events).filter((g) => g.endedBy === undefined),
          [],
        );
        // Nothing left behind, once any lease whose revoke a fault swallowed has run out.
        assert.deepEqual(await run.keysLeft(HEAL_WITHIN_MS), []);
        return { events, outcome, deletedAt: new Map(run.deletedAt) };
      } finally {
        await run.stop();
      }
    }

    /** The `lost` event that ended the grant the fault hit, if it ended in a loss. */
    function lossOfHolderAtFault({ events, outcome }: Finished): HolderEvent | undefined {
      const hit = outcome.holderAtFault;
      assert.ok(hit, 'the fault hit a holder');
      return events.find((e) => e.kind === 'lost' && e.holder === hit.holder && e.token === hit.token);
    }

    it('the leader is killed (SIGKILL) and restarted', { timeout: 120_000 }, async () => {
      // The holder may ride it out on the other members, or lose the lock: either way the run must be clean.
      await faultRun('leader-killed');
    });

    it('the leader is paused (SIGSTOP) past the election timeout, then resumed', { timeout: 120_000 }, async () => {
      // Paused past the TTL too: on resume, etcd 3.4.23 may revoke live leases (see splitStaleLeaderRevocations in
      // support-run.ts): an overlap that causes is printed, not failed on.
      await faultRun('leader-paused');
    });

    it('every member is killed, then all restart on their data dirs', { timeout: 120_000 }, async () => {
      const finished = await faultRun('all-members-down');
      // No member answers for longer than the TTL: the holder cannot have ridden it out.
      assert.equal(lossOfHolderAtFault(finished)?.detail, 'expired', 'the holder lost the lock at its local deadline');
    });

    it(
      'the holder is cut off from etcd by a network partition (its own network namespace)',
      { timeout: 120_000, skip: netnsUnavailable() ?? false },
      async () => {
        const finished = await faultRun('worker-partitioned', {
          isolated: true,
          who: (run) => (run.isolated ? [run.isolated] : []),
        });
        const lost = lossOfHolderAtFault(finished);
        assert.equal(finished.outcome.holderAtFault?.holder, 'iso');
        assert.equal(lost?.detail, 'expired', 'the isolated holder lost the lock at its local deadline');
        // Property 2 of the protocol: the holder learns of the loss before etcd can expire its lease.
        const deletedAt = finished.deletedAt.get(lost.token);
        assert.ok(deletedAt !== undefined, 'etcd deleted the isolated holder key (its lease expired)');
        assert.ok(lost.at < deletedAt, `the loss (${lost.at}) came before etcd deleted the key (${deletedAt})`);
      },
    );

    it(
      'negative control: holders that ignore `lost` and a fence that trusts every writer: the checker reports both',
      { timeout: 120_000 },
      async () => {
        const run = await startRun({
          label: 'faults-negative',
          ttl: TTL,
          clientKind,
          ignoreLoss: true,
          enforceFence: false,
        });
        try {
          assert.ok(await run.grantsSince(0, 3, 30_000), 'the workers trade the lock before the fault');
          // As faultWhileHeld, but the long holds go on after the heal until another worker has the lock.
          const since = now();
          const longGrant = (e: HolderEvent) =>
            e.kind === 'acquired' && e.at >= since && e.detail === holdDetail('long');
          run.hold('long');
          assert.ok(await waitFor(() => run.events.some(longGrant), 30_000), 'a worker holds the lock for long');
          const stale = run.events.find(longGrant)!;
          const outcome = await stopAll(run, FAULT_MS);
          const next = (e: HolderEvent) =>
            e.kind === 'acquired' && e.at >= outcome.healedAt && e.holder !== stale.holder;
          assert.ok(await waitFor(() => run.events.some(next), HEAL_WITHIN_MS), 'another worker gets the lock');
          const successor = run.events.find(next)!;
          assert.ok(
            await waitFor(() => run.fence.log().some((w) => w.token === successor.token), 10_000),
            'the new holder writes',
          );
          run.hold('short'); // the stale holder, still writing with its old token, now finishes its work
          const released = (e: HolderEvent) =>
            e.kind === 'released' && e.holder === stale.holder && e.token === stale.token;
          assert.ok(await waitFor(() => run.events.some(released), 10_000), 'the stale holder finishes');
          await run.stopWorkers();

          const events = run.loggedEvents();
          const writes = run.fence.log();
          printFigures({
            ...figures({
              fault: 'negative-control',
              client: clientKind,
              ttlSeconds: TTL,
              events,
              deletedAt: run.deletedAt,
              ...outcome,
              holderAtFault: stale,
            }),
            ignoredLosses: run.workers.reduce((sum, worker) => sum + worker.ignoredLosses, 0),
            staleWritesAccepted: writes.filter((w) => w.token === stale.token && w.at > successor.at).length,
          });
          // The library did tell the holder: the worker ignored it.
          const staleWorker = run.workers.find((w) => w.name === stale.holder);
          assert.ok(staleWorker && staleWorker.ignoredLosses > 0, `the library reported the loss to ${stale.holder}`);
          const violations = check({ events, writes });
          const about = (property: Violation['property']) =>
            violations.filter((v) => v.property === property && v.message.includes(`token ${stale.token}`));
          assert.ok(about('no-overlap').length > 0, `an overlap with ${stale.holder}'s grant is reported`);
          assert.ok(about('no-stale-write').length > 0, `${stale.holder}'s stale writes are reported`);
        } finally {
          await run.stop();
        }
      },
    );
  },
);
