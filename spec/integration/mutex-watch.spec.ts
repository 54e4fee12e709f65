/**
 * How a waiter learns that its turn has come, when the watch on the key ahead does not tell it: the key went
 * before etcd created the watch (which starts at etcd's current revision, not in the past), or the watch went
 * quiet without failing (its stream is on a member that is paused). Each test runs `contend$` over a client
 * whose watches on the key ahead are tampered with, and would wait forever without the path it tests.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { Etcd3, Watcher } from 'etcd3';
import type { Subscription } from 'rxjs';
import { contend$, type Contender, type MutexEvent } from '../../lib/mutex.js';
import type { Lease } from '../../lib/session.js';
import { etcdForSuite, listKeys, uniquePrefix } from '../support/etcd.js';

/** What the tampered client does with a watch on a key other than the waiter's own. */
type Tamper = (key: string, open: () => Watcher) => EventEmitter & { cancel(): Promise<void> };

/**
 * `client`, except that `watch().key(k)...watcher()` for a key other than `ownKey` goes through `tamper`,
 * which decides when (or whether) the real watch is opened. The stand-in forwards the real watch's events.
 */
function tampered(client: Etcd3, ownKey: () => string, tamper: Tamper): Etcd3 {
  const watch = () => {
    const real = client.watch();
    let key = '';
    const builder = {
      key(value: string | Buffer) {
        key = value.toString();
        real.key(value);
        return builder;
      },
      startRevision(revision: string) {
        real.startRevision(revision);
        return builder;
      },
      watcher(): Watcher {
        return key === ownKey() ? real.watcher() : (tamper(key, () => real.watcher()) as unknown as Watcher);
      },
    };
    return builder;
  };
  return new Proxy(client, { get: (target, name): unknown => (name === 'watch' ? watch : Reflect.get(target, name)) });
}

/** A stand-in watcher that relays `real()`'s events once `ready` resolves, and can be cancelled before. */
function relayAfter(ready: Promise<void>, real: () => Watcher) {
  const relay = Object.assign(new EventEmitter(), {
    cancelled: false,
    watcher: undefined as Watcher | undefined,
    cancel: async () => {
      relay.cancelled = true;
      await relay.watcher?.cancel();
    },
  });
  void ready.then(() => {
    if (relay.cancelled) return;
    const watcher = real();
    relay.watcher = watcher;
    for (const event of ['connected', 'put', 'delete', 'error'] as const) {
      (watcher as unknown as EventEmitter).on(event, (...args: unknown[]) => relay.emit(event, ...args));
    }
  });
  return relay;
}

describe('contend$: a waiter whose watch does not tell it', () => {
  const etcd = etcdForSuite();

  async function leaseOf(ttlSeconds: number): Promise<Lease> {
    const id = await etcd.client.lease(ttlSeconds, { autoKeepAlive: false }).grant();
    return { id, hex: BigInt(id).toString(16), ttlSeconds };
  }

  async function contender(key: string, id: string): Promise<Contender> {
    return { key, prefix: `${key}/`, id, lease: await leaseOf(30) };
  }

  const acquired = (events: MutexEvent[]) => events.some((e) => e.kind === 'acquired');
  const options = { wait: true, deleteOnRelease: true };

  /** Takes `key` as `holder` over the untampered client. Its key is deleted by the tests: a loss, ignored. */
  async function hold(key: string) {
    const holder = await contender(key, 'holder');
    const events: MutexEvent[] = [];
    const subscription = contend$(etcd.client, holder, options).subscribe({
      next: (e) => events.push(e),
      error: () => undefined,
    });
    await waitFor(
      () => acquired(events),
      'the holder to acquire',
      () => undefined,
    );
    const held = events.find((e) => e.kind === 'acquired');
    return { lease: holder.lease, subscription, holderKey: held?.kind === 'acquired' ? held.ticket.holderKey : '' };
  }

  /** Queues `waiter` over `client`; resolves once it waits. */
  async function queue(client: Etcd3, waiter: Contender, recheckMs: number) {
    const events: MutexEvent[] = [];
    let failure: unknown;
    const subscription = contend$(client, waiter, { ...options, recheckMs }).subscribe({
      next: (e) => events.push(e),
      error: (err: unknown) => (failure = err),
    });
    await waitFor(
      () => events.length > 0,
      'the waiter to queue',
      () => failure,
    );
    return { events, subscription, failure: () => failure };
  }

  async function cleanUp(key: string, subscriptions: Subscription[], leases: Lease[]) {
    for (const s of subscriptions) s.unsubscribe();
    await Promise.all(leases.map((lease) => etcd.client.leaseClient.leaseRevoke({ ID: lease.id })));
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), [], 'no key is left under the lock');
  }

  it('a key ahead that goes before etcd creates the watch on it is found gone, by reading it', async () => {
    const key = `${uniquePrefix('mutex-watch')}/late-watch`;
    const holder = await hold(key);
    const waiter = await contender(key, 'waiter');
    let release!: () => void;
    const go = new Promise<void>((resolve) => (release = resolve));
    const watchesAhead: string[] = [];
    const client = tampered(
      etcd.client,
      () => `${key}/${waiter.lease.hex}`,
      (watchedKey, open) => {
        watchesAhead.push(watchedKey);
        // The key ahead goes first; only then does etcd create the watch, which starts after that delete.
        const deleted = go.then(async () => void (await etcd.client.delete().key(watchedKey).exec()));
        return relayAfter(deleted, open);
      },
    );
    // A recheck far beyond the test's time: only the read after the watch's creation can wake the waiter.
    const run = await queue(client, waiter, 3_600_000);
    assert.deepEqual(
      run.events.map((e) => e.kind),
      ['waiting'],
      'the waiter queued behind the holder',
    );
    release();
    await waitFor(() => acquired(run.events), 'the waiter to acquire', run.failure);
    assert.deepEqual(watchesAhead, [holder.holderKey], 'the waiter watched the holder key, late');
    await cleanUp(key, [holder.subscription, run.subscription], [holder.lease, waiter.lease]);
  });

  it('a waiter whose watch goes quiet reads the queue again after recheckMs, and takes its turn', async () => {
    const key = `${uniquePrefix('mutex-watch')}/quiet`;
    const holder = await hold(key);
    const waiter = await contender(key, 'waiter');
    let quiet = 0;
    const client = tampered(
      etcd.client,
      () => `${key}/${waiter.lease.hex}`,
      () => {
        quiet++;
        // Never opened: like a stream on a paused member, it neither fails nor tells anything.
        return Object.assign(new EventEmitter(), { cancel: () => Promise.resolve() });
      },
    );
    const run = await queue(client, waiter, 300);
    await etcd.client.delete().key(holder.holderKey).exec();
    await waitFor(() => acquired(run.events), 'the waiter to acquire', run.failure);
    assert.equal(quiet, 1, 'one (silent) watch on the key ahead');
    assert.deepEqual(
      run.events.map((e) => e.kind),
      ['waiting', 'acquired'],
      'rechecks that found the same queue said nothing new',
    );
    await cleanUp(key, [holder.subscription, run.subscription], [holder.lease, waiter.lease]);
  });
});

/** Polls `done` every 20 ms for up to 10 s; fails at once if `failure()` is set (the stream errored). */
async function waitFor(done: () => boolean, what: string, failure: () => unknown): Promise<void> {
  for (const deadline = Date.now() + 10_000; !done(); await new Promise((resolve) => setTimeout(resolve, 20))) {
    if (failure() !== undefined) throw new Error(`failed while waiting for ${what}`, { cause: failure() });
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after 10 s`);
  }
}
