import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { QueueView } from './mutex.js';
import { WaiterWatches } from './waiter-watches.js';

/**
 * How a waiter follows the queue when every watch of its client comes from one etcd watch (a locker's
 * SharedWatch): it watches every key ahead of its own, wakes when one of the `limit` nearest goes (as
 * NearestWatch (mutex.ts) does), and works out the queue itself, with no read.
 *
 * Why no read is needed there, when etcd's own lock reads the queue again after each wake-up: keys ahead of ours
 * never appear (a new key's create revision is above ours), they only go, so the keys ahead are those of our last
 * read minus those we have seen go. And our own key is still there: the shared watch is one etcd watch, whose
 * events come in revision order, our own key's watch (see watchOwnership) is served by it too, and deliveries run
 * in that order; had our key gone before (or in the same transaction as) the key ahead, its loss would have ended
 * the contender first. That is the check Jepsen asked for (a waiter whose key or lease vanished must not be told
 * it holds), made by ordering instead of a round trip. It needs our own key's watch to have run without a gap
 * since our last read: the contender reads when it had to create that watch again (`ownKeyWatchBroken`).
 *
 * Watches start just after the read's revision: the shared watch replays what went by since, in process (no
 * catch-up loop in etcd to wait on). A watch that fails (etcd cancelled the shared watch, or the change is older
 * than the replay buffer) ends the wait with `undefined`: the contender reads the queue, which is always safe. So
 * does `maxWaitMs` passing with no news, for a shared watch that went quiet (a paused member).
 *
 * Not a thundering herd: the watch events reach this process whatever we do (the shared watch covers the whole
 * prefix); a release costs a map lookup per waiter of this process on that lock, and wakes only the `limit`
 * waiters just behind it, as etcd's lock does, with no request.
 */
export class QueueWatch {
  readonly #watches: WaiterWatches;
  /** Keys ahead that went, with the revision at which they went, not yet taken into a view. */
  readonly #gone = new Map<string, bigint>();
  /** The `limit` keys just ahead of ours in the view waited on: only their going wakes the waiter. */
  #nearest = new Set<string>();
  #failed = false;

  constructor(
    client: Etcd3,
    scopeWatchers: Set<Watcher>,
    private readonly limit: number,
  ) {
    this.#watches = new WaiterWatches(client, scopeWatchers);
  }

  /**
   * Resolves with the queue, worked out here, once one of the `limit` keys just ahead of ours goes (the others
   * that went meanwhile taken out too: a key further ahead that goes changes neither whether we hold nor whom we
   * wait on, so it wakes nobody, as in NearestWatch). Resolves `undefined` when the queue must be read again: a
   * watch failed, or `maxWaitMs` passed with no news (the shared watch may be stalled).
   */
  async next(view: QueueView, maxWaitMs: number): Promise<QueueView | undefined> {
    if (!this.#failed) {
      const wanted = new Set(view.ahead.map((kv) => kv.key.toString()));
      this.#nearest = new Set(view.ahead.slice(0, this.limit).map((kv) => kv.key.toString()));
      this.#watches.keepOnly(wanted);
      for (const key of this.#gone.keys()) if (!wanted.has(key)) this.#gone.delete(key);
      for (const key of wanted) if (!this.#watches.has(key) && !this.#gone.has(key)) this.#open(key, view.revision);
      if (!this.#nearestWent()) await this.#watches.sleep(maxWaitMs);
    }
    if (this.#failed || !this.#nearestWent()) {
      this.#failed = false;
      this.#gone.clear();
      return undefined;
    }
    return this.#without(view);
  }

  /** Cancels every watch and the pending wait's timer. */
  close(): void {
    this.#watches.close();
    this.#gone.clear();
  }

  #nearestWent(): boolean {
    for (const key of this.#nearest) if (this.#gone.has(key)) return true;
    return false;
  }

  /** `view` without the keys seen going, as of the newest of those deletes. */
  #without(view: QueueView): QueueView {
    let revision = BigInt(view.revision);
    for (const at of this.#gone.values()) if (at > revision) revision = at;
    const ahead = view.ahead.filter((kv: IKeyValue) => !this.#gone.has(kv.key.toString()));
    this.#gone.clear();
    return { ticket: view.ticket, revision: revision.toString(), ahead };
  }

  /** Watches `key` (there at `revision`, as the read found it) from just after `revision`. */
  #open(key: string, revision: string): void {
    const watches = this.#watches;
    const watcher = watches.open(key, revision);
    watcher.on('delete', (kv: IKeyValue) => {
      if (!watches.isCurrent(key, watcher)) return;
      watches.drop(key);
      this.#gone.set(key, BigInt(kv.mod_revision));
      if (this.#nearest.has(key)) watches.wake();
    });
    watcher.on('error', () => {
      if (!watches.isCurrent(key, watcher)) return;
      watches.forget(key);
      watches.keepOnly(new Set());
      this.#failed = true;
      watches.wake();
    });
  }
}
