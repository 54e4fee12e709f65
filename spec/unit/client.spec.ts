import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GRPCCancelledError, GRPCUnavailableError } from 'etcd3';
import { hostPolicy } from '../../cli/client.js';

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

describe("etcdlocker's host policy", () => {
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
});
