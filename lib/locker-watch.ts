import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { TxnBatcher } from './locker-batch.js';
import { keepResumePoint } from './watch-resume.js';

/** One change under the watched prefix, with the revision at which it happened. */
interface Change {
  type: 'put' | 'delete';
  key: string;
  revision: bigint;
  kv: IKeyValue;
}

/** The part of etcd3's `WatchBuilder` that `contend$` uses: a key, and a start revision or else from now. */
interface KeyWatchBuilder {
  key(key: string | Buffer): KeyWatchBuilder;
  startRevision(revision: string): KeyWatchBuilder;
  watcher(): Watcher;
}

/** Changes kept for watches that register just after the change went by (see {@link SharedWatch.attach}). */
const RECENT_CHANGES = 1024;

/**
 * One etcd watch on a locker's whole prefix, serving every per-key watch of its locks.
 *
 * {@link contend$} opens one watch per held key (its own key) and one per waiter (its predecessor's key).
 * Through etcd3 that is one watch request each, created one after another on the shared stream, and every event
 * is matched against every watcher in a list: at 10,000 locks, seconds of set-up and O(n) work per event. Here a
 * single prefix watch receives every change under `${name}/`, and dispatches it through a map by key to the
 * per-key watches {@link watch} hands out, which behave like etcd3's for what `contend$` uses: `on('put' |
 * 'delete' | 'error')`, `cancel()`, and a start revision.
 *
 * A per-key watch must see every change from its start revision on. The shared watch sees every change after
 * the revision at which it was created (`syncedAfter`), and keeps the last {@link RECENT_CHANGES} changes, so
 * that a per-key watch registered a moment after its change went by (a transaction's answer and a watch event
 * can arrive in the same read from the socket) still gets it. When neither covers the start revision (a change
 * older than the buffer, or the shared watch was restarted after etcd cancelled it), the per-key watch emits
 * `error`, which `contend$` answers by reading the queue again and watching from there: always safe.
 */
export class SharedWatch {
  readonly #client: Etcd3;
  readonly #prefix: string;
  #watcher: Watcher | undefined;
  /** Every change with a revision above this reaches us; undefined until the watch is created. */
  #syncedAfter: bigint | undefined;
  /** The newest revision we know of: every change up to it has reached us. */
  #latest = 0n;
  /** {@link #recent} holds every change with a revision above this. */
  #floor = 0n;
  #recent: Change[] = [];
  readonly #byKey = new Map<string, Set<KeyWatch>>();
  /** Registered while the shared watch was being (re)created: attached once it is. */
  readonly #waiting = new Set<KeyWatch>();
  #closed = false;
  readonly #firstSync: Promise<void>;
  #synced!: () => void;

  /** Told of every put under the prefix, as it is dispatched. */
  readonly #onPut: ((key: string, kv: IKeyValue) => void) | undefined;

  constructor(client: Etcd3, prefix: string, onPut?: (key: string, kv: IKeyValue) => void) {
    this.#client = client;
    this.#prefix = prefix;
    this.#onPut = onPut;
    this.#firstSync = new Promise((resolve) => (this.#synced = resolve));
    this.#open();
  }

  /** The newest revision whose changes have all reached us. */
  get latest(): bigint {
    return this.#latest;
  }

  /** Resolves once the shared watch has been created the first time. */
  ready(): Promise<void> {
    return this.#firstSync;
  }

  /** A builder for per-key watches, shaped like the part of etcd3's `WatchBuilder` that `contend$` uses. */
  watch(): KeyWatchBuilder {
    let key = '';
    let from: bigint | undefined;
    const builder: KeyWatchBuilder = {
      key: (value: string | Buffer) => {
        key = value.toString();
        return builder;
      },
      startRevision: (revision: string) => {
        from = BigInt(revision);
        return builder;
      },
      watcher: (): Watcher => {
        const keyWatch = new KeyWatch(this, key, from);
        this.attach(keyWatch);
        // contend$ uses only on('connected' | 'put' | 'delete' | 'error') and cancel(), which KeyWatch has.
        return keyWatch as unknown as Watcher;
      },
    };
    return builder;
  }

  /** Cancels the shared watch; per-key watches stay silent from now on. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#byKey.clear();
    this.#waiting.clear();
    const watcher = this.#watcher;
    this.#watcher = undefined;
    await watcher?.cancel().catch(() => undefined);
  }

  /**
   * Starts delivering to `keyWatch`: first the recent changes it missed, then live ones. One without a start
   * revision starts after the newest change we know of, as an etcd watch without one starts after etcd's current
   * revision, and is told that revision in a `connected` event, as etcd3's watcher is.
   */
  attach(keyWatch: KeyWatch): void {
    if (this.#closed) return;
    if (this.#syncedAfter === undefined) {
      this.#waiting.add(keyWatch);
      return;
    }
    if (keyWatch.from === undefined) {
      // From now: nothing to replay, and `connected` says where "now" was. A watch with a start revision (a
      // holder's own key) is not told: contend$ does not ask, and thousands of locks would each pay a microtask.
      keyWatch.from = this.#latest + 1n;
      keyWatch.deliver('connected', { header: { revision: this.#latest.toString() } });
    }
    const from = keyWatch.from;
    if (from <= this.#floor) {
      keyWatch.deliver('error', new Error(`changes from revision ${from} are no longer at hand`));
      return;
    }
    let watches = this.#byKey.get(keyWatch.key);
    if (!watches) this.#byKey.set(keyWatch.key, (watches = new Set()));
    watches.add(keyWatch);
    // #recent is in revision order: only its tail, from `from` on, can concern this watch (scanning all of it at
    // every attach made taking 10,000 locks O(10,000 x RECENT_CHANGES)).
    const recent = this.#recent;
    let first = recent.length;
    while (first > 0 && recent[first - 1]!.revision >= from) first--;
    for (const change of recent.slice(first)) {
      if (change.key === keyWatch.key) keyWatch.deliver(change.type, change.kv);
    }
  }

  detach(keyWatch: KeyWatch): void {
    this.#waiting.delete(keyWatch);
    const watches = this.#byKey.get(keyWatch.key);
    if (!watches?.delete(keyWatch)) return;
    if (watches.size === 0) this.#byKey.delete(keyWatch.key);
  }

  #open(): void {
    const watcher = this.#client.watch().prefix(this.#prefix).watcher();
    this.#watcher = watcher;
    keepResumePoint(watcher, undefined);
    let created = false;
    watcher.on('connected', (res: { header: { revision: string } }) => {
      // Later 'connected' events are reconnections, which etcd3 resumes from the last revision it saw.
      if (created || watcher !== this.#watcher) return;
      created = true;
      // A watch created without a start revision starts just after the revision in its creation header.
      this.#syncedAfter = BigInt(res.header.revision);
      this.#floor = this.#syncedAfter;
      this.#latest = this.#syncedAfter;
      this.#synced();
      const waiting = [...this.#waiting];
      this.#waiting.clear();
      for (const keyWatch of waiting) this.attach(keyWatch);
    });
    watcher.on('put', (kv: IKeyValue) => {
      if (watcher === this.#watcher) this.#dispatch('put', kv);
    });
    watcher.on('delete', (kv: IKeyValue) => {
      if (watcher === this.#watcher) this.#dispatch('delete', kv);
    });
    watcher.on('error', () => {
      // etcd cancelled the watch (a compaction, say). Not watcher.cancel(): etcd3 has already let go of it (see
      // WaiterWatches.forget).
      if (watcher === this.#watcher) this.#startOver('the shared watch was cancelled by etcd');
    });
  }

  /**
   * Drops the shared watch and starts a new one from etcd's current revision, as when etcd cancels it: every
   * per-key watch gets `error`, and reads its key again. For a store that went back to an older revision (see
   * store-rollback.ts), where the watch waits for revisions the store has not reached.
   */
  restart(why: string): void {
    const watcher = this.#watcher;
    if (this.#closed || !watcher) return;
    void watcher.cancel().catch(() => undefined);
    this.#startOver(why);
  }

  /** Every per-key watch reads its key again, and the shared watch starts over from etcd's current revision. */
  #startOver(why: string): void {
    this.#watcher = undefined;
    this.#syncedAfter = undefined;
    this.#latest = 0n;
    this.#recent = [];
    const watches = [...this.#byKey.values()].flatMap((set) => [...set]);
    this.#byKey.clear();
    for (const keyWatch of watches) keyWatch.deliver('error', new Error(why));
    if (!this.#closed) this.#open();
  }

  #dispatch(type: Change['type'], kv: IKeyValue): void {
    const change: Change = { type, key: kv.key.toString(), revision: BigInt(kv.mod_revision), kv };
    if (change.revision > this.#latest) this.#latest = change.revision;
    this.#recent.push(change);
    if (this.#recent.length > RECENT_CHANGES) this.#floor = this.#recent.shift()!.revision;
    if (type === 'put') this.#onPut?.(change.key, kv);
    const watches = this.#byKey.get(change.key);
    if (!watches) return;
    for (const keyWatch of watches) {
      if (change.revision >= (keyWatch.from ?? 0n)) keyWatch.deliver(type, kv);
    }
  }
}

type Handler = (arg: unknown) => void;
type KeyWatchEvent = 'connected' | 'put' | 'delete' | 'error';

/**
 * A per-key watch served by a {@link SharedWatch}: lighter than an EventEmitter (thousands are alive at once),
 * and it delivers each event in a microtask, in order, so that handlers attached right after `watcher()`
 * returns, as `contend$` attaches them, get events replayed at registration too.
 */
class KeyWatch {
  /** Event, handler, event, handler, ...: one small array, not a Map of arrays (thousands are alive at once). */
  readonly #handlers: (KeyWatchEvent | Handler)[] = [];
  #cancelled = false;

  constructor(
    private readonly hub: SharedWatch,
    readonly key: string,
    public from: bigint | undefined,
  ) {}

  on(event: KeyWatchEvent, handler: Handler): this {
    this.#handlers.push(event, handler);
    return this;
  }

  cancel(): Promise<void> {
    this.#cancelled = true;
    this.hub.detach(this);
    return Promise.resolve();
  }

  deliver(event: KeyWatchEvent, arg: unknown): void {
    queueMicrotask(() => {
      if (this.#cancelled) return;
      const handlers = this.#handlers;
      for (let i = 0; i < handlers.length; i += 2) if (handlers[i] === event) (handlers[i + 1] as Handler)(arg);
    });
  }
}

/**
 * The client `contend$` uses for the locks of one session: transactions go through `batcher` (many locks in
 * one request) and watches through `watch` (one watch for all); once `ended()` (the session is lost or the
 * locker closes), a transaction fails at once instead of reaching etcd, so that thousands of per-key releases
 * are not sent where one lease revoke deletes every key. (`release()` in mutex.ts swallows that failure, as it
 * does an unreachable etcd.)
 */
export function sessionClient(batcher: TxnBatcher, watch: SharedWatch, ended: () => boolean): Etcd3 {
  // One error for every refused transaction: closing a locker that holds 10,000 locks refuses 10,000 releases,
  // and a stack trace for each took ~90 ms of a ~450 ms close().
  let endedError: Error | undefined;
  const view = {
    kv: {
      txn: (...args: Parameters<Etcd3['kv']['txn']>) =>
        ended() ? Promise.reject((endedError ??= new Error('the session has ended'))) : batcher.txn(...args),
    },
    watch: () => watch.watch(),
  };
  // contend$ uses only `kv.txn` and `watch().key()[.startRevision()].watcher()`; the locker's tests cover both.
  return view as unknown as Etcd3;
}
