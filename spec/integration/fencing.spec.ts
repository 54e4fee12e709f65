import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { lock$ } from '../../lib/lock-stream.js';
import type { HeldState, LockState } from '../../lib/state.js';
import { check, type HolderEvent, noStaleWrite } from '../support/checker.js';
import { etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { type FenceAttempt, type FenceReply, fenceWrite, now, startFence } from '../support/fence.js';
import { startProxy } from '../support/proxy.js';
import { record, type Recorded } from '../support/recorder.js';

/**
 * Why the fencing token matters. A lease lock cannot stop a holder that is paused (GC, SIGSTOP, a VM migration)
 * from waking up after its lease expired and acting as if it still held the lock: it has not run the code that
 * would tell it. Here the holder's connection to etcd is paused past its TTL (the test process keeps running),
 * the other worker gets the lock and writes, and then the stale holder writes with its old token without
 * looking at its state. The fence must turn it away, and the checker must find the run clean; with a fence that
 * trusts every writer (the negative control) the same run must show a stale write.
 */
describe('fencing: a holder that wakes up after losing the lock cannot write', () => {
  const etcd = etcdForSuite();
  const ttl = 2;

  /** Runs the scenario against a fence that enforces tokens or not; returns what the checker needs. */
  async function staleHolderRun(enforce: boolean): Promise<{
    events: HolderEvent[];
    writes: FenceAttempt[];
    staleWrite: FenceReply;
    tokens: { a: string; b: string };
  }> {
    const fence = await startFence({ enforce });
    const proxy = await startProxy(etcd.endpoints[0]!);
    const clientA = new Etcd3({ hosts: proxy.endpoint });
    const clientB = new Etcd3({ hosts: etcd.endpoints });
    const key = `${uniquePrefix('fencing')}/lock`;
    const events: HolderEvent[] = [];
    const workers: Recorded[] = [];
    try {
      // Worker a: holds first, through the proxy; writes while held.
      const a = record((onRelease) => lock$(clientA, key, { ttl, id: 'a', onRelease }));
      workers.push(a);
      const heldA = (await a.next('held')) as HeldState;
      assert.equal((await fenceWrite(fence.url, heldA.fencingToken, 'a', 'a-1')).verdict, 'accepted');

      // Worker b: queues behind a, directly on etcd.
      const b = record((onRelease) => lock$(clientB, key, { ttl, id: 'b', onRelease }));
      workers.push(b);
      await until(b, (s) => s.kind === 'acquiring' && s.waitingFor?.fencingToken === heldA.fencingToken);

      // a "pauses": its keepalives hang; it notices locally (the library's deadline) and etcd expires its lease.
      proxy.pause();
      const lostA = await a.next('lost', 15_000);
      const heldB = (await b.next('held', 15_000)) as HeldState;
      assert.equal((await fenceWrite(fence.url, heldB.fencingToken, 'b', 'b-1')).verdict, 'accepted');

      // a wakes up and writes with the token it had, ignoring that it lost the lock: the unfenced writer.
      proxy.resume();
      const staleWrite = await fenceWrite(fence.url, heldA.fencingToken, 'a', 'a-2 (stale)');
      // b is still the holder and its writes still go through.
      assert.equal((await fenceWrite(fence.url, heldB.fencingToken, 'b', 'b-2')).verdict, 'accepted');
      const releasedB = now();
      await b.release();
      await a.released();

      const toEvent = (holder: string, state: LockState & { at: number }): HolderEvent[] =>
        state.kind === 'held' || state.kind === 'lost'
          ? [
              {
                kind: state.kind === 'held' ? 'acquired' : 'lost',
                holder,
                token: state.fencingToken,
                at: performance.timeOrigin + state.at,
                ...(state.kind === 'lost' && { detail: state.reason }),
              },
            ]
          : [];
      events.push(...a.states.flatMap((s) => toEvent('a', s)), ...b.states.flatMap((s) => toEvent('b', s)), {
        kind: 'released',
        holder: 'b',
        token: heldB.fencingToken,
        at: releasedB,
      });
      assert.equal(lostA.kind === 'lost' && lostA.reason, 'expired');
      assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
      const leases = await listLeases(etcd.endpoints);
      for (const held of [heldA, heldB]) assert.ok(!leases.includes(BigInt(`0x${held.leaseId}`).toString()));
      return {
        events,
        writes: fence.log(),
        staleWrite,
        tokens: { a: heldA.fencingToken, b: heldB.fencingToken },
      };
    } finally {
      for (const worker of workers) worker.subscription.unsubscribe();
      proxy.resume();
      await Promise.allSettled(workers.map((w) => w.released()));
      clientA.close();
      clientB.close();
      await proxy.close();
      await fence.close();
    }
  }

  it('the fence rejects the stale write (409) and the checker finds the run clean', async () => {
    const run = await staleHolderRun(true);
    assert.ok(BigInt(run.tokens.b) > BigInt(run.tokens.a));
    assert.deepEqual(run.staleWrite, { status: 409, verdict: 'rejected' });
    // The order of events, as the workers and the fence saw them.
    assert.deepEqual(
      run.events.map((e) => `${e.kind} ${e.holder}`),
      ['acquired a', 'lost a', 'acquired b', 'released b'],
    );
    assert.deepEqual(
      run.writes.map((w) => `${w.writer} ${w.token === run.tokens.a ? 'old' : 'new'} ${w.verdict}`),
      ['a old accepted', 'b new accepted', 'a old rejected', 'b new accepted'],
    );
    assert.deepEqual(check({ events: run.events, writes: run.writes }), []);

    // Negative control on the same log: had the fence let the stale write in, the checker would say so.
    const trusted = run.writes.map((w) => ({ ...w, verdict: 'accepted' as const }));
    const violations = check({ events: run.events, writes: trusted });
    assert.deepEqual(
      violations.map((v) => v.property),
      ['no-stale-write'],
    );
    assert.match(violations[0]!.message, new RegExp(`stale write from a \\(token ${run.tokens.a}\\)`));
  });

  it('negative control: a fence that trusts every writer lets the stale write in, and the checker reports it', async () => {
    const run = await staleHolderRun(false);
    assert.deepEqual(run.staleWrite, { status: 200, verdict: 'accepted' });
    // The lock itself behaved (a learnt of its loss before b got the lock): only the resource was unprotected.
    assert.deepEqual(check({ events: run.events }), []);
    const violations = noStaleWrite(run.writes);
    assert.equal(violations.length, 1);
    assert.match(
      violations[0]!.message,
      new RegExp(`stale write from a \\(token ${run.tokens.a}\\) .* newer token ${run.tokens.b}`),
    );
  });
});

/** Resolves once a recorded state satisfies `probe`. */
async function until(worker: Recorded, probe: (state: LockState) => boolean, timeoutMs = 15_000): Promise<void> {
  const start = performance.now();
  while (!worker.states.some(probe)) {
    if (worker.error !== undefined) throw new Error('worker failed', { cause: worker.error });
    if (performance.now() - start > timeoutMs) throw new Error('timed out waiting for a state');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
