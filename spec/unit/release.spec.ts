import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Etcd3, EtcdPermissionDeniedError, GRPCUnavailableError } from 'etcd3';
import { release } from '../../lib/mutex.js';

/** A client whose transactions answer with `outcomes` in turn (an Error rejects), counting them. */
function clientAnswering(...outcomes: Array<Error | 'ok'>) {
  const client = {
    calls: 0,
    kv: {
      txn: () => {
        const outcome = outcomes[Math.min(client.calls++, outcomes.length - 1)];
        return outcome instanceof Error ? Promise.reject(outcome) : Promise.resolve({ succeeded: true, responses: [] });
      },
    },
  };
  return client;
}

const ticket = { holderKey: '/locks/x/694d', fencingToken: '7' };
const unavailable = () => new GRPCUnavailableError('14 UNAVAILABLE: connection refused');

describe("release(): a locker's delete on its long-lived lease", () => {
  it('is tried again after a failure while asked to, until it goes through', async () => {
    const client = clientAnswering(unavailable(), unavailable(), 'ok');
    await release(client as unknown as Etcd3, ticket, () => true);
    assert.equal(client.calls, 3);
  });

  it('is tried once when not asked to retry (a lease of its own ends the key)', async () => {
    const client = clientAnswering(unavailable(), 'ok');
    await release(client as unknown as Etcd3, ticket);
    assert.equal(client.calls, 1);
  });

  it('stops once the session has ended', async () => {
    const client = clientAnswering(unavailable());
    let live = true;
    const released = release(client as unknown as Etcd3, ticket, () => live);
    live = false;
    await released;
    assert.equal(client.calls, 1);
  });

  it('is not tried again when etcd says our user may not delete: no retry could help, and it resolves', async () => {
    const client = clientAnswering(new EtcdPermissionDeniedError('etcdserver: permission denied'), 'ok');
    await release(client as unknown as Etcd3, ticket, () => true);
    assert.equal(client.calls, 1);
  });
});
