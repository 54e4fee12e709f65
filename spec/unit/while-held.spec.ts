import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Observable } from 'rxjs';
import { NotHeldError } from '../../lib/errors.js';
import type { LockState } from '../../lib/state.js';
import { type LockGrant, whileHeld } from '../../lib/while-held.js';
import { lostError, scheduler, states } from '../support/marble-states.js';

/** A work factory that records each grant it was given and returns `work$`. */
function recording<T>(work$: Observable<T>) {
  const grants: LockGrant[] = [];
  return {
    grants,
    work: (grant: LockGrant) => {
      grants.push(grant);
      return work$;
    },
  };
}

describe('whileHeld (virtual time)', () => {
  it('starts the work once, when the lock is first held, and emits what it emits; refreshes do not restart it', () => {
    const ts = scheduler();
    ts.run(({ cold, hot, expectObservable, expectSubscriptions, flush }) => {
      const lock$ = hot<LockState>('a-h-r-r-r', states);
      const work$ = cold('-x-y', { x: 1, y: 2 });
      const { grants, work } = recording(work$);
      expectObservable(lock$.pipe(whileHeld(work)), '^-------!').toBe('---x-y', { x: 1, y: 2 });
      expectSubscriptions(work$.subscriptions).toBe('--^-----!');
      flush();
      assert.equal(grants.length, 1);
      const { signal, ...grant } = grants[0]!;
      assert.deepEqual(grant, { key: '/k', id: 'me', fencingToken: '7', leaseId: 'abc', holderKey: '/k/abc' });
      assert.equal(signal.aborted, true, 'aborted once we let go at frame 8');
    });
  });

  it('on loss: aborts the signal with the LockLostError, tears the work down, and errors with it', () => {
    const ts = scheduler();
    ts.run(({ cold, hot, expectObservable, expectSubscriptions, flush }) => {
      const lock$ = hot<LockState>('a-h---(l#)', states, lostError);
      const work$ = cold('-x------', { x: 1 });
      const { grants, work } = recording(work$);
      expectObservable(lock$.pipe(whileHeld(work))).toBe('---x--#', { x: 1 }, lostError);
      expectSubscriptions(work$.subscriptions).toBe('--^---!');
      flush();
      assert.equal(grants[0]?.signal.aborted, true);
      assert.equal(grants[0]?.signal.reason, lostError);
    });
  });

  it('unsubscribing releases the lock and tears the work down; the signal aborts with NotHeldError', () => {
    const ts = scheduler();
    ts.run(({ cold, hot, expectObservable, expectSubscriptions, flush }) => {
      const lock$ = hot<LockState>('a-h-r-r', states);
      const work$ = cold('-x---', { x: 1 });
      const { grants, work } = recording(work$);
      expectObservable(lock$.pipe(whileHeld(work)), '^----!').toBe('---x-', { x: 1 });
      expectSubscriptions(lock$.subscriptions).toBe('^----!');
      expectSubscriptions(work$.subscriptions).toBe('--^--!');
      flush();
      assert.ok(grants[0]?.signal.reason instanceof NotHeldError);
    });
  });

  it('when the work completes, the result completes and lets go of the lock', () => {
    const ts = scheduler();
    ts.run(({ cold, hot, expectObservable, expectSubscriptions }) => {
      const lock$ = hot<LockState>('a-h-r-r-r', states);
      const work$ = cold('-x|', { x: 1 });
      expectObservable(lock$.pipe(whileHeld(() => work$))).toBe('---x|', { x: 1 });
      expectSubscriptions(lock$.subscriptions).toBe('^---!');
    });
  });

  it('when the work errors (or its factory throws), the result errors with it and lets go of the lock', () => {
    const ts = scheduler();
    const boom = new Error('boom');
    ts.run(({ cold, hot, expectObservable, expectSubscriptions }) => {
      const lock$ = hot<LockState>('a-h-r-r', states);
      expectObservable(lock$.pipe(whileHeld(() => cold('-#', undefined, boom)))).toBe('---#', undefined, boom);
      const thrower = () => {
        throw boom;
      };
      expectObservable(lock$.pipe(whileHeld(thrower))).toBe('--#', undefined, boom);
      expectSubscriptions(lock$.subscriptions).toBe(['^--!', '^-!']);
    });
  });

  it('never starts the work if acquiring fails', () => {
    const ts = scheduler();
    const busy = new Error('busy');
    ts.run(({ cold, hot, expectObservable, expectSubscriptions }) => {
      const lock$ = hot<LockState>('a-#', states, busy);
      const work$ = cold('x');
      expectObservable(lock$.pipe(whileHeld(() => work$))).toBe('--#', undefined, busy);
      expectSubscriptions(work$.subscriptions).toBe([]);
    });
  });

  it('throws at once when work is not a function', () => {
    assert.throws(() => whileHeld(42 as unknown as () => Observable<never>), /`work` to be a function, got 42/);
  });
});
