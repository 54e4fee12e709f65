import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { InvalidArgumentError, isLockError } from '../../lib/errors.js';
import { createLocker } from '../../lib/locker.js';
import { resolveLockerLockOptions, resolveLockerOptions, validateLockId } from '../../lib/locker-options.js';

/** A client that fails the test if anything reaches the network. */
function untouchableClient(): Etcd3 {
  const fail = () => assert.fail('a network call was made before validation');
  return { kv: { txn: fail }, leaseClient: { leaseGrant: fail }, watch: fail } as unknown as Etcd3;
}

describe('createLocker options', () => {
  it('fills in the defaults: TTL 60 s, refresh at half of it, the host name, 10 retries 30 s apart', () => {
    assert.deepEqual(resolveLockerOptions({ name: '/writers' }), {
      name: '/writers',
      ttlSeconds: 60,
      refreshIntervalMs: 30_000,
      holderId: hostname(),
      maxRetries: 10,
      retryIntervalMs: 30_000,
    });
    const custom = resolveLockerOptions({ name: '/w', ttl: 15, holderId: 'w1', maxRetries: 0, retryInterval: 0.5 });
    assert.equal(custom.refreshIntervalMs, 7500);
    assert.equal(custom.retryIntervalMs, 500);
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['no options', undefined, /`options` to be an object with a `name`, got undefined/],
    ['no name', {}, /`name` to be a non-empty string, got undefined/],
    ['empty name', { name: '' }, /`name` to be a non-empty string, got ""/],
    ['a name ending in /', { name: '/writers/' }, /`name` not to end with "\/".*got "\/writers\/"/],
    ['ttl 0', { name: '/w', ttl: 0 }, /`ttl`.*>= 1, got 0/],
    ['refreshInterval above the TTL', { name: '/w', ttl: 1, refreshInterval: 1000 }, /`refreshInterval`.*below/],
    ['empty holderId', { name: '/w', holderId: '' }, /`holderId` to be a non-empty string, got ""/],
    ['negative maxRetries', { name: '/w', maxRetries: -1 }, /`maxRetries` to be a whole number >= 0, got -1/],
    ['fractional maxRetries', { name: '/w', maxRetries: 1.5 }, /`maxRetries`.*got 1.5/],
    [
      'NaN retryInterval',
      { name: '/w', retryInterval: NaN },
      /`retryInterval` to be a number of seconds >= 0, got NaN/,
    ],
    ['retryInterval in ms by mistake', { name: '/w', retryInterval: 3e6 }, /`retryInterval` to be at most \d+ seconds/],
    ['an unknown option', { name: '/w', tll: 5 }, /Unknown option `tll`/],
  ];
  for (const [what, options, message] of bad) {
    it(`rejects ${what} at once, naming it, before any network call`, () => {
      assert.throws(
        () => createLocker(untouchableClient(), options as never),
        (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message),
      );
    });
  }

  it('rejects a client that is not an etcd3 client', () => {
    assert.throws(() => createLocker({} as Etcd3, { name: '/w' }), /`client` to be an etcd3 Etcd3 client/);
  });
});

describe('lock(id) arguments', () => {
  it('takes a non-empty string without "/" or a finite number, as a string', () => {
    assert.equal(validateLockId('abc'), 'abc');
    assert.equal(validateLockId(123), '123');
    for (const [id, message] of [
      ['', /non-empty string or a finite number, got ""/],
      ['a/b', /not to contain "\/".*got "a\/b"/],
      [NaN, /got NaN/],
      [null, /got null/],
    ] as const) {
      assert.throws(
        () => validateLockId(id),
        (err: unknown) => isLockError(err) && err.code === 'ETCDLOCK_INVALID_ARGUMENT' && message.test(err.message),
      );
    }
  });

  it('does not wait by default; a timeout above 0 waits, timeout 0 tries once', () => {
    assert.deepEqual(resolveLockerLockOptions(undefined), { wait: false, timeoutMs: undefined, signal: undefined });
    assert.equal(resolveLockerLockOptions({ timeout: 500 }).wait, true);
    assert.equal(resolveLockerLockOptions({ timeout: 500, wait: false }).wait, false);
    assert.deepEqual(resolveLockerLockOptions({ timeout: 0, wait: true }), {
      wait: false,
      timeoutMs: undefined,
      signal: undefined,
    });
    assert.throws(() => resolveLockerLockOptions({ timeout: -1 }), /`timeout`.*>= 0, got -1/);
    assert.throws(() => resolveLockerLockOptions({ wait: 'yes' }), /`wait` to be a boolean, got "yes"/);
    assert.throws(() => resolveLockerLockOptions({ signal: {} }), /`signal` to be an AbortSignal/);
    assert.throws(() => resolveLockerLockOptions({ ttl: 5 }), /Unknown option `ttl`/);
  });
});
