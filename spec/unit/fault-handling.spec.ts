import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GRPCCancelledError, GRPCResourceExhastedError, GRPCUnavailableError, isRecoverableError } from 'etcd3';
import { EtcdRefusedError, hostPolicy, lockFaultHandling } from '../../lib/fault-handling.js';

/** Runs `outcome` through the policy as etcd3 would, and says whether the call reached the host. */
async function attempt(policy: ReturnType<typeof hostPolicy>, outcome: () => unknown): Promise<'reached' | 'skipped'> {
  let reached = false;
  await policy
    .execute(() => {
      reached = true;
      return outcome();
    })
    .catch(() => undefined);
  return reached ? 'reached' : 'skipped';
}

describe('the host policy of lockFaultHandling()', () => {
  it('passes over a host for a moment after it was unavailable', async () => {
    const policy = hostPolicy();
    assert.equal(await attempt(policy, () => Promise.reject(new GRPCUnavailableError('14 UNAVAILABLE'))), 'reached');
    assert.equal(await attempt(policy, () => 'ok'), 'skipped');
  });

  it('does not count a cancelled stream (ours, or one etcd3 cancelled) against its host', async () => {
    const policy = hostPolicy();
    assert.equal(await attempt(policy, () => Promise.reject(new GRPCCancelledError('1 CANCELLED'))), 'reached');
    assert.equal(await attempt(policy, () => 'ok'), 'reached');
  });

  it('passes a refusal by etcd (RESOURCE_EXHAUSTED) on as EtcdRefusedError, not recoverable, and keeps using the host', async () => {
    const policy = hostPolicy();
    const refusal = new GRPCResourceExhastedError('8 RESOURCE_EXHAUSTED: etcdserver: mvcc: database space exceeded');
    const err: unknown = await policy.execute(() => Promise.reject(refusal)).catch((e: unknown) => e);
    assert.ok(err instanceof EtcdRefusedError);
    assert.equal(err.message, refusal.message);
    assert.equal(err.cause, refusal);
    assert.equal(isRecoverableError(err), false, 'etcd3 neither resets the connections nor retries it');
    assert.equal(await attempt(policy, () => 'ok'), 'reached');
  });
});

describe('the retries of lockFaultHandling()', () => {
  /** How many times the global policy runs a call that always fails with `err`. */
  async function tries(hosts: string | string[], err: Error): Promise<number> {
    let calls = 0;
    const failing = () => {
      calls++;
      return Promise.reject(err);
    };
    await lockFaultHandling(hosts)
      .global!.execute(failing)
      .catch(() => undefined);
    return calls;
  }

  it('tries a call that failed recoverably once more per endpoint, and a refusal only once', async () => {
    assert.equal(await tries('127.0.0.1:2379', new GRPCUnavailableError('14 UNAVAILABLE')), 2);
    assert.equal(await tries(['a:2379', 'b:2379', 'c:2379'], new GRPCUnavailableError('14 UNAVAILABLE')), 4);
    assert.equal(await tries(['a:2379', 'b:2379'], new EtcdRefusedError(new Error('database space exceeded'))), 1);
  });
});
