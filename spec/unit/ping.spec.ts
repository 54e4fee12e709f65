import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { TestScheduler } from 'rxjs/testing';
import { ping$, PingError, type PingPeer } from '../../cli/ping.js';

/** A child on the test scheduler's clock: answers each ping after `delayMs` with what `answer` returns. */
class FakeChild extends EventEmitter implements PingPeer {
  connected = true;
  readonly sent: Array<{ at: number; message: unknown }> = [];
  constructor(
    private readonly ts: TestScheduler,
    private readonly delayMs: number,
    private readonly answer: (ping: number, n: number) => unknown,
  ) {
    super();
  }
  send(message: unknown, callback: (error: Error | null) => void): boolean {
    this.sent.push({ at: this.ts.now(), message });
    callback(null);
    const reply = this.answer((message as { ping: number }).ping, this.sent.length);
    // A ChildProcess emits 'message' with (message, sendHandle): keep both arguments, as the real one does.
    if (reply !== undefined) this.ts.schedule(() => this.emit('message', reply, undefined), this.delayMs);
    return true;
  }
}

function scheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => assert.deepEqual(normalize(actual), normalize(expected)));
}

function normalize(value: unknown): unknown {
  if (value instanceof PingError) return { problem: value.problem };
  if (Array.isArray(value)) return value.map(normalize);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
  }
  return value;
}

let counter = 0;
const nextValue = () => ++counter;

describe('ping$ (virtual time)', () => {
  it('pings at once, then every interval after each answer; each answer is the ping echoed', () => {
    const ts = scheduler();
    counter = 0;
    ts.run(({ expectObservable }) => {
      const child = new FakeChild(ts, 10, (ping) => ({ pong: ping }));
      const result$ = ping$(child, { intervalMs: 100, timeoutMs: 1000, scheduler: ts, nextValue });
      // ping 1 at 0, pong at 10; ping 2 at 110, pong at 120; ping 3 at 220, pong at 230.
      expectObservable(result$, '250ms !').toBe('10ms a 109ms b 109ms c', { a: 1, b: 2, c: 3 });
    });
  });

  it('fails with wrong-answer when the pong does not echo the ping', () => {
    const ts = scheduler();
    counter = 0;
    ts.run(({ expectObservable }) => {
      const child = new FakeChild(ts, 10, (ping, n) => ({ pong: n === 2 ? ping + 1 : ping }));
      const result$ = ping$(child, { intervalMs: 100, timeoutMs: 1000, scheduler: ts, nextValue });
      expectObservable(result$).toBe('10ms a 109ms #', { a: 1 }, new PingError('wrong-answer', ''));
    });
  });

  it('fails with timeout when no answer comes within the time limit', () => {
    const ts = scheduler();
    counter = 0;
    ts.run(({ expectObservable }) => {
      const child = new FakeChild(ts, 10, (ping, n) => (n === 1 ? { pong: ping } : undefined));
      const result$ = ping$(child, { intervalMs: 100, timeoutMs: 500, scheduler: ts, nextValue });
      // ping 2 at 110 is never answered: timeout at 610.
      expectObservable(result$).toBe('10ms a 599ms #', { a: 1 }, new PingError('timeout', ''));
    });
  });

  it('ignores messages that are not pongs', () => {
    const ts = scheduler();
    counter = 0;
    ts.run(({ expectObservable }) => {
      const child = new FakeChild(ts, 10, (ping) => ({ pong: ping }));
      ts.schedule(() => child.emit('message', { log: 'hello' }, undefined), 5);
      ts.schedule(() => child.emit('message', 'text', undefined), 6);
      const result$ = ping$(child, { intervalMs: 100, timeoutMs: 1000, scheduler: ts, nextValue });
      expectObservable(result$, '50ms !').toBe('10ms a', { a: 1 });
    });
  });

  it('fails with disconnected when the IPC channel is closed at the next ping', () => {
    const ts = scheduler();
    counter = 0;
    ts.run(({ expectObservable }) => {
      const child = new FakeChild(ts, 10, (ping) => ({ pong: ping }));
      ts.schedule(() => (child.connected = false), 50);
      const result$ = ping$(child, { intervalMs: 100, timeoutMs: 1000, scheduler: ts, nextValue });
      expectObservable(result$).toBe('10ms a 99ms #', { a: 1 }, new PingError('disconnected', ''));
    });
  });

  it('stops pinging and listening when unsubscribed', () => {
    const ts = scheduler();
    counter = 0;
    const child = new FakeChild(ts, 10, (ping) => ({ pong: ping }));
    ts.run(({ expectObservable }) => {
      const result$ = ping$(child, { intervalMs: 100, timeoutMs: 1000, scheduler: ts, nextValue });
      expectObservable(result$, '150ms !').toBe('10ms a 109ms b', { a: 1, b: 2 });
    });
    assert.equal(child.sent.length, 2, 'pings at 0 and 110 ms, none after the unsubscribe at 150 ms');
    assert.equal(child.listenerCount('message'), 0, 'no listener left on the child');
  });
});
