import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { RollbackCheck } from '../../lib/store-rollback.js';

/** A client whose linearizable read answers at `revision` (or fails), counting the reads. */
function clientAt(revision: string | Error) {
  const client = {
    reads: 0,
    kv: {
      range: () => {
        client.reads++;
        return revision instanceof Error ? Promise.reject(revision) : Promise.resolve({ header: { revision } });
      },
    },
  };
  return client;
}

describe('RollbackCheck (etcd restored from an older snapshot)', () => {
  it('asks etcd nothing while keepalive answers do not fall below what was reached', () => {
    const client = clientAt('1');
    const check = new RollbackCheck(client as unknown as Etcd3);
    check.reached('10');
    assert.equal(check.below('10'), false);
    assert.equal(check.below('12'), false);
    assert.equal(check.below('11'), true, 'below the 12 the last answer reached');
    assert.equal(client.reads, 0);
  });

  it('a lower answer from a member that lags: the linearizable read is not below, so nothing went back', async () => {
    const check = new RollbackCheck(clientAt('15') as unknown as Etcd3);
    check.reached('12');
    assert.equal(check.below('9'), true);
    assert.equal(await check.confirm(), undefined);
  });

  it('a store that went back: the read is below too, and says where etcd is now', async () => {
    const check = new RollbackCheck(clientAt('7') as unknown as Etcd3);
    check.reached('12');
    assert.equal(check.below('7'), true);
    assert.equal(await check.confirm(), 7n);
    assert.equal(check.below('8'), false, 'the new history is measured from where the store went back to');
  });

  it('a read that fails says nothing, and the next low answer asks again', async () => {
    const client = clientAt(new Error('unavailable'));
    const check = new RollbackCheck(client as unknown as Etcd3);
    check.reached('12');
    assert.equal(check.below('7'), true);
    assert.equal(await check.confirm(), undefined);
    assert.equal(check.below('7'), true, 'still below: not recorded as reached');
    assert.equal(client.reads, 1);
  });
});
