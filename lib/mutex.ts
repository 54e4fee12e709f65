import type { Etcd3, IKeyValue, IRangeRequest, IRequestOp, ITxnResponse, Watcher } from 'etcd3';
import { Observable } from 'rxjs';
import { isLockError, LockBusyError, LockLostError, UnavailableError } from './errors.js';
import type { Lease } from './session.js';
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
  /** `false`: if anyone is ahead, remove our key and fail with `ETCDLOCK_BUSY`. */
  wait: boolean;
  /** Delete our key at teardown. Off when the lease is this lock's alone: revoking it deletes the key. */
  deleteOnRelease: boolean;
  /** Receives, at teardown, a promise that settles once our key is gone (never rejects). */
  onRelease?: ((released: Promise<void>) => void) | undefined;
  /** A put on our key that keeps it on our lease is ours (an election's proclaim), not a loss. Default: off. */
  allowOwnPuts?: boolean | undefined;
}

/** The watches and pauses of one contender, and where their failures go. */
interface WatchScope {
  watchers: Set<Watcher>;
  active: () => boolean;
  fail: (err: unknown) => void;
  /** Resolves after `ms`, or at once when the contender is torn down (no timer outlives it). */
  pause: (ms: number) => Promise<void>;
  allowOwnPuts: boolean;
}

/** How long one KV request may take before we call etcd unavailable. */
const REQUEST_TIMEOUT_MS = 10_000;

/** The queue as one transaction saw it. */
interface QueueView {
  ticket: Ticket;
  /** The header revision of the response: watches start just after it. */
  revision: string;
  /** The key created just before ours, if any: the one we wait for. */
  predecessor: IKeyValue | undefined;
  /** The oldest key: the holder. */
  head: IKeyValue | undefined;
  /** How many keys are ahead of ours. */
  ahead: number;
}

/**
 * The key protocol of etcd's own lock: put our key under the prefix (one transaction, one round trip
 * when the lock is free), wait for our predecessor only (FIFO, no thundering herd), check that our
 * key still exists before reporting `acquired`, then watch it for as long as we hold it.
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

    const enqueued = enqueue(client, contender);
    const run = async () => {
      let view = await enqueued;
      if (stopped) return;
      watchOwnership(client, contender, view.ticket, view.revision, scope);
      while (view.predecessor) {
        if (!options.wait) throw new LockBusyError(contender.key, holderOf(view.head));
        subscriber.next({ kind: 'waiting', holder: holderOf(view.head), ahead: view.ahead });
        await deleted(client, view.predecessor.key, view.revision, watchers);
        if (stopped) return;
        const next = await lookBehindPatiently(client, contender, view.ticket, scope);
        if (stopped) return;
        if (!next) throw new LockLostError(contender.key, 'deleted', 'our queued key vanished while we waited');
        view = next;
      }
      subscriber.next({ kind: 'acquired', ticket: view.ticket });
    };
    run().catch(scope.fail);

    return () => {
      stopped = true;
      for (const end of pauses) end();
      for (const watcher of watchers) void watcher.cancel().catch(() => undefined);
      watchers.clear();
      if (options.deleteOnRelease) {
        const released = enqueued.then(
          (view) => release(client, view.ticket),
          () => undefined,
        );
        options.onRelease?.(released);
      }
    };
  });
}

/**
 * Puts our key if it is not there yet, and reads the queue in the same transaction: our fencing token,
 * the head, our predecessor and how many are ahead.
 */
async function enqueue(client: Etcd3, contender: Contender): Promise<QueueView> {
  const holderKey = contender.prefix + contender.lease.hex;
  const keyBuffer = Buffer.from(holderKey);
  const reads = queueReads(contender.prefix);
  const res = await txn(client, {
    compare: [{ key: keyBuffer, target: 'Create', result: 'Equal', create_revision: 0 }],
    success: [
      { request_put: { key: keyBuffer, value: Buffer.from(contender.id), lease: contender.lease.id } },
      ...reads.newest,
    ],
    failure: [{ request_range: { key: keyBuffer } }],
  });
  if (!res.succeeded) {
    // Our key was already there (a retried enqueue on the same lease): keep its place in the queue.
    const own = res.responses[0]?.response_range.kvs[0];
    if (!own) throw new Error(`etcd returned no value for ${holderKey}`);
    const view = await lookBehind(client, contender, { holderKey, fencingToken: own.create_revision });
    if (!view) throw new LockLostError(contender.key, 'deleted', 'our key vanished while we queued');
    return view;
  }
  // The put is seen by the reads after it in the same transaction: the newest key is ours, the one
  // before it our predecessor; our create revision is this response's revision.
  const fencingToken = res.header.revision;
  const newest = res.responses[1]?.response_range.kvs ?? [];
  const head = res.responses[2]?.response_range.kvs[0];
  const count = Number(res.responses[3]?.response_range.count ?? '1');
  return {
    ticket: { holderKey, fencingToken },
    revision: res.header.revision,
    predecessor: newest[1],
    head,
    ahead: count - 1,
  };
}

/**
 * Re-reads the queue from our ticket's point of view, in one transaction that first checks that our
 * key still exists with our create revision. That check is what keeps a waiter whose key (or lease)
 * vanished while queued from being told it holds the lock (the bug Jepsen found in etcd 3.4.3).
 * Resolves `undefined` when our key is gone.
 */
async function lookBehind(client: Etcd3, contender: Contender, ticket: Ticket): Promise<QueueView | undefined> {
  const reads = queueReads(contender.prefix, ticket.fencingToken);
  const res = await txn(client, {
    compare: [
      { key: Buffer.from(ticket.holderKey), target: 'Create', result: 'Equal', create_revision: ticket.fencingToken },
    ],
    success: reads.before,
    failure: [],
  });
  if (!res.succeeded) return undefined;
  return {
    ticket,
    revision: res.header.revision,
    predecessor: res.responses[0]?.response_range.kvs[0],
    head: res.responses[1]?.response_range.kvs[0],
    ahead: res.responses[2]?.response_range.kvs.length ?? 0,
  };
}

/** Pauses between re-reads of the queue while etcd fails them: from 50 ms, doubling, up to 1 s. */
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 1000;

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

/** The range reads that describe the queue: newest keys, head, count (all, or those before a revision). */
function queueReads(prefix: string, before?: string): { newest: IRequestOp[]; before: IRequestOp[] } {
  const range: IRangeRequest = { key: Buffer.from(prefix), range_end: prefixEnd(Buffer.from(prefix)) };
  const head: IRequestOp = { request_range: { ...range, sort_target: 'Create', sort_order: 'Ascend', limit: 1 } };
  if (before === undefined) {
    return {
      newest: [
        { request_range: { ...range, sort_target: 'Create', sort_order: 'Descend', limit: 2 } },
        head,
        { request_range: { ...range, count_only: true } },
      ],
      before: [],
    };
  }
  const earlier = { ...range, max_create_revision: (BigInt(before) - 1n).toString() };
  return {
    newest: [],
    before: [
      { request_range: { ...earlier, sort_target: 'Create', sort_order: 'Descend', limit: 1 } },
      head,
      // Listed, not counted: etcd (3.4 at least) counts a range before it applies max_create_revision.
      { request_range: { ...earlier, keys_only: true } },
    ],
  };
}

/**
 * Resolves when `key` is deleted at a revision after `revision`. Starting the watch just after the
 * revision we read (never earlier) keeps it on etcd's synced path: a watch that starts in the past is
 * served by a 100 ms catch-up loop in etcd 3.4. A watch cancelled by etcd (say, compaction) also
 * resolves: the caller re-reads the queue, which is always safe.
 */
function deleted(client: Etcd3, key: Buffer, revision: string, watchers: Set<Watcher>): Promise<void> {
  return new Promise((resolve) => {
    const watcher = client
      .watch()
      .key(key)
      .startRevision((BigInt(revision) + 1n).toString())
      .watcher();
    watchers.add(watcher);
    const done = () => {
      watchers.delete(watcher);
      void watcher.cancel().catch(() => undefined);
      resolve();
    };
    watcher.on('delete', done);
    watcher.on('error', done);
  });
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
  const watcher = client
    .watch()
    .key(ticket.holderKey)
    .startRevision((BigInt(revision) + 1n).toString())
    .watcher();
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
    // etcd cancelled the watch (compaction, say): check the key now, and watch again from there.
    watchers.delete(watcher);
    void watcher.cancel().catch(() => undefined);
    lookBehindPatiently(client, contender, ticket, scope).then((view) => {
      if (!scope.active()) return;
      if (view) watchOwnership(client, contender, ticket, view.revision, scope);
      else fail(new LockLostError(contender.key, 'deleted', `${ticket.holderKey} is gone`));
    }, fail);
  });
}

/** Deletes our key, guarded by its create revision so that a late retry never deletes a newer
 * holder's key. Never rejects: if etcd is unreachable, the lease's TTL ends the key. */
export async function release(client: Etcd3, ticket: Ticket): Promise<void> {
  const key = Buffer.from(ticket.holderKey);
  try {
    await txn(client, {
      compare: [{ key, target: 'Create', result: 'Equal', create_revision: ticket.fencingToken }],
      success: [{ request_delete_range: { key } }],
      failure: [],
    });
  } catch {
    // Unreachable: the key goes with its lease.
  }
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
