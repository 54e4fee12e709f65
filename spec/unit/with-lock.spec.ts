import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NotHeldError } from '../../lib/errors.js';
import type { LockState } from '../../lib/state.js';
import type { LockGrant } from '../../lib/while-held.js';
import { runUnderLock } from '../../lib/with-lock.js';
import { lostError, scheduler, states } from '../support/marble-states.js';

/** A promise the test settles by hand, to play a long-running fn. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** Settles pending promise callbacks (fn's outcome, the release). */
const microtasks = () => new Promise<void>((resolve) => setImmediate(resolve));

/** How a promise ended, without throwing. */
function outcome<T>(promise: Promise<T>) {
  const state: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  promise.then(
    (value) => Object.assign(state, { settled: true, value }),
    (error: unknown) => Object.assign(state, { settled: true, error }),
  );
  return state;
}

describe('withLock (virtual time for the lock, real promises for fn)', () => {
  it('runs fn at the first held with the grant, releases once it settles, then resolves with its value', async () => {
    const ts = scheduler();
    const fnDone = deferred<string>();
    const grants: LockGrant[] = [];
    let result!: ReturnType<typeof outcome<string>>;
    ts.run(({ cold, expectSubscriptions, flush }) => {
      const lock$ = cold<LockState>('a-h-r-r-r-r', states);
      result = outcome(
        runUnderLock(
          lock$,
          (grant) => {
            grants.push(grant);
            return fnDone.promise;
          },
          () => Promise.resolve(),
        ),
      );
      flush();
      // fn runs once, at the held state; refreshes do not start it again; the lock is still held.
      assert.equal(grants.length, 1);
      assert.equal(grants[0]?.fencingToken, '7');
      assert.equal(grants[0]?.signal.aborted, false);
      expectSubscriptions(lock$.subscriptions).toBe('^');
    });
    assert.equal(result.settled, false, 'not before fn settles');
    fnDone.resolve('done');
    await microtasks();
    assert.deepEqual(result, { settled: true, value: 'done' });
    assert.ok(grants[0]?.signal.reason instanceof NotHeldError, 'the signal says the lock is released');
  });

  it('on loss: aborts the signal at once, waits for fn to settle, then rejects with the LockLostError', async () => {
    const ts = scheduler();
    const fnDone = deferred<string>();
    let grant: LockGrant | undefined;
    let result!: ReturnType<typeof outcome<string>>;
    ts.run(({ cold, flush }) => {
      const lock$ = cold<LockState>('a-h---(l#)', states, lostError);
      result = outcome(
        runUnderLock(
          lock$,
          (g) => {
            grant = g;
            return fnDone.promise;
          },
          () => Promise.resolve(),
        ),
      );
      flush();
    });
    assert.equal(grant?.signal.aborted, true);
    assert.equal(grant?.signal.reason, lostError);
    await microtasks();
    assert.equal(result.settled, false, 'it waits for fn, so that runs never overlap');
    fnDone.resolve('finished anyway');
    await microtasks();
    assert.equal(result.error, lostError, 'the result of a run that lost its lock is not trusted');
  });

  it('fn throws: the error passes through, after the release has settled', async () => {
    const ts = scheduler();
    const boom = new Error('boom');
    const release = deferred<void>();
    let result!: ReturnType<typeof outcome<never>>;
    ts.run(({ cold, expectSubscriptions, flush }) => {
      const lock$ = cold<LockState>('a-h-r-r', states);
      result = outcome(
        runUnderLock<never>(
          lock$,
          () => {
            throw boom;
          },
          () => release.promise,
        ),
      );
      flush();
      expectSubscriptions(lock$.subscriptions).toBe('^');
    });
    await microtasks();
    assert.equal(result.settled, false, 'waits for the release');
    release.resolve();
    await microtasks();
    assert.equal(result.error, boom);
  });

  it('acquiring fails: rejects with that error, and fn never runs', async () => {
    const ts = scheduler();
    const busy = new Error('busy');
    let ran = false;
    let result!: ReturnType<typeof outcome<void>>;
    ts.run(({ cold, flush }) => {
      const lock$ = cold<LockState>('a-#', states, busy);
      result = outcome(
        runUnderLock(
          lock$,
          () => void (ran = true),
          () => Promise.resolve(),
        ),
      );
      flush();
    });
    await microtasks();
    assert.equal(result.error, busy);
    assert.equal(ran, false);
  });
});
