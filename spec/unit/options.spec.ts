import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import type { Observable, SchedulerLike } from 'rxjs';
import { InvalidArgumentError, isLockError } from '../../lib/errors.js';
import { lock$ } from '../../lib/lock-stream.js';
import { lossMarginMs, MAX_TTL_SECONDS, resolveLockOptions } from '../../lib/options.js';
import { Lock } from '../../lib/facade.js';

/** A client that fails the test if anything reaches the network. */
function untouchableClient(): Etcd3 {
  const fail = () => assert.fail('a network call was made before validation');
  return {
    kv: { txn: fail },
    leaseClient: { leaseGrant: fail },
    watch: fail,
  } as unknown as Etcd3;
}

const badInputs: Array<[string, () => unknown, RegExp]> = [
  ['empty key', () => resolveLockOptions(''), /`key`.*non-empty string, got ""/],
  ['non-string key', () => resolveLockOptions(42), /`key`.*got 42/],
  ['missing key', () => resolveLockOptions(undefined), /`key`.*got undefined/],
  ['ttl 0', () => resolveLockOptions('/k', { ttl: 0 }), /`ttl`.*>= 1, got 0/],
  ['negative ttl', () => resolveLockOptions('/k', { ttl: -5 }), /`ttl`.*got -5/],
  ['NaN ttl', () => resolveLockOptions('/k', { ttl: NaN }), /`ttl`.*got NaN/],
  ['fractional ttl', () => resolveLockOptions('/k', { ttl: 1.5 }), /`ttl`.*whole number.*got 1.5/],
  ['huge ttl', () => resolveLockOptions('/k', { ttl: 1e12 }), /`ttl`.*at most \d+ seconds.*got 1000000000000/],
  ['string ttl', () => resolveLockOptions('/k', { ttl: '60' as unknown as number }), /`ttl`.*got "60"/],
  ['refreshInterval 0', () => resolveLockOptions('/k', { refreshInterval: 0 }), /`refreshInterval`.*> 0, got 0/],
  ['negative refreshInterval', () => resolveLockOptions('/k', { refreshInterval: -1 }), /`refreshInterval`.*got -1/],
  [
    'refreshInterval equal to the TTL',
    () => resolveLockOptions('/k', { ttl: 10, refreshInterval: 10_000 }),
    /`refreshInterval`.*below the TTL \(10000 ms\), got 10000/,
  ],
  ['empty id', () => resolveLockOptions('/k', { id: '' }), /`id`.*non-empty string, got ""/],
  ['negative timeout', () => resolveLockOptions('/k', { timeout: -1 }), /`timeout`.*>= 0, got -1/],
  [
    'non-boolean wait',
    () => resolveLockOptions('/k', { wait: 'no' as unknown as boolean }),
    /`wait`.*boolean, got "no"/,
  ],
  ['limit 0', () => resolveLockOptions('/k', { limit: 0 }), /`limit`.*whole number >= 1, got 0/],
  ['negative limit', () => resolveLockOptions('/k', { limit: -2 }), /`limit`.*got -2/],
  ['fractional limit', () => resolveLockOptions('/k', { limit: 2.5 }), /`limit`.*whole number.*got 2.5/],
  ['NaN limit', () => resolveLockOptions('/k', { limit: NaN }), /`limit`.*got NaN/],
  ['infinite limit', () => resolveLockOptions('/k', { limit: Infinity }), /`limit`.*got Infinity/],
  ['string limit', () => resolveLockOptions('/k', { limit: '3' as unknown as number }), /`limit`.*got "3"/],
  ['unknown option', () => resolveLockOptions('/k', { tll: 5 } as never), /Unknown option `tll`/],
  ['bad signal', () => resolveLockOptions('/k', { signal: {} as AbortSignal }), /`signal`.*AbortSignal/],
  [
    'bad refresh$',
    () => resolveLockOptions('/k', { refresh$: 'now' as unknown as Observable<void> }),
    /`refresh\$`.*Observable, got "now"/,
  ],
  ['bad scheduler', () => resolveLockOptions('/k', { scheduler: {} as SchedulerLike }), /`scheduler`.*SchedulerLike/],
  [
    'bad releaseAfter',
    () => resolveLockOptions('/k', { releaseAfter: 5 as unknown as Promise<void> }),
    /`releaseAfter`.*promise, got 5/,
  ],
];

describe('option validation', () => {
  for (const [name, call, message] of badInputs) {
    it(`rejects ${name} with ETCDLOCK_INVALID_ARGUMENT naming the value`, () => {
      assert.throws(call, (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.equal(err.code, 'ETCDLOCK_INVALID_ARGUMENT');
        assert.match(err.message, message);
        return true;
      });
    });
  }

  it('fills in the 1.x defaults: ttl 60 s, refresh every ttl/2, id = host name, wait', () => {
    const o = resolveLockOptions('/jobs/a');
    assert.equal(o.ttlSeconds, 60);
    assert.equal(o.refreshIntervalMs, 30_000);
    assert.equal(o.id, hostname());
    assert.equal(o.wait, true);
    assert.equal(o.prefix, '/jobs/a/');
    assert.equal(resolveLockOptions('/k', { ttl: 7 }).refreshIntervalMs, 3500);
  });

  it('limit: 1 (a lock) unless given, any whole number >= 1 otherwise', () => {
    assert.equal(resolveLockOptions('/k').limit, 1);
    assert.equal(resolveLockOptions('/k', { limit: 1 }).limit, 1);
    assert.equal(resolveLockOptions('/k', { limit: 3 }).limit, 3);
    assert.throws(() => lock$(untouchableClient(), '/k', { limit: 0 }), /`limit`/);
  });

  it('treats timeout 0 as try-once (wait: false), as flock -w 0 does', () => {
    assert.equal(resolveLockOptions('/k', { timeout: 0 }).wait, false);
    assert.equal(resolveLockOptions('/k', { timeout: 1 }).wait, true);
  });

  it('an already-aborted signal: errors with its reason, calls onRelease once, never touches etcd', async () => {
    const untouchable = {
      kv: { txn: () => fail() },
      leaseClient: { leaseGrant: () => fail() },
      watch: () => fail(),
    } as unknown as Etcd3;
    function fail(): never {
      throw new Error('etcd was called');
    }
    const reason = new Error('stop');
    const releases: Promise<void>[] = [];
    const subscription = lock$(untouchable, '/k', {
      signal: AbortSignal.abort(reason),
      onRelease: (released) => releases.push(released),
    });
    const error = await new Promise((resolve) => subscription.subscribe({ error: resolve }));
    assert.equal(error, reason);
    assert.equal(releases.length, 1);
    await releases[0];
  });

  it('accepts the longest TTL a Node timer can hold, and no more', () => {
    assert.equal(resolveLockOptions('/k', { ttl: MAX_TTL_SECONDS }).ttlSeconds, MAX_TTL_SECONDS);
    assert.throws(() => resolveLockOptions('/k', { ttl: MAX_TTL_SECONDS + 1 }), InvalidArgumentError);
  });

  it('keeps the loss margin a quarter of the TTL, but inside the time the next keepalive needs', () => {
    assert.equal(lossMarginMs(60, 30_000), 15_000);
    assert.equal(lossMarginMs(2, 1000), 500);
    assert.equal(lossMarginMs(2, 1800), 100);
  });

  it('lock$ throws before touching etcd, for a bad key, option or client', () => {
    const client = untouchableClient();
    assert.throws(() => lock$(client, '', {}), /`key`/);
    assert.throws(() => lock$(client, '/k', { ttl: 0 }), /`ttl`/);
    assert.throws(() => lock$({} as Etcd3, '/k'), /`client`.*etcd3/);
    assert.throws(() => lock$(null as unknown as Etcd3, '/k'), /`client`.*got null/);
  });

  it('new Lock() throws at once, naming the missing or invalid argument', () => {
    const client = untouchableClient();
    assert.throws(() => new Lock(undefined as unknown as Etcd3, '/k', 'id', 5), /`etcd` to be an etcd3 Etcd3 client/);
    assert.throws(() => new Lock(client, undefined as unknown as string, 'id', 5), /`key`/);
    assert.throws(() => new Lock(client, '/k', undefined as unknown as string, 5), /`id`/);
    assert.throws(() => new Lock(client, '/k', 'id', 0), /`ttl`/);
    const lock = new Lock(client, '/k', 'id', 5);
    assert.throws(() => (lock.ttl = 2.5), /`ttl`.*2.5/);
    assert.throws(() => (lock.refreshInterval = 0), /`refreshInterval`/);
    assert.equal(lock.refreshInterval, 2500);
    lock.ttl = 10;
    assert.equal(lock.refreshInterval, 5000, 'refreshInterval follows ttl until set');
    assert.equal(lock.limit, 1, 'a lock unless limit is set');
    assert.throws(() => (lock.limit = 0), /`limit`.*got 0/);
    assert.throws(() => (lock.limit = 1.5), /`limit`.*got 1.5/);
    lock.limit = 4;
    assert.equal(lock.limit, 4);
  });

  it('lock() rejects before touching etcd when refreshInterval does not fit the TTL', async () => {
    const lock = new Lock(untouchableClient(), '/k', 'id', 10);
    lock.refreshInterval = 9000;
    lock.ttl = 5;
    await assert.rejects(
      lock.lock(),
      (err: unknown) => isLockError(err) && /refreshInterval.*below the TTL/.test(err.message),
    );
  });
});
