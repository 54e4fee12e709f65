import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TestScheduler } from 'rxjs/testing';
import { LockLostError } from '../../lib/errors.js';
import { keepAlive$, type KeepAliveParams } from '../../lib/keepalive.js';

const lost = (detail: string) => new LockLostError('/k', 'expired', detail);

/** Compares marbles with errors reduced to what matters: their class, code and reason. */
function scheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => assert.deepEqual(normalize(actual), normalize(expected)));
}

function normalize(value: unknown): unknown {
  if (value instanceof LockLostError) return { error: value.name, code: value.code, reason: value.reason };
  if (value instanceof Error) return { error: value.name, message: value.message };
  if (Array.isArray(value)) return value.map(normalize);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
  }
  return value;
}

/** keepAlive$ on the test scheduler's clock; `send` returns what the test gives. */
function params(ts: TestScheduler, overrides: Partial<KeepAliveParams>): KeepAliveParams {
  return {
    ttlSeconds: 4,
    grantSentAt: 0,
    refreshIntervalMs: 1000,
    send: () => ts.createColdObservable('-a|', { a: 4 }),
    lost,
    scheduler: ts,
    now: () => ts.now(),
    ...overrides,
  };
}

describe('keepAlive$ (virtual time)', () => {
  it('sends a keepalive every refreshInterval and emits the granted TTL at each answer', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable, expectSubscriptions }) => {
      const answer = cold('-a|', { a: 4 });
      const result$ = keepAlive$(params(ts, { send: () => answer }));
      expectObservable(result$, '3500ms !').toBe('1001ms a 999ms a 999ms a', { a: 4 });
      // Each tick subscribes to the answer once and lets go of it once: no leaked keepalive.
      expectSubscriptions(answer.subscriptions).toBe(['1000ms ^!', '2000ms ^!', '3000ms ^!']);
    });
  });

  it('unsubscribing tears down an in-flight keepalive exactly once, and nothing is sent after', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable, expectSubscriptions }) => {
      const slow = cold('300ms a|', { a: 4 });
      const result$ = keepAlive$(params(ts, { send: () => slow }));
      // Sent at 1000 and 2000 ms, answered 300 ms later; the third (3000 ms) is in flight when we let go at 3100.
      expectObservable(result$, '3100ms !').toBe('1300ms a 999ms a', { a: 4 });
      expectSubscriptions(slow.subscriptions).toBe(['1000ms ^ 299ms !', '2000ms ^ 299ms !', '3000ms ^ 99ms !']);
    });
  });

  it('fails with `expired` at sentAt + TTL - TTL/4 when no keepalive is ever answered', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const silent = cold<number>('-');
      const result$ = keepAlive$(params(ts, { send: () => silent }));
      // TTL 4 s, margin 1 s: the deadline is at 3000 ms even though etcd never said a word.
      expectObservable(result$).toBe('3000ms #', undefined, lost('x'));
    });
  });

  it('moves the deadline forward from the send time of each acknowledged keepalive', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      let calls = 0;
      // First keepalive answered after 100 ms (sent at 1000), then etcd goes silent.
      const result$ = keepAlive$(
        params(ts, { send: () => (++calls === 1 ? cold('100ms a|', { a: 4 }) : cold<number>('-')) }),
      );
      // Deadline = 1000 (sent) + 4000 - 1000 = 4000 ms.
      expectObservable(result$).toBe('1100ms a 2899ms #', { a: 4 }, lost('x'));
    });
  });

  it('fails at once when etcd answers TTL 0 (the lease is gone)', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const result$ = keepAlive$(params(ts, { send: () => cold('-a|', { a: 0 }) }));
      expectObservable(result$).toBe('1001ms #', undefined, lost('x'));
    });
  });

  it('retries a failed keepalive quickly instead of waiting for the next tick', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      let calls = 0;
      const result$ = keepAlive$(
        params(ts, {
          send: () => (++calls === 1 ? cold<number>('#', undefined, new Error('unavailable')) : cold('-a|', { a: 4 })),
        }),
      );
      // margin 1000 -> retry delay 100 ms: failed at 1000, retried at 1100, answered at 1101.
      expectObservable(result$, '1500ms !').toBe('1101ms a', { a: 4 });
    });
  });

  it('a failure that `hopeless` names (a closed client) loses the lease at once, with that detail, and is not retried', () => {
    const ts = scheduler();
    let calls = 0;
    const details: string[] = [];
    const closed = new Error('client closed');
    ts.run(({ cold, expectObservable }) => {
      const result$ = keepAlive$(
        params(ts, {
          send: () => {
            calls++;
            return cold<number>('#', undefined, closed);
          },
          lost: (detail) => {
            details.push(detail);
            return lost(detail);
          },
          hopeless: (err) => (err === closed ? 'its etcd3 client was closed' : undefined),
        }),
      );
      // The first keepalive fails at 1000 ms: lost then, not at the deadline (4000 - 1000 = 3000 ms).
      expectObservable(result$).toBe('1000ms #', undefined, lost('x'));
    });
    assert.equal(calls, 1, 'tried once');
    assert.deepEqual(details, ['its etcd3 client was closed']);
  });

  it('abandons a keepalive that hangs past its own short time limit and tries again', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable, expectSubscriptions }) => {
      const hang = cold<number>('-');
      const answer = cold('-a|', { a: 4 });
      let calls = 0;
      const result$ = keepAlive$(params(ts, { send: () => (++calls === 1 ? hang : answer) }));
      // margin 1000 -> call limit 500 ms, retry delay 100 ms: 1000 + 500 + 100 = 1600, answered at 1601.
      expectObservable(result$, '1700ms !').toBe('1601ms a', { a: 4 });
      expectSubscriptions(hang.subscriptions).toBe(['1000ms ^ 499ms !']);
    });
  });

  it('sends an extra keepalive when refreshNow$ emits', () => {
    const ts = scheduler();
    ts.run(({ cold, hot, expectObservable }) => {
      const refreshNow$ = hot('300ms x');
      const result$ = keepAlive$(params(ts, { refreshNow$, send: () => cold('-a|', { a: 4 }) }));
      expectObservable(result$, '1500ms !').toBe('301ms a 699ms a', { a: 4 });
    });
  });

  it('with refreshInterval close to the TTL, keeps the deadline after the next answer', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      // TTL 2 s, refresh 1800 ms: margin = min(500, 100) = 100 ms, deadline 1900 ms after each send.
      const result$ = keepAlive$(
        params(ts, { ttlSeconds: 2, refreshIntervalMs: 1800, send: () => cold('-a|', { a: 2 }) }),
      );
      expectObservable(result$, '4000ms !').toBe('1801ms a 1799ms a', { a: 2 });
    });
  });
});
