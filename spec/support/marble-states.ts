/**
 * Lock states for marble tests of what consumes `lock$`: `a` acquiring, `h` held (token 7), `r` refreshed, `l`
 * lost (deleted), on the lock `/k` held by `me`; `lostError` is what a stream errors with after `l`.
 */
import assert from 'node:assert/strict';
import { TestScheduler } from 'rxjs/testing';
import { LockLostError } from '../../lib/errors.js';
import type { LockState } from '../../lib/state.js';

export const lostError = new LockLostError('/k', 'deleted', 'our key was deleted');

const base = { key: '/k', id: 'me' };

export const states: Record<'a' | 'h' | 'r' | 'l', LockState> = {
  a: { kind: 'acquiring', ...base },
  h: { kind: 'held', ...base, fencingToken: '7', leaseId: 'abc', holderKey: '/k/abc' },
  r: { kind: 'refreshed', ...base, fencingToken: '7', ttl: 5 },
  l: { kind: 'lost', ...base, fencingToken: '7', reason: 'deleted', error: lostError },
};

/** A TestScheduler that compares frames with assert.deepEqual. */
export function scheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));
}
