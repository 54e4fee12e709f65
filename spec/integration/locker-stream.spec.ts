import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
import { filter, firstValueFrom, map, type Observable, timeout, timer } from 'rxjs';
import { isLockError, LockLostError, type LockErrorCode } from '../../lib/errors.js';
import { createLocker, type Locker } from '../../lib/locker.js';
import type { LockerStreamState } from '../../lib/locker-stream.js';
import { whileHeld } from '../../lib/while-held.js';
import { etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { startProxy } from '../support/proxy.js';
import { until } from '../support/poll.js';
import { sleep } from '../support/recorder.js';

const WAIT_MS = 20_000;

/** A stream's states as they come, and how it ended. */
interface Watched {
  states: LockerStreamState[];
  ended: Promise<{ error?: unknown; completed?: true }>;
  unsubscribe: () => void;
}

function watch(t: TestContext, stream$: Observable<LockerStreamState>): Watched {
  const states: LockerStreamState[] = [];
  let unsubscribe = () => {};
  const ended = new Promise<{ error?: unknown; completed?: true }>((resolve) => {
    const subscription = stream$.subscribe({
      next: (state) => states.push(state),
      error: (error: unknown) => resolve({ error }),
      complete: () => resolve({ completed: true }),
    });
    unsubscribe = () => subscription.unsubscribe();
  });
  t.after(() => unsubscribe());
  return { states, ended, unsubscribe: () => unsubscribe() };
}

function assertCode(err: unknown, code: LockErrorCode): void {
  assert.ok(isLockError(err), `a LockError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
}

function heldIn(watched: Watched): Extract<LockerStreamState, { kind: 'held' }> {
  const held = watched.states.find((s) => s.kind === 'held');
  assert.ok(held?.kind === 'held', `held: ${JSON.stringify(watched.states)}`);
  return held;
}

describe('locker.lock$(id): one lock of a locker as a stream, on its session, against a real etcd', () => {
  const etcd = etcdForSuite();

  function lockerFor(t: TestContext, name: string, options: Record<string, unknown> = {}): Locker {
    const locker = createLocker(etcd.client, { name, ttl: 10, ...options });
    t.after(() => locker.close());
    return locker;
  }

  const isHeld = (w: Watched) => () => w.states.some((s) => s.kind === 'held');

  it('emits acquiring, held on the locker lease, refreshed at each keepalive; unsubscribing deletes the key only', async (t) => {
    const name = uniquePrefix('locker-stream');
    const locker = lockerFor(t, name, { ttl: 2, holderId: 'w1' });
    const watched = watch(t, locker.lock$('job'));
    await until(() => watched.states.some((s) => s.kind === 'refreshed'), 'a refreshed state');
    const [first] = watched.states;
    assert.deepEqual(first, { kind: 'acquiring', key: `${name}/job`, id: 'w1', lockId: 'job' });
    const held = heldIn(watched);
    assert.equal(held.holderKey, `${name}/job/${held.leaseId}`);
    const { kvs } = await etcd.client.get(held.holderKey).exec();
    assert.equal(kvs[0]?.create_revision, held.fencingToken);
    const refreshed = watched.states.find((s) => s.kind === 'refreshed');
    assert.deepEqual(refreshed, {
      kind: 'refreshed',
      key: `${name}/job`,
      id: 'w1',
      fencingToken: held.fencingToken,
      ttl: 2,
      lockId: 'job',
    });
    assert.equal(locker.isHeld('job'), true);

    watched.unsubscribe();
    await until(async () => (await listKeys(etcd.endpoints, name)).length === 0, 'the key deleted');
    assert.equal(locker.isHeld('job'), false);
    const leases = await listLeases(etcd.endpoints);
    assert.ok(leases.includes(BigInt(`0x${held.leaseId}`).toString()), 'the session lease lives on');
  });

  it('waits by default behind another holder, naming it; the lock comes when the holder releases', async (t) => {
    const name = uniquePrefix('locker-stream');
    const first = lockerFor(t, name, { holderId: 'first' });
    const second = lockerFor(t, name, { holderId: 'second' });
    const ahead = await first.lock('a');
    const watched = watch(t, second.lock$('a'));
    await until(
      () => watched.states.some((s) => s.kind === 'acquiring' && s.waitingFor?.id === 'first'),
      'waiting for the first',
    );
    await first.release('a');
    await until(isHeld(watched), 'held');
    assert.ok(BigInt(heldIn(watched).fencingToken) > BigInt(ahead.fencingToken));
  });

  it('unsubscribing while queued withdraws this stream only: a lock(id) call sharing the wait still gets the lock', async (t) => {
    const name = uniquePrefix('locker-stream');
    const first = lockerFor(t, name);
    const second = lockerFor(t, name);
    await first.lock('a');
    const watched = watch(t, second.lock$('a'));
    await until(() => watched.states.some((s) => s.kind === 'acquiring' && s.waitingFor), 'queued');
    const call = second.lock('a', { wait: true });
    watched.unsubscribe();
    await first.release('a');
    const held = await call;
    assert.equal(held.kind, 'held');
    assert.deepEqual(await listKeys(etcd.endpoints, name), [held.holderKey]);
  });

  it('wait: false fails with ETCDLOCK_BUSY, a timeout with ETCDLOCK_TIMEOUT; neither leaves a key', async (t) => {
    const name = uniquePrefix('locker-stream');
    const first = lockerFor(t, name);
    const second = lockerFor(t, name);
    const held = await first.lock('a');
    const busy = await watch(t, second.lock$('a', { wait: false })).ended;
    assertCode(busy.error, 'ETCDLOCK_BUSY');
    const late = await watch(t, second.lock$('a', { timeout: 300 })).ended;
    assertCode(late.error, 'ETCDLOCK_TIMEOUT');
    await until(
      async () => (await listKeys(etcd.endpoints, name)).join() === held.holderKey,
      'only the holder key left',
    );
  });

  it('a key deleted behind our back: lost (deleted), then the error; the locker takes the id again', async (t) => {
    const name = uniquePrefix('locker-stream');
    const locker = lockerFor(t, name);
    const watched = watch(t, locker.lock$('a'));
    await until(isHeld(watched), 'held');
    await etcd.client.delete().key(heldIn(watched).holderKey).exec();
    const { error } = await watched.ended;
    assert.ok(error instanceof LockLostError);
    assert.equal(error.reason, 'deleted');
    const lost = watched.states.at(-1);
    assert.equal(lost?.kind, 'lost');
    assert.equal(lost.error, error);
    assert.equal(locker.isHeld('a'), false);
    assert.equal((await locker.lock('a')).kind, 'held');
  });

  it("the locker's lease revoked behind its back: a held stream emits lost then errors, a queued one errors too", async (t) => {
    const name = uniquePrefix('locker-stream');
    const other = lockerFor(t, name, { holderId: 'other' });
    await other.lock('busy');
    const locker = lockerFor(t, name);
    const held = watch(t, locker.lock$('mine'));
    const queued = watch(t, locker.lock$('busy'));
    await until(isHeld(held), 'held');
    await until(() => queued.states.some((s) => s.kind === 'acquiring' && s.ahead === 1), 'queued');

    await etcd.client.leaseClient.leaseRevoke({ ID: BigInt(`0x${heldIn(held).leaseId}`).toString() });
    const heldEnd = await held.ended;
    assert.ok(heldEnd.error instanceof LockLostError, String(heldEnd.error));
    assert.equal(held.states.at(-1)?.kind, 'lost');
    const queuedEnd = await queued.ended;
    assertCode(queuedEnd.error, 'ETCDLOCK_LOST');
    assert.ok(!queued.states.some((s) => s.kind === 'held'), 'the queued stream was never told it holds');

    // The locker carries on with a new lease.
    const again = watch(t, locker.lock$('mine'));
    await until(isHeld(again), 'held again');
    assert.notEqual(heldIn(again).leaseId, heldIn(held).leaseId);
  });

  it('an abort errors with its reason and releases; release(id) by someone else completes the stream', async (t) => {
    const name = uniquePrefix('locker-stream');
    const locker = lockerFor(t, name);
    const controller = new AbortController();
    const aborted = watch(t, locker.lock$('a', { signal: controller.signal }));
    await until(isHeld(aborted), 'held');
    const reason = new Error('stop');
    controller.abort(reason);
    assert.equal((await aborted.ended).error, reason);
    await until(async () => (await listKeys(etcd.endpoints, name)).length === 0, 'the key deleted');

    const released = watch(t, locker.lock$('b'));
    await until(isHeld(released), 'held');
    await locker.release('b');
    assert.deepEqual(await released.ended, { completed: true });
  });

  it('subscribed while lock(id) holds the id: held at once with the same grant and key; unsubscribing releases it for both', async (t) => {
    const name = uniquePrefix('locker-stream');
    const locker = lockerFor(t, name);
    const grant = await locker.lock('a');
    const shared = watch(t, locker.lock$('a'));
    assert.deepEqual(
      shared.states.map((s) => s.kind),
      ['held'],
      'held synchronously, with no acquiring',
    );
    assert.equal(heldIn(shared).fencingToken, grant.fencingToken);
    assert.deepEqual(await listKeys(etcd.endpoints, `${name}/a/`), [grant.holderKey], 'no second key');
    // A second lock(id) while held resolves with the same grant, as before the stream.
    assert.equal((await locker.lock('a')).fencingToken, grant.fencingToken);

    shared.unsubscribe();
    assert.equal(locker.isHeld('a'), false);
    await until(async () => (await listKeys(etcd.endpoints, `${name}/a/`)).length === 0, 'the key deleted');
  });

  it('onRelease: its promise settles only once etcd has the delete, of a queued key and of a held one', async (t) => {
    const name = uniquePrefix('locker-stream');
    // The streams' locker talks to etcd through a proxy: paused, the deletes cannot reach etcd.
    const proxy = await startProxy(etcd.endpoints[0]!);
    const client = new Etcd3({ hosts: proxy.endpoint, faultHandling: { host: () => noop, global: noop } });
    const locker = createLocker(client, { name, ttl: 10 });
    // In this order (after hooks run in the order they were added): the locker revokes its lease through the
    // client, which needs the proxy.
    t.after(async () => {
      await locker.close();
      client.close();
      await proxy.close();
    });
    const other = lockerFor(t, name);
    const releases: Promise<void>[] = [];
    const settled: boolean[] = [];
    const onRelease = (done: Promise<void>) => {
      const i = releases.push(done) - 1;
      settled[i] = false;
      void done.then(() => (settled[i] = true));
    };
    const held = watch(t, locker.lock$('a', { onRelease }));
    await until(isHeld(held), 'held');
    const ahead = await other.lock('b');
    const queued = watch(t, locker.lock$('b', { onRelease }));
    await until(() => queued.states.some((s) => s.kind === 'acquiring' && s.waitingFor), 'queued');

    const cases = [
      { stream: queued, lockId: 'b', left: [ahead.holderKey] },
      { stream: held, lockId: 'a', left: [] },
    ];
    for (const [i, { stream, lockId, left }] of cases.entries()) {
      proxy.pause();
      stream.unsubscribe();
      assert.equal(releases.length, i + 1, 'onRelease called at teardown');
      await sleep(200);
      assert.equal(settled[i], false, `${lockId}: not settled while the delete cannot reach etcd`);
      proxy.resume();
      await releases[i];
      assert.deepEqual(await listKeys(etcd.endpoints, `${name}/${lockId}`), left, `${lockId}: our key is gone`);
    }
  });

  it('whileHeld runs work under it with the fencing token; the work done, the lock is released', async (t) => {
    const name = uniquePrefix('locker-stream');
    const locker = lockerFor(t, name);
    const result = await firstValueFrom(
      locker.lock$('a').pipe(
        whileHeld(({ fencingToken, key }) => timer(10).pipe(map(() => ({ fencingToken, key })))),
        timeout(WAIT_MS),
      ),
    );
    assert.equal(result.key, `${name}/a`);
    assert.match(result.fencingToken, /^\d+$/);
    await until(async () => (await listKeys(etcd.endpoints, name)).length === 0, 'the key deleted');
  });

  it('bad ids and options throw at once, naming what was wrong', (t) => {
    const locker = lockerFor(t, uniquePrefix('locker-stream'));
    assert.throws(() => locker.lock$('a/b'), /Expected `id` not to contain "\/"/);
    assert.throws(() => locker.lock$('a', { wiat: true } as never), /Unknown option `wiat`/);
    assert.throws(() => locker.lock$('a', { timeout: -1 }), /Expected `timeout` to be a number/);
    assert.throws(() => locker.lock$('a', { onRelease: 1 } as never), /Expected `onRelease` to be a function, got 1/);
    assert.throws(() => locker.lock$('a', 5 as never), /Expected `options` to be an object/);
  });

  it('the states are lock$ states: filter on kind works as for lock$', async (t) => {
    const locker = lockerFor(t, uniquePrefix('locker-stream'));
    const held = await firstValueFrom(
      locker.lock$('a').pipe(
        filter((s) => s.kind === 'held'),
        timeout(WAIT_MS),
      ),
    );
    assert.equal(held.lockId, 'a');
    // firstValueFrom unsubscribed: released.
    await until(() => !locker.isHeld('a'), 'released');
  });
});
