import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  InvalidArgumentError,
  isLockError,
  LockBusyError,
  LockError,
  LockLostError,
  LockTimeoutError,
  NotHeldError,
  UnavailableError,
} from '../../lib/errors.js';

describe('errors', () => {
  it('every error has a code, a real name, and is a LockError', () => {
    const cases: Array<[LockError, string, string]> = [
      [new LockLostError('/k', 'deleted', 'gone'), 'ETCDLOCK_LOST', 'LockLostError'],
      [new NotHeldError('/k'), 'ETCDLOCK_NOT_HELD', 'NotHeldError'],
      [new LockBusyError('/k', { id: 'a', fencingToken: '7' }), 'ETCDLOCK_BUSY', 'LockBusyError'],
      [new LockTimeoutError('/k', 50), 'ETCDLOCK_TIMEOUT', 'LockTimeoutError'],
      [new InvalidArgumentError('bad'), 'ETCDLOCK_INVALID_ARGUMENT', 'InvalidArgumentError'],
      [new UnavailableError('no etcd', new Error('ECONNREFUSED')), 'ETCDLOCK_UNAVAILABLE', 'UnavailableError'],
    ];
    for (const [err, code, name] of cases) {
      assert.equal(err.code, code);
      assert.equal(err.name, name);
      assert.ok(err instanceof LockError && err instanceof Error);
      assert.ok(isLockError(err));
    }
  });

  it('says who holds a busy lock and keeps the cause of an unavailable etcd', () => {
    assert.match(new LockBusyError('/k', { id: 'web-1', fencingToken: '7' }).message, /"web-1".*fencing token 7/);
    const cause = new Error('connect ECONNREFUSED');
    const err = new UnavailableError('Could not grant a lease', cause);
    assert.equal(err.cause, cause);
    assert.match(err.message, /ECONNREFUSED/);
  });

  it('isLockError recognises an error from another copy of the package by its brand', () => {
    const foreign = Object.assign(new Error('x'), { code: 'ETCDLOCK_BUSY', [Symbol.for('etcd-lock.LockError')]: true });
    assert.equal(isLockError(foreign), true);
    assert.equal(isLockError(new Error('x')), false);
    assert.equal(isLockError(Object.assign(new Error('x'), { code: 'ETCDLOCK_BUSY' })), false);
    assert.equal(isLockError(null), false);
  });
});
