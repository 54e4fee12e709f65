import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it, type TestContext } from 'node:test';
import { Etcd3 } from 'etcd3';
import { isLockError } from '../../lib/errors.js';
import { lockFaultHandling } from '../../lib/fault-handling.js';
import { lock$ } from '../../lib/lock-stream.js';
import { createLocker } from '../../lib/locker.js';
import type { LockerLockState } from '../../lib/locker-state.js';
import { etcdctl, listKeys, startEtcd, uniquePrefix } from '../support/etcd.js';
import { record } from '../support/recorder.js';

/**
 * etcd's NOSPACE alarm: past its backend quota, etcd refuses every write that adds data ("database space exceeded",
 * gRPC RESOURCE_EXHAUSTED) but still answers reads, deletes, revokes and keepalives, so the locks already held can
 * be kept while an operator frees space. Another attempt on the same client must fail, naming the cause, and cost
 * the held locks nothing. With etcd3's default fault handling it costs them the lock: the refused grant, tried
 * three times, opens the host's circuit breaker for 5 s, and the held lock's keepalives are refused with it past
 * the local deadline (the second test pins that, as the README says it). `lockFaultHandling()`
 * (lib/fault-handling.ts) passes the refusal on as it is.
 */

const TTL = 3;

/** An etcd of this test's own with a 1 MB quota, stopped after it, and a way to fill it up to its NOSPACE alarm. */
async function smallEtcd(t: TestContext) {
  const node = await startEtcd({ extraArgs: ['--quota-backend-bytes', String(1_000_000)] });
  t.after(() => node.stop());
  return {
    endpoint: node.endpoint,
    /** Writes 256 KB values from a client of its own (a refusal there trips nothing of the test's) until refused. */
    async fill(): Promise<void> {
      const filler = new Etcd3({ hosts: node.endpoint });
      try {
        for (let i = 0; ; i++) {
          assert.ok(i < 50, 'etcd never raised its NOSPACE alarm');
          const put = filler.put(`/fill/${i}`).value(randomBytes(256 * 1024));
          const refused = await put.then(
            () => false,
            (err: Error) => /database space exceeded/.test(err.message),
          );
          if (refused) break;
        }
      } finally {
        filler.close();
      }
      assert.match((await etcdctl([node.endpoint], ['alarm', 'list'])).stdout, /NOSPACE/);
    },
  };
}

/** Asserts `err` is ETCDLOCK_UNAVAILABLE saying why: etcd is out of space. */
function assertOutOfSpace(err: unknown): void {
  assert.ok(isLockError(err) && err.code === 'ETCDLOCK_UNAVAILABLE', `ETCDLOCK_UNAVAILABLE, got ${String(err)}`);
  assert.match(err.message, /database space exceeded/);
}

describe("etcd's NOSPACE alarm (database space exceeded)", () => {
  it('with lockFaultHandling(): held locks (lock$ and a locker) ride through it; new ones are refused, naming the cause', async (t) => {
    const etcd = await smallEtcd(t);
    const client = new Etcd3({ hosts: etcd.endpoint, faultHandling: lockFaultHandling(etcd.endpoint) });
    t.after(() => client.close());
    const prefix = uniquePrefix('nospace-helper');
    const held = record((onRelease) => lock$(client, `${prefix}/stream`, { ttl: TTL, onRelease }));
    await held.next('held');
    const locker = createLocker(client, { name: `${prefix}/locker`, ttl: TTL });
    await locker.lock('a');
    const lockerStates: LockerLockState['kind'][] = [];
    const watching = locker.lockState$('a').subscribe((state) => lockerStates.push(state.kind));
    t.after(() => watching.unsubscribe());

    await etcd.fill();
    const refused = record(() => lock$(client, `${prefix}/refused`, { ttl: TTL }));
    assertOutOfSpace(await refused.failed());
    await assert.rejects(locker.lock('b'), (err) => {
      assertOutOfSpace(err);
      return true;
    });
    const refreshesBefore = held.states.filter((state) => state.kind === 'refreshed').length;

    // Two TTLs: with etcd3's defaults, the lock$ would be lost within one (see the next test).
    await sleep(2 * TTL * 1000);
    assert.deepEqual(
      held.states.filter((state) => state.kind === 'lost'),
      [],
      'the held lock$ was not lost',
    );
    assert.ok(held.states.filter((state) => state.kind === 'refreshed').length >= refreshesBefore + 2, 'kept alive');
    assert.deepEqual(lockerStates, ['held'], "the locker's lock stayed held");
    assert.equal(locker.isHeld('a'), true);

    // Deletes and revokes still go through: nothing is left once both let go.
    await held.release();
    await locker.close();
    assert.deepEqual(await listKeys([etcd.endpoint], `${prefix}/`), []);
  });

  it("with etcd3's default fault handling, the refused attempt costs the held lock (why lockFaultHandling exists)", async (t) => {
    const etcd = await smallEtcd(t);
    const client = new Etcd3({ hosts: etcd.endpoint });
    t.after(() => client.close());
    const prefix = uniquePrefix('nospace-default');
    const held = record((onRelease) => lock$(client, `${prefix}/stream`, { ttl: TTL, onRelease }));
    await held.next('held');

    await etcd.fill();
    const refused = record(() => lock$(client, `${prefix}/refused`, { ttl: TTL }));
    assertOutOfSpace(await refused.failed());

    const lost = await held.next('lost', 10_000);
    assert.equal(lost.kind === 'lost' && lost.reason, 'expired');
    await held.released();
  });
});
