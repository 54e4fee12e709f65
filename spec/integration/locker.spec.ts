import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
import { filter, firstValueFrom, type Observable, timeout } from 'rxjs';
import { isLockError, LockLostError, type LockErrorCode } from '../../lib/errors.js';
import { createLocker, type Locker } from '../../lib/locker.js';
import type { LockerLockState, LockerLost, LockerState } from '../../lib/locker-state.js';
import { etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { etcdctlLock } from '../support/etcdctl-lock.js';
import { countingClient } from '../support/counting-client.js';
import { until } from '../support/poll.js';
import { startProxy, type TcpProxy } from '../support/proxy.js';
import { sleep } from '../support/recorder.js';

const WAIT_MS = 20_000;

/** The first value of `source$` that passes `predicate`, or a failure after a generous time. */
function next<T>(source$: Observable<T>, predicate: (value: T) => boolean, what: string): Promise<T> {
  return firstValueFrom(
    source$.pipe(
      filter(predicate),
      timeout({ first: WAIT_MS, with: () => Promise.reject(new Error(`timed out waiting for ${what}`)) }),
    ),
  );
}

/** What `promise` rejected with (failing if it resolved). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

function assertCode(err: unknown, code: LockErrorCode, message?: RegExp): void {
  assert.ok(isLockError(err), `a LockError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (message) assert.match(err.message, message);
}

/** Polls an async `probe` until it is true. */
async function eventually(probe: () => Promise<boolean>, what: string): Promise<void> {
  const start = performance.now();
  while (!(await probe())) {
    if (performance.now() - start > WAIT_MS) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** True once the states say we wait in the queue behind a holder. */
function queued(states: LockerLockState[]): boolean {
  return states.some((s) => s.kind === 'acquiring' && s.waitingFor !== undefined);
}

/** Every loss `locker` reports, recorded as it comes. */
function recordLosses(locker: Locker, t: TestContext): LockerLost[] {
  const losses: LockerLost[] = [];
  const subscription = locker.lost$.subscribe((lost) => losses.push(lost));
  t.after(() => subscription.unsubscribe());
  return losses;
}

/** A client of its own that counts the transactions sent through it, closed after the test. */
function countingClientFor(t: TestContext, hosts: string[]): { client: Etcd3; txns: () => number } {
  const counting = countingClient(hosts);
  t.after(() => counting.client.close());
  return counting;
}

/** Every lock state of `id`, recorded as it comes. */
function recordStates(locker: Locker, id: string, t: TestContext): LockerLockState[] {
  const states: LockerLockState[] = [];
  const subscription = locker.lockState$(id).subscribe((state) => states.push(state));
  t.after(() => subscription.unsubscribe());
  return states;
}

describe('createLocker: many locks on one session, against a real etcd', () => {
  const etcd = etcdForSuite();

  /** A locker closed after the test, whatever happens. */
  function lockerFor(t: TestContext, name: string, options: Record<string, unknown> = {}, client?: Etcd3): Locker {
    const locker = createLocker(client ?? etcd.client, { name, ttl: 10, ...options });
    t.after(() => locker.close());
    return locker;
  }

  /** A client talking to etcd through a TCP proxy, without a circuit breaker (a test heals the link at once). */
  async function proxiedClient(t: TestContext): Promise<{ proxy: TcpProxy; client: Etcd3 }> {
    const proxy = await startProxy(etcd.endpoints[0]!);
    t.after(() => proxy.close());
    const client = new Etcd3({ hosts: proxy.endpoint, faultHandling: { host: () => noop, global: noop } });
    t.after(() => client.close());
    return { proxy, client };
  }

  async function ready(locker: Locker): Promise<Extract<LockerState, { kind: 'ready' }>> {
    return (await next(locker.state$, (s) => s.kind === 'ready', 'the session')) as Extract<
      LockerState,
      { kind: 'ready' }
    >;
  }

  async function leaseAlive(leaseHex: string): Promise<boolean> {
    return (await listLeases(etcd.endpoints)).includes(BigInt(`0x${leaseHex}`).toString());
  }

  /** etcd's count of watchers (every client's), from its metrics; undefined on a cluster we did not start. */
  async function etcdWatchers(): Promise<number | undefined> {
    if (!etcd.node) return undefined;
    const text = await (await fetch(`${etcd.node.clientUrl}/metrics`)).text();
    const line = /^etcd_debugging_mvcc_watcher_total (\S+)$/m.exec(text);
    return line ? Number(line[1]) : undefined;
  }

  it('lock(id) puts <name>/<id>/<lease> with the holder id; release(id) deletes it; close() revokes the lease', async (t) => {
    const name = uniquePrefix('locker');
    const locker = lockerFor(t, name, { holderId: 'writer-1' });
    const held = await locker.lock('123');
    const session = await ready(locker);
    assert.equal(held.kind, 'held');
    assert.equal(held.lockId, '123');
    assert.equal(held.key, `${name}/123`);
    assert.equal(held.id, 'writer-1');
    assert.equal(held.leaseId, session.leaseId);
    assert.equal(held.holderKey, `${name}/123/${session.leaseId}`);
    const { kvs } = await etcd.client.get(held.holderKey).exec();
    assert.equal(kvs[0]?.value.toString(), 'writer-1');
    assert.equal(kvs[0]?.create_revision, held.fencingToken, 'the fencing token is the key create revision');
    assert.equal(kvs[0]?.lease, BigInt(`0x${session.leaseId}`).toString(), 'the key hangs on the session lease');
    assert.equal(locker.isHeld('123'), true);

    await locker.release('123');
    assert.equal(locker.isHeld('123'), false);
    assert.deepEqual(await listKeys(etcd.endpoints, `${name}/`), []);
    assert.equal(await leaseAlive(session.leaseId), true, 'releasing one lock keeps the session');

    await locker.close();
    assert.equal(await leaseAlive(session.leaseId), false, 'close() revoked the lease');
    assertCode(await rejection(locker.lock('123')), 'ETCDLOCK_UNAVAILABLE', /closed/);
    assertCode(await rejection(locker.release('123')), 'ETCDLOCK_NOT_HELD');
  });

  it('another holder makes lock(id) reject at once with ETCDLOCK_BUSY, naming it; free again, the token is higher', async (t) => {
    const name = uniquePrefix('locker');
    const a = lockerFor(t, name, { holderId: 'a' });
    const b = lockerFor(t, name, { holderId: 'b' });
    const heldByA = await a.lock('job');
    const busy = await rejection(b.lock('job'));
    assertCode(busy, 'ETCDLOCK_BUSY', /held by "a"/);
    assert.deepEqual((busy as { holder?: unknown }).holder, { id: 'a', fencingToken: heldByA.fencingToken });
    assert.deepEqual(await listKeys(etcd.endpoints, `${name}/job/`), [heldByA.holderKey], "b's try left no key");

    await a.release('job');
    const heldByB = await b.lock('job');
    assert.ok(BigInt(heldByB.fencingToken) > BigInt(heldByA.fencingToken), 'tokens rise');
  });

  it('ids are independent locks: 123 and "123" are the same, other ids are free', async (t) => {
    const name = uniquePrefix('locker');
    const a = lockerFor(t, name, { holderId: 'a' });
    const b = lockerFor(t, name, { holderId: 'b' });
    await a.lock(123);
    assert.equal(a.isHeld('123'), true);
    assertCode(await rejection(b.lock('123')), 'ETCDLOCK_BUSY');
    const other = await b.lock('1234');
    assert.equal(other.key, `${name}/1234`);
  });

  it('lock(id) twice at once makes one round trip and both resolve; once held, lock(id) answers without one', async (t) => {
    const name = uniquePrefix('locker');
    const { client, txns } = countingClientFor(t, etcd.endpoints);
    const locker = lockerFor(t, name, {}, client);
    await ready(locker);
    const [first, second] = await Promise.all([locker.lock('x'), locker.lock('x')]);
    assert.equal(txns(), 1, 'one transaction for both calls');
    assert.equal(first, second);
    assert.equal(await locker.lock('x'), first, 'the cached grant');
    assert.equal(txns(), 1, 'no transaction for a lock already held');
    assert.equal((await listKeys(etcd.endpoints, `${name}/x/`)).length, 1);
  });

  it('one lease, one watch and few transactions for hundreds of locks', async (t) => {
    const name = uniquePrefix('locker');
    const { client, txns } = countingClientFor(t, etcd.endpoints);
    const watchersBefore = await etcdWatchers();
    const leasesBefore = new Set(await listLeases(etcd.endpoints));
    const locker = lockerFor(t, name, {}, client);
    const { leaseId } = await ready(locker);
    const ids = Array.from({ length: 500 }, (_, i) => `item-${i}`);
    const held = await Promise.all(ids.map((id) => locker.lock(id)));
    assert.ok(txns() <= 20, `500 locks in ${txns()} transactions (batched)`);
    assert.ok(
      held.every((h) => h.leaseId === leaseId),
      'every lock on the session lease',
    );
    const keys = await listKeys(etcd.endpoints, `${name}/`);
    assert.equal(keys.length, 500);
    const newLeases = (await listLeases(etcd.endpoints)).filter((lease) => !leasesBefore.has(lease));
    if (etcd.node) assert.deepEqual(newLeases, [BigInt(`0x${leaseId}`).toString()], 'one lease in etcd');
    const watchersAfter = await etcdWatchers();
    if (watchersBefore !== undefined && watchersAfter !== undefined) {
      assert.equal(watchersAfter - watchersBefore, 1, 'one watch for all the locks');
    }
    // A key deleted behind our back is still noticed, through that one watch.
    const lost = next(locker.lost$, () => true, 'a loss');
    await etcd.client.delete().key(held[250]!.holderKey).exec();
    assert.equal((await lost).lockId, 'item-250');
    await Promise.all(ids.filter((id) => id !== 'item-250').map((id) => locker.release(id)));
    assert.deepEqual(await listKeys(etcd.endpoints, `${name}/`), []);
  });

  it('{ wait: true } queues behind the holder and reports it; the lock comes when the holder releases', async (t) => {
    const name = uniquePrefix('locker');
    const a = lockerFor(t, name, { holderId: 'a' });
    const b = lockerFor(t, name, { holderId: 'b' });
    const heldByA = await a.lock('7');
    const states = recordStates(b, '7', t);
    const waiting = b.lock('7', { wait: true });
    await until(() => queued(states), 'b queued');
    const queuedState = states.find((s) => s.kind === 'acquiring' && s.waitingFor);
    assert.deepEqual(queuedState?.kind === 'acquiring' && queuedState.waitingFor, {
      id: 'a',
      fencingToken: heldByA.fencingToken,
    });
    assert.equal(queuedState?.kind === 'acquiring' && queuedState.ahead, 1);
    await sleep(200);
    assert.equal(b.isHeld('7'), false, 'b still waits');
    await a.release('7');
    const heldByB = await waiting;
    assert.ok(BigInt(heldByB.fencingToken) > BigInt(heldByA.fencingToken));
    assert.deepEqual(
      states.map((s) => s.kind),
      ['idle', 'acquiring', 'acquiring', 'held'],
    );
  });

  it('a timeout waits, then rejects with ETCDLOCK_TIMEOUT and leaves no key; an abort rejects with its reason', async (t) => {
    const name = uniquePrefix('locker');
    const a = lockerFor(t, name, { holderId: 'a' });
    const b = lockerFor(t, name, { holderId: 'b' });
    const heldByA = await a.lock('7');
    const err = await rejection(b.lock('7', { timeout: 300 }));
    assertCode(err, 'ETCDLOCK_TIMEOUT', /300 ms/);
    const controller = new AbortController();
    const reason = new Error('shutting down');
    const aborted = b.lock('7', { wait: true, signal: controller.signal });
    await sleep(100);
    controller.abort(reason);
    assert.equal(await rejection(aborted), reason);
    await until(() => !b.isHeld('7'), 'b gave up');
    await b.close();
    assert.deepEqual(await listKeys(etcd.endpoints, `${name}/7/`), [heldByA.holderKey], "none of b's keys is left");
  });

  it('a try-once lock(id) and a waiting one at once: the first gets ETCDLOCK_BUSY, the second waits and gets the lock', async (t) => {
    const name = uniquePrefix('locker');
    const a = lockerFor(t, name, { holderId: 'a' });
    const b = lockerFor(t, name, { holderId: 'b' });
    await a.lock('7');
    const tryOnce = b.lock('7');
    const patient = b.lock('7', { wait: true });
    assertCode(await rejection(tryOnce), 'ETCDLOCK_BUSY');
    await sleep(200);
    await a.release('7');
    assert.equal((await patient).id, 'b');
  });

  it('release(id) of a lock not held rejects with ETCDLOCK_NOT_HELD; racing a waiting lock(id), it cancels it', async (t) => {
    const name = uniquePrefix('locker');
    const a = lockerFor(t, name, { holderId: 'a' });
    const b = lockerFor(t, name, { holderId: 'b' });
    assertCode(await rejection(b.release('nothing')), 'ETCDLOCK_NOT_HELD', /not held/);
    const heldByA = await a.lock('7');
    const waiting = rejection(b.lock('7', { wait: true }));
    const states = recordStates(b, '7', t);
    await until(() => queued(states), 'b queued');
    await b.release('7');
    assertCode(await waiting, 'ETCDLOCK_NOT_HELD', /release\(\) cancelled/);
    assert.deepEqual(await listKeys(etcd.endpoints, `${name}/7/`), [heldByA.holderKey], "b's queued key is gone");
    assert.equal(states.at(-1)?.kind, 'idle');
    // Released at once after lock(), before the session even answered: nothing is left either.
    const c = lockerFor(t, name, { holderId: 'c' });
    const early = rejection(c.lock('8', { wait: true }));
    await c.release('8');
    assertCode(await early, 'ETCDLOCK_NOT_HELD');
    await c.lock('8'); // and it can be taken again right away
    assert.equal((await listKeys(etcd.endpoints, `${name}/8/`)).length, 1);
  });

  it('close() while lock(id) waits rejects it and leaves no key and no lease; `await using` closes too', async (t) => {
    const name = uniquePrefix('locker');
    const a = lockerFor(t, name, { holderId: 'a' });
    const heldByA = await a.lock('7');
    const b = lockerFor(t, name, { holderId: 'b' });
    const bLease = (await ready(b)).leaseId;
    await b.lock('other');
    const waiting = rejection(b.lock('7', { wait: true }));
    const states = recordStates(b, '7', t);
    await until(() => queued(states), 'b queued');
    const closing = b.close();
    assert.equal(b.close(), closing, 'close() is idempotent');
    assertCode(await waiting, 'ETCDLOCK_UNAVAILABLE', /closed/);
    await closing;
    assert.equal(
      await next(b.state$, () => true, 'a state').catch(() => 'completed'),
      'completed',
      'state$ completed after closed',
    );
    assert.deepEqual(await listKeys(etcd.endpoints, `${name}/`), [heldByA.holderKey]);
    assert.equal(await leaseAlive(bLease), false);

    let cLease: string;
    {
      await using c = createLocker(etcd.client, { name, ttl: 10, holderId: 'c' });
      cLease = (await c.lock('8')).leaseId;
    }
    assert.equal(await leaseAlive(cLease), false, 'the end of the block closed the locker');
    assert.deepEqual(await listKeys(etcd.endpoints, `${name}/8/`), []);
  });

  it('lock(id) calls made before the session exists wait for it', async (t) => {
    const name = uniquePrefix('locker');
    const locker = lockerFor(t, name);
    const states: LockerState['kind'][] = [];
    const subscription = locker.state$.subscribe((s) => states.push(s.kind));
    t.after(() => subscription.unsubscribe());
    assert.deepEqual(states, ['connecting']);
    const held = await Promise.all(['1', '2', '3'].map((id) => locker.lock(id)));
    assert.deepEqual(states, ['connecting', 'ready']);
    assert.equal(new Set(held.map((h) => h.leaseId)).size, 1);
  });

  it('a key deleted or overwritten behind our back: that lock is reported lost, the others stay held', async (t) => {
    const name = uniquePrefix('locker');
    const locker = lockerFor(t, name);
    const [one, two] = await Promise.all([locker.lock('one'), locker.lock('two'), locker.lock('three')]);
    const states = recordStates(locker, 'one', t);
    const losses = recordLosses(locker, t);

    await etcd.client.delete().key(one.holderKey).exec();
    await until(() => losses.length === 1, 'the loss of one');
    await etcd.client.put(two.holderKey).value('someone else').exec();
    await until(() => losses.length === 2, 'the loss of two');
    assert.deepEqual(
      losses.map((l) => [l.lockId, l.reason, l.fencingToken]),
      [
        ['one', 'deleted', one.fencingToken],
        ['two', 'changed', two.fencingToken],
      ],
    );
    assert.ok(losses[0]!.error instanceof LockLostError && losses[0]!.error.key === `${name}/one`);
    assert.deepEqual(
      states.map((s) => s.kind),
      ['held', 'lost', 'idle'],
    );
    assert.equal(locker.isHeld('one'), false);
    assert.equal(locker.isHeld('three'), true, 'the others are untouched');
    assertCode(await rejection(locker.release('one')), 'ETCDLOCK_NOT_HELD');
    const again = await locker.lock('one');
    assert.ok(BigInt(again.fencingToken) > BigInt(one.fencingToken));
  });

  it('its etcd3 client closed under it: held locks lost at the next keepalive, then the locker fails instead of retrying', async (t) => {
    const name = uniquePrefix('locker');
    const client = new Etcd3({ hosts: etcd.endpoints });
    // Keepalives every 300 ms, a deadline 2.5 s after the last answer: the loss must come from the failed
    // keepalive (its detail says so), not from the deadline.
    const locker = lockerFor(t, name, { ttl: 10, refreshInterval: 300 }, client);
    const held = await locker.lock('a');
    const losses = recordLosses(locker, t);
    const failed = next(locker.state$, (s) => s.kind === 'failed', 'the locker to fail');

    client.close();
    const state = await failed;
    assert.deepEqual(
      losses.map((l) => [l.lockId, l.reason]),
      [['a', 'expired']],
    );
    // The lock's error names the session's loss; its cause says why the session was lost.
    assert.match(String((losses[0]!.error.cause as Error | undefined)?.message), /its etcd3 client was closed/);
    assert.ok(state.kind === 'failed');
    assertCode(state.error, 'ETCDLOCK_UNAVAILABLE', /cannot create its session: its etcd3 client was closed/);
    assertCode(await rejection(locker.lock('b')), 'ETCDLOCK_UNAVAILABLE');
    // Nobody could release it through that client: the key goes with the lease. Revoked here to leave nothing.
    await etcd.client.leaseClient.leaseRevoke({ ID: BigInt(`0x${held.leaseId}`).toString() });
  });

  it('a lock(id) that finds the lease revoked before the locker noticed is taken on the next session, not failed', async (t) => {
    const name = uniquePrefix('locker');
    // A long TTL: the next keepalive is 15 s away, so only the failed enqueue can tell the locker.
    const locker = lockerFor(t, name, { ttl: 30 });
    const first = await ready(locker);
    await etcd.client.leaseClient.leaseRevoke({ ID: BigInt(`0x${first.leaseId}`).toString() });
    const sessionLost = next(locker.state$, (s) => s.kind === 'lost', 'the session loss');

    const held = await locker.lock('x');
    await sessionLost;
    assert.notEqual(held.leaseId, first.leaseId, 'on a new lease');
    assert.deepEqual(await listKeys(etcd.endpoints, `${name}/x/`), [held.holderKey]);
  });

  it('the session lease revoked from outside: every held and queued lock is reported lost, then a new session takes over', async (t) => {
    const name = uniquePrefix('locker');
    const other = lockerFor(t, name, { holderId: 'other' });
    await other.lock('busy');
    const locker = lockerFor(t, name, { ttl: 2, holderId: 'me' });
    const first = await ready(locker);
    const held = await Promise.all(['a', 'b', 'c'].map((id) => locker.lock(id)));
    const queuedLock = rejection(locker.lock('busy', { wait: true }));
    const states = recordStates(locker, 'busy', t);
    await until(() => queued(states), 'queued');
    const losses = recordLosses(locker, t);
    const sessionLost = next(locker.state$, (s) => s.kind === 'lost', 'the session loss');

    await etcd.client.leaseClient.leaseRevoke({ ID: BigInt(`0x${first.leaseId}`).toString() });
    assertCode(await queuedLock, 'ETCDLOCK_LOST');
    await until(() => losses.length === 3, 'three losses');
    assert.deepEqual(losses.map((l) => l.lockId).sort(), ['a', 'b', 'c']);
    assert.deepEqual(losses.map((l) => l.fencingToken).sort(), held.map((h) => h.fencingToken).sort());
    const lost = await sessionLost;
    assert.equal(lost.kind === 'lost' && lost.leaseId, first.leaseId);
    const second = await ready(locker);
    assert.notEqual(second.leaseId, first.leaseId, 'a new lease');
    const again = await locker.lock('a');
    assert.equal(again.leaseId, second.leaseId);
  });

  it('cut off from etcd past the local deadline: held and queued locks are lost (expired) before the lease can expire', async (t) => {
    const name = uniquePrefix('locker');
    const { proxy, client } = await proxiedClient(t);
    const other = lockerFor(t, name, { holderId: 'other' });
    await other.lock('busy');
    const locker = lockerFor(t, name, { ttl: 3, holderId: 'me', retryInterval: 0.2 }, client);
    const first = await ready(locker);
    const held = await locker.lock('mine');
    const queuedLock = rejection(locker.lock('busy', { wait: true }));
    const states = recordStates(locker, 'busy', t);
    await until(() => queued(states), 'queued');
    const losses = recordLosses(locker, t);

    proxy.pause();
    const err = await queuedLock;
    assertCode(err, 'ETCDLOCK_LOST');
    assert.equal((err as LockLostError).reason, 'expired');
    assert.deepEqual(
      losses.map((l) => [l.lockId, l.reason]),
      [['mine', 'expired']],
    );
    const ttlLeft = await etcd.client.leaseClient.leaseTimeToLive({ ID: BigInt(`0x${first.leaseId}`).toString() });
    assert.ok(Number(ttlLeft.TTL) >= 0, `the lease still lived on etcd when we gave up (TTL answer ${ttlLeft.TTL})`);
    proxy.resume();
    const second = await ready(locker);
    assert.notEqual(second.leaseId, first.leaseId);
    await locker.close();
    await eventually(
      async () => !(await listKeys(etcd.endpoints, `${name}/mine/`)).includes(held.holderKey),
      'the old key gone with its lease',
    );
  });

  it('a session that cannot be created is tried maxRetries more times, then every pending and later call fails', async (t) => {
    const name = uniquePrefix('locker');
    const { proxy, client } = await proxiedClient(t);
    proxy.cut();
    const locker = lockerFor(t, name, { maxRetries: 2, retryInterval: 0.05 }, client);
    const states: LockerState[] = [];
    const subscription = locker.state$.subscribe((s) => states.push(s));
    t.after(() => subscription.unsubscribe());
    const err = await rejection(locker.lock('1', { wait: true }));
    assertCode(err, 'ETCDLOCK_UNAVAILABLE', /"[^"]+" gave up creating its session after 3 tries/);
    assert.deepEqual(
      states.map((s) => (s.kind === 'connecting' ? `connecting ${s.attempt}` : s.kind)),
      ['connecting 1', 'connecting 2', 'connecting 3', 'failed'],
    );
    const second = states[1];
    assert.ok(second?.kind === 'connecting' && isLockError(second.error), 'each retry says why the last try failed');
    assert.equal(await rejection(locker.lock('2')), err, 'later calls get the same error');
    await locker.close();
  });

  it('a session that fails at first is retried, and the lock(id) calls waiting for it go through', async (t) => {
    const name = uniquePrefix('locker');
    const { proxy, client } = await proxiedClient(t);
    proxy.cut();
    const locker = lockerFor(t, name, { maxRetries: 100, retryInterval: 0.1 }, client);
    const pending = locker.lock('1');
    await next(locker.state$, (s) => s.kind === 'connecting' && s.attempt >= 2, 'a retry');
    proxy.heal();
    const held = await pending;
    assert.equal(held.lockId, '1');
    const state = await ready(locker);
    assert.equal(held.leaseId, state.leaseId);
  });

  it('excludes `etcdctl lock <name>/<id>`, and the other way round', async (t) => {
    const name = uniquePrefix('locker');
    const locker = lockerFor(t, name);
    const etcdctl = etcdctlLock(etcd.endpoints, `${name}/42`);
    t.after(() => {
      if (etcdctl.child.exitCode === null) etcdctl.child.kill('SIGKILL');
    });
    await until(() => etcdctl.stdout().includes(`${name}/42/`), 'etcdctl to hold the lock');
    const busy = await rejection(locker.lock(42));
    assertCode(busy, 'ETCDLOCK_BUSY');
    const waiting = locker.lock(42, { wait: true });
    await sleep(200);
    assert.equal(locker.isHeld(42), false);
    etcdctl.child.kill('SIGTERM'); // etcdctl releases on a signal
    await etcdctl.exited;
    await waiting;
    assert.equal(locker.isHeld(42), true);
    const second = etcdctlLock(etcd.endpoints, `${name}/42`);
    t.after(() => {
      if (second.child.exitCode === null) second.child.kill('SIGKILL');
    });
    await sleep(300);
    assert.equal(second.stdout(), '', 'etcdctl waits while the locker holds the lock');
    await locker.release(42);
    await until(() => second.stdout().includes(`${name}/42/`), 'etcdctl to get the lock');
    second.child.kill('SIGTERM');
    await second.exited;
  });
});
