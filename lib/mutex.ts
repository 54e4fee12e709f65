import type { Etcd3, IKeyValue, IRangeRequest, IRequestOp, ITxnResponse, Watcher } from 'etcd3';
import { Observable } from 'rxjs';
import { isLockError, LockBusyError, LockLostError, UnavailableError } from './errors.js';
import { permissionDenied } from './etcd-errors.js';
import { QueueWatch } from './queue-watch.js';
import { RETRY_FIRST_MS, RETRY_MAX_MS, retryWrite } from './retry-write.js';
import { type Lease, REQUEST_TIMEOUT_MS } from './session.js';
import { WaiterWatches } from './waiter-watches.js';
import { keepResumePoint } from './watch-resume.js';
import type { Holder } from './state.js';

/** One contender for a lock: who, under which prefix, on which lease. */
export interface Contender {
  /** The lock's name, for messages. */
  key: string;
  /** `key + '/'`: every contender owns `prefix + lease hex`. */
  prefix: string;
  id: string;
  lease: Lease;
}

/** Our place in the queue, once our key exists. */
export interface Ticket {
  holderKey: string;
  /** Our key's create revision: the fencing token. */
  fencingToken: string;
}

/** What {@link contend$} reports: someone is ahead of us, or the lock is ours. */
export type MutexEvent =
  { kind: 'waiting'; holder: Holder | undefined; ahead: number } | { kind: 'acquired'; ticket: Ticket };

/** Options of {@link contend$}. */
export interface ContendOptions {
  /** `false`: if `limit` or more are ahead, remove our key and fail with `ETCDLOCK_BUSY`. */
  wait: boolean;
  /**
   * How many contenders may hold at once (a semaphore): we hold when fewer than `limit` keys are ahead of ours.
   * Default 1: etcd's own lock, key for key and watch for watch.
   */
  limit?: number | undefined;
  /** Delete our key at teardown. Off when the lease is this lock's alone: revoking it deletes the key. */
  deleteOnRelease: boolean;
  /** Receives, at teardown, a promise that settles once our key is gone (never rejects). */
  onRelease?: ((released: Promise<void>) => void) | undefined;
  /**
   * With `deleteOnRelease`: a delete that fails is tried again (from 50 ms, doubling up to 1 s) for as long as this
   * says. A locker's key on its long-lived lease would otherwise keep the lock from everyone while the locker lives.
   * Default: one try (the lease's TTL ends the key).
   */
  retryReleaseWhile?: (() => boolean) | undefined;
  /** A put on our key that keeps it on our lease is ours (an election's proclaim), not a loss. Default: off. */
  allowOwnPuts?: boolean | undefined;
  /**
   * While waiting, read the queue again this often even if no watch said anything. Default: half the lease's
   * TTL, from 1 s to 30 s (see {@link recheckMsFor}).
   */
  recheckMs?: number | undefined;
  /**
   * The client's watches all come from one etcd watch, in revision order, and start from a past revision at no
   * cost (a locker's SharedWatch): a waiter then follows every key ahead of its own and holds, when the last it
   * must outwait goes, without reading the queue again (see {@link QueueWatch}). Default: off.
   */
  orderedWatches?: boolean | undefined;
}

/**
 * How often a waiter reads the queue again on its own: half the lease's TTL, at least 1 s, at most 30 s.
 *
 * A watch can go quiet without failing: its stream is on a member that is paused (SIGSTOP, a stalled disk, a VM
 * frozen) while the rest of the cluster carries on. The holder ahead releases, etcd deletes its key, and a waiter
 * whose watch sits on that member hears nothing until the member wakes, while its lease is kept alive through
 * another. Reading the queue now and then bounds that stall. Half the TTL keeps it within what the user already
 * accepts a dead holder may cost everyone; the floor keeps a short TTL from turning waiters into pollers.
 */
function recheckMsFor(lease: Lease): number {
  return Math.min(30_000, Math.max(1000, (lease.ttlSeconds * 1000) / 2));
}

/** The watches and pauses of one contender, and where their failures go. */
interface WatchScope {
  watchers: Set<Watcher>;
  active: () => boolean;
  fail: (err: unknown) => void;
  /** Resolves after `ms`, or at once when the contender is torn down (no timer outlives it). */
  pause: (ms: number) => Promise<void>;
  allowOwnPuts: boolean;
  /** Set once our own key's watch had to be created again: it may have missed a change, so read before holding. */
  ownKeyWatchBroken: boolean;
  /** How many may hold at once. */
  limit: number;
  /** Set once we hold: from then on no key may be ahead of ours (see {@link watchOwnership}). */
  held: boolean;
}

/** The queue as one transaction saw it (or as a {@link QueueWatch} worked it out since). */
export interface QueueView {
  ticket: Ticket;
  /** The header revision of the response: watches start just after it. */
  revision: string;
  /**
   * Every key ahead of ours, newest first: the last is the holder (the oldest of the holders, with a `limit`
   * above 1). With their values when we wait; names only when fewer than `limit` (the lock is ours).
   */
  ahead: IKeyValue[];
}

/** How a waiter waits for the queue to move: a new view, or `undefined` to read the queue again. */
interface Waiter {
  next(view: QueueView, maxWaitMs: number): Promise<QueueView | undefined>;
  close(): void;
}

/**
 * The key protocol of etcd's own lock: put our key under the prefix (one transaction, one round trip
 * when the lock is free), wait for our predecessor only (FIFO, no thundering herd), check that our
 * key still exists before reporting `acquired`, then watch it for as long as we hold it.
 *
 * With a `limit` of N (a semaphore), we hold when fewer than N keys are ahead of ours, and a waiter waits
 * for any of the N keys just ahead of its own to go (see {@link NearestWatch} for why that misses no
 * wake-up and wakes at most N waiters per release). N = 1 is exactly the lock above.
 * Errors with {@link LockLostError} when our key is deleted (`deleted`) or overwritten (`changed`),
 * {@link LockBusyError} in try-once mode, {@link UnavailableError} when etcd fails a request.
 */
export function contend$(client: Etcd3, contender: Contender, options: ContendOptions): Observable<MutexEvent> {
  return new Observable<MutexEvent>((subscriber) => {
    let stopped = false;
    const watchers = new Set<Watcher>();
    const pauses = new Set<() => void>();
    const scope: WatchScope = {
      watchers,
      allowOwnPuts: options.allowOwnPuts ?? false,
      ownKeyWatchBroken: false,
      limit: options.limit ?? 1,
      held: false,
      active: () => !stopped,
      pause: (ms) =>
        new Promise<void>((resolve) => {
          const end = () => {
            clearTimeout(timer);
            pauses.delete(end);
            resolve();
          };
          const timer = setTimeout(end, ms);
          pauses.add(end);
        }),
      fail: (err) => {
        if (stopped) return;
        subscriber.error(
          isLockError(err)
            ? err
            : new UnavailableError(`etcd failed while locking ${JSON.stringify(contender.key)}`, err),
        );
      },
    };

    const limit = scope.limit;
    const recheckMs = options.recheckMs ?? recheckMsFor(contender.lease);
    const enqueued = enqueue(client, contender, limit);
    // What the teardown needs of the enqueue: our ticket, not the whole first view of the queue (its head's
    // key-value holds Buffers sliced from the response), which thousands of held locks would keep.
    const ticket = enqueued.then(
      (view) => view.ticket,
      () => undefined,
    );
    // Made when we first wait: a free lock (most of them, at 10,000 locks) needs none.
    let waiter: Waiter | undefined;
    const run = async (first: Promise<QueueView>) => {
      let view = await first;
      if (stopped) return;
      watchOwnership(client, contender, view.ticket, view.revision, scope);
      let told = '';
      try {
        while (view.ahead.length >= limit) {
          const holder = holderOf(view.ahead.at(-1));
          if (!options.wait) throw new LockBusyError(contender.key, holder);
          // A re-read that changed nothing (a recheck, or a key further ahead that went) is not news.
          const news = `${holder?.fencingToken}/${holder?.id}/${view.ahead.length}`;
          if (news !== told) subscriber.next({ kind: 'waiting', holder, ahead: view.ahead.length });
          told = news;
          waiter ??= options.orderedWatches
            ? new QueueWatch(client, watchers, limit)
            : new NearestWatch(client, watchers, limit);
          const worked = await waiter.next(view, recheckMs);
          if (stopped) return;
          // A view worked out from the watches is trusted to hold only while our own key's watch ran unbroken.
          const next =
            worked && (worked.ahead.length >= limit || !scope.ownKeyWatchBroken)
              ? worked
              : await lookBehindPatiently(client, contender, view.ticket, scope);
          if (stopped) return;
          if (!next) throw new LockLostError(contender.key, 'deleted', 'our queued key vanished while we waited');
          view = next;
        }
      } finally {
        waiter?.close();
      }
      scope.held = true;
      subscriber.next({ kind: 'acquired', ticket: view.ticket });
    };
    run(enqueued).catch(scope.fail);

    return () => {
      stopped = true;
      waiter?.close();
      for (const end of pauses) end();
      for (const watcher of watchers) void watcher.cancel().catch(() => undefined);
      watchers.clear();
      if (options.deleteOnRelease) {
        // No ticket: the enqueue failed, maybe only on our side (a time-out), and etcd may have applied it.
        const retryWhile = options.retryReleaseWhile;
        const released = ticket.then((own) =>
          own ? release(client, own, retryWhile) : withdraw(client, contender, retryWhile),
        );
        options.onRelease?.(released);
      }
    };
  });
}

/**
 * Puts our key if it is not there yet, and reads in the same transaction the names of the `limit` keys just
 * ahead of ours: fewer than `limit`, and the lock is ours in this one round trip. Otherwise a second read lists
 * every key ahead with its value (who holds, how many are ahead), for the `waiting` state and the wait.
 */
async function enqueue(client: Etcd3, contender: Contender, limit: number): Promise<QueueView> {
  const holderKey = contender.prefix + contender.lease.hex;
  const keyBuffer = Buffer.from(holderKey);
  const res = await txn(client, {
    compare: [{ key: keyBuffer, target: 'Create', result: 'Equal', create_revision: 0 }],
    success: [
      { request_put: { key: keyBuffer, value: Buffer.from(contender.id), lease: contender.lease.id } },
      {
        request_range: {
          ...prefixRange(contender.prefix),
          sort_target: 'Create',
          sort_order: 'Descend',
          limit: limit + 1,
          keys_only: true,
        },
      },
    ],
    failure: [{ request_range: { key: keyBuffer } }],
  });
  if (!res.succeeded) {
    // Our key was already there (a retried enqueue on the same lease): keep its place in the queue.
    const own = res.responses[0]?.response_range.kvs[0];
    if (!own) throw new Error(`etcd returned no value for ${holderKey}`);
    return lookBehindAfterEnqueue(client, contender, { holderKey, fencingToken: own.create_revision });
  }
  // The put is seen by the read after it in the same transaction: the newest key is ours, the ones before it
  // the nearest ahead of us; our create revision is this response's revision. Fewer than `limit` ahead: ours.
  const ticket = { holderKey, fencingToken: res.header.revision };
  const newest = res.responses[1]?.response_range.kvs ?? [];
  if (newest.length <= limit) return { ticket, revision: res.header.revision, ahead: newest.slice(1) };
  // We wait: who holds and how many are ahead come from a second read (a free lock takes one round trip).
  return lookBehindAfterEnqueue(client, contender, ticket);
}

/** {@link lookBehind} right after our enqueue, when our key cannot have gone unless someone deleted it. */
async function lookBehindAfterEnqueue(client: Etcd3, contender: Contender, ticket: Ticket): Promise<QueueView> {
  const view = await lookBehind(client, contender, ticket);
  if (!view) throw new LockLostError(contender.key, 'deleted', 'our key vanished while we queued');
  return view;
}

/**
 * Re-reads the queue from our ticket's point of view, in one transaction that first checks that our
 * key still exists with our create revision. That check is what keeps a waiter whose key (or lease)
 * vanished while queued from being told it holds the lock (the bug Jepsen found in etcd 3.4.3).
 * Resolves `undefined` when our key is gone.
 */
async function lookBehind(client: Etcd3, contender: Contender, ticket: Ticket): Promise<QueueView | undefined> {
  const res = await txn(client, {
    compare: [
      { key: Buffer.from(ticket.holderKey), target: 'Create', result: 'Equal', create_revision: ticket.fencingToken },
    ],
    success: [aheadOf(contender.prefix, ticket.fencingToken)],
    failure: [],
  });
  if (!res.succeeded) return undefined;
  return { ticket, revision: res.header.revision, ahead: res.responses[0]?.response_range.kvs ?? [] };
}

/**
 * {@link lookBehind}, retried while etcd fails the request, for as long as the scope is active. A
 * re-read after a wait or a cancelled watch must not turn a blip into a failure: if etcd stays away,
 * the session's local deadline ends the lock (lost, `expired`), which is the one place that decides.
 */
async function lookBehindPatiently(
  client: Etcd3,
  contender: Contender,
  ticket: Ticket,
  scope: WatchScope,
): Promise<QueueView | undefined> {
  for (let pauseMs = RETRY_FIRST_MS; ; pauseMs = Math.min(pauseMs * 2, RETRY_MAX_MS)) {
    try {
      return await lookBehind(client, contender, ticket);
    } catch (err) {
      if (!scope.active() || isLockError(err)) throw err;
      await scope.pause(pauseMs);
      if (!scope.active()) return undefined;
    }
  }
}

/** Every key under `prefix`. */
function prefixRange(prefix: string): IRangeRequest {
  return { key: Buffer.from(prefix), range_end: prefixEnd(Buffer.from(prefix)) };
}

/**
 * Every key ahead of the one created at `fencingToken`, newest first, with values. Listed, not counted: etcd (3.4 at
 * least) counts a range before it applies max_create_revision.
 */
function aheadOf(prefix: string, fencingToken: string): IRequestOp {
  return {
    request_range: {
      ...prefixRange(prefix),
      max_create_revision: (BigInt(fencingToken) - 1n).toString(),
      sort_target: 'Create',
      sort_order: 'Descend',
    },
  };
}

/**
 * Watches the keys just ahead of ours, one watch per key, and wakes the waiter when any of them goes.
 *
 * Why any of the `limit` nearest, and only those: we hold when fewer than `limit` keys are ahead of ours. Keys
 * ahead of ours never appear (a new key's create revision is above ours), they only go. While at least `limit`
 * are ahead, a key that goes further ahead than the `limit` nearest leaves those nearest unchanged and still
 * `limit` or more ahead: nothing to do, and nothing missed. A key among the nearest that goes changes both, so
 * that is what we watch for; we then read the queue again (which also checks that our own key is still there)
 * and watch the new nearest. With `limit` 1, that is the predecessor alone: etcd's own lock. Each key is among
 * the nearest of at most `limit` waiters (the ones just behind it), so a release wakes at most `limit` waiters
 * however long the queue, and each waiter holds `limit` watches.
 *
 * A key's watch is kept across re-reads while the key stays among the nearest. Each watch starts at etcd's
 * current revision, not at the revision of the read that found its key: etcd 3.4 serves a watch that starts in
 * the past from a catch-up loop that runs every 100 ms, and every handoff would wait on it. What happened in
 * between is then checked by hand: once etcd has created the watch, if its revision is past our read, we read
 * the key (one range) and count it gone if it is missing or is a new key of the same name (another create
 * revision). A watch cancelled by etcd (say, compaction) or a check that fails wakes the waiter too: it reads
 * the queue again, which is always safe. So does `maxWaitMs` passing with no news (see {@link recheckMsFor}).
 */
class NearestWatch implements Waiter {
  readonly #watches: WaiterWatches;
  /** The newest revision at which a watched key went since the last wait; `'any'` when unknown. */
  #goneAt: bigint | 'any' | undefined;

  constructor(
    client: Etcd3,
    scopeWatchers: Set<Watcher>,
    private readonly limit: number,
  ) {
    this.#watches = new WaiterWatches(client, scopeWatchers);
  }

  /**
   * Resolves once one of the `limit` keys nearest ahead in `view` goes after the view's revision, or after
   * `maxWaitMs` at the latest; the queue must then be read again.
   */
  async next(view: QueueView, maxWaitMs: number): Promise<undefined> {
    const goneAt = this.#goneAt;
    this.#goneAt = undefined;
    // A key went after the read we are given, while we were reading: read again at once.
    if (goneAt === 'any' || (goneAt !== undefined && goneAt > BigInt(view.revision))) return undefined;
    const wanted = new Map(view.ahead.slice(0, this.limit).map((kv) => [kv.key.toString(), kv]));
    this.#watches.keepOnly(wanted);
    for (const [key, kv] of wanted) if (!this.#watches.has(key)) this.#open(key, kv.create_revision, view.revision);
    await this.#watches.sleep(maxWaitMs);
    return undefined;
  }

  close(): void {
    this.#watches.close();
  }

  /** Watches `key` (created at `createRevision`, as the read at `revision` found it) from now on. */
  #open(key: string, createRevision: string, revision: string): void {
    const watches = this.#watches;
    const watcher = watches.open(key);
    const gone = (at: bigint | 'any', cancelledByEtcd = false) => {
      if (!watches.isCurrent(key, watcher)) return;
      if (cancelledByEtcd) watches.forget(key);
      else watches.drop(key);
      const before = this.#goneAt;
      this.#goneAt = before === 'any' || at === 'any' ? 'any' : before !== undefined && before > at ? before : at;
      watches.wake();
    };
    /** Up to which revision we know the key was still there. */
    let seenAt = BigInt(revision);
    // 'connected' comes when etcd has created the watch (again, after a reconnection), with the revision it
    // started from: the changes after `seenAt` and up to that one are read by hand.
    watcher.on('connected', (res: { header: { revision: string } }) => {
      const startedAt = BigInt(res.header.revision);
      if (!watches.isCurrent(key, watcher) || startedAt <= seenAt) return;
      txn(watches.client, { compare: [], success: [{ request_range: { key: Buffer.from(key) } }], failure: [] }).then(
        (read) => {
          const kv = read.responses[0]?.response_range.kvs[0];
          if (kv?.create_revision !== createRevision) gone(BigInt(read.header.revision));
          else if (BigInt(read.header.revision) > seenAt) seenAt = BigInt(read.header.revision);
        },
        () => gone('any'),
      );
    });
    watcher.on('delete', (kv: IKeyValue) => gone(kv.mod_revision ? BigInt(kv.mod_revision) : 'any'));
    watcher.on('error', () => gone('any', true));
  }
}

/** Watches our own key from just after `revision`: a delete or a put by anyone else means loss. */
function watchOwnership(
  client: Etcd3,
  contender: Contender,
  ticket: Ticket,
  revision: string,
  scope: WatchScope,
): void {
  const { watchers, fail } = scope;
  const from = (BigInt(revision) + 1n).toString();
  const watcher = client.watch().key(ticket.holderKey).startRevision(from).watcher();
  keepResumePoint(watcher, from);
  watchers.add(watcher);
  const lost = (reason: 'deleted' | 'changed', detail: string) => {
    watchers.delete(watcher);
    void watcher.cancel().catch(() => undefined);
    fail(new LockLostError(contender.key, reason, detail));
  };
  watcher.on('delete', (kv) => lost('deleted', `${ticket.holderKey} was deleted at revision ${kv.mod_revision}`));
  watcher.on('put', (kv) => {
    if (scope.allowOwnPuts && kv.lease === contender.lease.id) return;
    lost('changed', `${ticket.holderKey} was overwritten at revision ${kv.mod_revision}`);
  });
  watcher.on('error', () => {
    // etcd cancelled the watch (compaction, say): check the key now, and watch again from there. Not
    // watcher.cancel(): etcd3 has already let go of it (see WaiterWatches.forget).
    watchers.delete(watcher);
    scope.ownKeyWatchBroken = true;
    lookBehindPatiently(client, contender, ticket, scope).then((view) => {
      if (!scope.active()) return;
      if (!view) fail(new LockLostError(contender.key, 'deleted', `${ticket.holderKey} is gone`));
      // Keys ahead of a holder's cannot appear (a new key's create revision is above ours), unless etcd went back to
      // an older snapshot in which a former holder's key is still there: then the lock is that holder's again.
      else if (scope.held && view.ahead.length >= scope.limit) {
        const holder = holderOf(view.ahead.at(-1));
        const who = holder ? `${holder.id} (token ${holder.fencingToken})` : 'another holder';
        fail(new LockLostError(contender.key, 'changed', `${who} is ahead of ${ticket.holderKey} again`));
      } else watchOwnership(client, contender, ticket, view.revision, scope);
    }, fail);
  });
}

/**
 * Deletes our key, guarded by its create revision so that a late retry never deletes a newer holder's key. Never
 * rejects. A failed delete is tried again while `retryWhile()` says so; otherwise the lease's TTL ends the key.
 */
export function release(client: Etcd3, ticket: Ticket, retryWhile?: () => boolean): Promise<void> {
  const key = Buffer.from(ticket.holderKey);
  return persistently(
    () =>
      txn(client, {
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: ticket.fencingToken }],
        success: [{ request_delete_range: { key } }],
        failure: [],
      }),
    retryWhile,
  );
}

/**
 * After an enqueue that failed without saying whether etcd applied it (a time-out while etcd stalled): deletes our
 * key if it is there on our lease, so that it does not keep the lock from everyone for as long as a shared lease
 * lives. A put etcd applies later still is a locker's to find (SessionLocker's orphan check). Never rejects.
 */
function withdraw(client: Etcd3, contender: Contender, retryWhile?: () => boolean): Promise<void> {
  const key = Buffer.from(contender.prefix + contender.lease.hex);
  return persistently(
    () =>
      txn(client, {
        compare: [{ key, target: 'Lease', result: 'Equal', lease: contender.lease.id }],
        success: [{ request_delete_range: { key } }],
        failure: [],
      }),
    retryWhile,
  );
}

/** Tries `write` again after a failure while `retryWhile()` says so, unless etcd says we may not (no retry helps). */
function persistently(write: () => Promise<unknown>, retryWhile: () => boolean = () => false): Promise<void> {
  return retryWrite(write, (err) => retryWhile() && !permissionDenied(err));
}

function txn(client: Etcd3, request: Parameters<Etcd3['kv']['txn']>[0]): Promise<ITxnResponse> {
  return client.kv.txn(request, { deadline: Date.now() + REQUEST_TIMEOUT_MS });
}

function holderOf(kv: IKeyValue | undefined): Holder | undefined {
  return kv ? { id: kv.value.toString(), fencingToken: kv.create_revision } : undefined;
}

/** The end of the key range that holds every key starting with `prefix`. */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
