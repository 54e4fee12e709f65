import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { lock$ } from '../../lib/lock-stream.js';
import { LockLostError } from '../../lib/errors.js';
import type { HeldState } from '../../lib/state.js';
import { etcdForSuite, etcdctl, listKeys, uniquePrefix } from '../support/etcd.js';
import { startProxy, type TcpProxy } from '../support/proxy.js';
import { until } from '../support/poll.js';
import { record } from '../support/recorder.js';

/**
 * Property 2 of the protocol: a holder cut off from etcd learns of the loss before its lease can
 * expire. The client talks to etcd through a TCP proxy that we pause (connections hang) or cut
 * (connections reset); etcd itself stays up, so we can ask it whether the lease still lived at the
 * moment the holder gave up.
 */
describe('loss detected locally when etcd cannot be reached', () => {
  const etcd = etcdForSuite();

  for (const fault of ['pause', 'cut'] as const) {
    it(`reports lost (expired) before the lease can expire when the connection is ${fault === 'pause' ? 'paused (hangs)' : 'cut (resets)'}`, async () => {
      const proxy: TcpProxy = await startProxy(etcd.endpoints[0]!);
      const client = new Etcd3({ hosts: proxy.endpoint });
      const key = `${uniquePrefix('loss')}/${fault}`;
      const ttl = 3;
      try {
        const a = record((onRelease) => lock$(client, key, { ttl, onRelease }));
        const held = (await a.next('held')) as HeldState;
        await a.next('refreshed', 10_000);
        const lastAck = a.states.filter((s) => s.kind === 'refreshed').at(-1)!;
        if (fault === 'pause') proxy.pause();
        else proxy.cut();
        const lost = await a.next('lost', 10_000);
        // Ask etcd directly, now: the lease must still be alive, i.e. we gave up before it could expire.
        const ttlLeft = await etcd.client.leaseClient.leaseTimeToLive({ ID: BigInt(`0x${held.leaseId}`).toString() });
        assert.equal(lost.kind === 'lost' && lost.reason, 'expired');
        // etcd answers -1 for a lease that expired (or never was), else the whole seconds left (0 = under 1 s).
        assert.ok(Number(ttlLeft.TTL) >= 0, `the lease was still alive on etcd (TTL answer ${ttlLeft.TTL})`);
        assert.ok(lost.at - lastAck.at < ttl * 1000, `lost ${Math.round(lost.at - lastAck.at)} ms after the last ack`);
        const err = await a.failed();
        assert.ok(err instanceof LockLostError && err.reason === 'expired');
        // Heal: the release (revoke) gets through, and nothing is left.
        if (fault === 'pause') proxy.resume();
        else proxy.heal();
        await a.released();
        assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
      } finally {
        client.close();
        await proxy.close();
      }
    });
  }

  it('a waiter cut off while queued fails (expired) before its lease can expire, and is never told it holds', async () => {
    const proxy = await startProxy(etcd.endpoints[0]!);
    const client = new Etcd3({ hosts: proxy.endpoint });
    const key = `${uniquePrefix('loss')}/queued-paused`;
    try {
      const holder = record((onRelease) => lock$(etcd.client, key, { id: 'holder', ttl: 10, onRelease }));
      const held = (await holder.next('held')) as HeldState;
      const waiter = record((onRelease) => lock$(client, key, { id: 'waiter', ttl: 3, onRelease }));
      await until(() => waiter.states.some((s) => s.kind === 'acquiring' && s.waitingFor), 'queued behind the holder');
      const waiterKey = (await listKeys(etcd.endpoints, `${key}/`)).find((k) => k !== held.holderKey);
      assert.ok(waiterKey, 'the waiter key');

      proxy.pause();
      const err = await waiter.failed(10_000);
      // Ask etcd directly, now: the waiter's lease must still be alive, i.e. it gave up before the lease could expire.
      const leaseHex = waiterKey.slice(waiterKey.lastIndexOf('/') + 1);
      const ttlLeft = await etcd.client.leaseClient.leaseTimeToLive({ ID: BigInt(`0x${leaseHex}`).toString() });
      assert.ok(Number(ttlLeft.TTL) >= 0, `the lease was still alive on etcd (TTL answer ${ttlLeft.TTL})`);
      assert.ok(err instanceof LockLostError, String(err));
      assert.equal(err.reason, 'expired');
      // The holder lets go while the waiter is still cut off: the waiter must not hold it, even once it is back.
      await holder.release();
      proxy.resume();
      await waiter.released();
      assert.ok(!waiter.states.some((s) => s.kind === 'held'), 'never told it holds');
      assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), [], 'its queued key is gone');
    } finally {
      client.close();
      await proxy.close();
    }
  });

  it('a release that fails at first (connections reset) is retried, and reaches etcd once it can', async () => {
    const proxy = await startProxy(etcd.endpoints[0]!);
    const client = new Etcd3({ hosts: proxy.endpoint });
    const key = `${uniquePrefix('loss')}/release-retried`;
    try {
      // A long TTL: if the revoke were given up, the key would stay for 30 s.
      const a = record((onRelease) => lock$(client, key, { ttl: 30, onRelease }));
      const held = (await a.next('held')) as HeldState;
      proxy.cut();
      a.subscription.unsubscribe(); // the first revoke fails at once: the connection is reset
      setTimeout(() => proxy.heal(), 300);
      await a.released();
      assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), [], 'our key is gone, long before its TTL');
      const left = await etcd.client.leaseClient.leaseTimeToLive({ ID: BigInt(`0x${held.leaseId}`).toString() });
      assert.equal(Number(left.TTL), -1, 'the lease is revoked');
    } finally {
      client.close();
      await proxy.close();
    }
  });

  it('a holder whose lease is revoked while it is cut off still reports the loss in time', async () => {
    const proxy = await startProxy(etcd.endpoints[0]!);
    const client = new Etcd3({ hosts: proxy.endpoint });
    const key = `${uniquePrefix('loss')}/revoked-while-cut`;
    try {
      const a = record((onRelease) => lock$(client, key, { ttl: 3, onRelease }));
      const held = (await a.next('held')) as HeldState;
      proxy.pause();
      assert.equal((await etcdctl(etcd.endpoints, ['lease', 'revoke', held.leaseId])).code, 0);
      const lost = await a.next('lost', 10_000);
      assert.equal(lost.kind === 'lost' && lost.reason, 'expired');
      proxy.resume();
      await a.released();
      assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
    } finally {
      client.close();
      await proxy.close();
    }
  });

  it('a client closed under a held lock$: lost at its next keepalive, saying so, and the release does not linger', async () => {
    const client = new Etcd3({ hosts: etcd.endpoints });
    const key = `${uniquePrefix('loss')}/client-closed`;
    // Keepalives every 300 ms, the deadline 2.5 s after the last answer: the loss must come from the keepalive.
    const a = record((onRelease) => lock$(client, key, { ttl: 10, refreshInterval: 300, onRelease }));
    const held = (await a.next('held')) as HeldState;
    client.close();
    const lost = await a.next('lost');
    assert.ok(lost.kind === 'lost' && lost.reason === 'expired');
    assert.match(lost.error.message, /its etcd3 client was closed/);
    // The revoke cannot go through a closed client: it gives up at once instead of retrying for 10 s.
    await a.released();
    assert.equal((await etcdctl(etcd.endpoints, ['lease', 'revoke', held.leaseId])).code, 0, 'the lease was left');
  });
});
