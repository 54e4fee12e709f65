import type { Etcd3, Watcher } from 'etcd3';
import { keepResumePoint } from './watch-resume.js';

/**
 * What every waiter of contend$ keeps while it waits (see NearestWatch in mutex.ts and QueueWatch): one watch per
 * key it follows, registered with the contender so that teardown cancels them, and the one pending wait, which
 * ends when woken or after a time, whichever comes first (no timer outlives it).
 */
export class WaiterWatches {
  readonly client: Etcd3;
  /** The contender's watches: teardown cancels whatever is in there. */
  readonly #scope: Set<Watcher>;
  readonly #byKey = new Map<string, Watcher>();
  #wake: (() => void) | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(client: Etcd3, scope: Set<Watcher>) {
    this.client = client;
    this.#scope = scope;
  }

  /** Watches `key` from just after `afterRevision`, or from now without one. */
  open(key: string, afterRevision?: string): Watcher {
    const builder = this.client.watch().key(Buffer.from(key));
    const from = afterRevision === undefined ? undefined : (BigInt(afterRevision) + 1n).toString();
    if (from !== undefined) builder.startRevision(from);
    const watcher = builder.watcher();
    keepResumePoint(watcher, from);
    this.#byKey.set(key, watcher);
    this.#scope.add(watcher);
    return watcher;
  }

  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  /** False once `watcher` was dropped: the events of a dropped watch are old news. */
  isCurrent(key: string, watcher: Watcher): boolean {
    return this.#byKey.get(key) === watcher;
  }

  /** Drops every watch whose key is not in `keys`. */
  keepOnly(keys: { has(key: string): boolean }): void {
    for (const key of [...this.#byKey.keys()]) if (!keys.has(key)) this.drop(key);
  }

  drop(key: string): void {
    const watcher = this.forget(key);
    void watcher?.cancel().catch(() => undefined);
  }

  /**
   * Lets go of `key`'s watch without cancelling it: for a watch that emitted `error`, which etcd cancelled. etcd3
   * has already let go of it then, and cancelling it again sends etcd a cancel for a watch ID it no longer knows
   * of; etcd's answer to that makes etcd3 throw inside its watch stream, whose watches are then never created
   * again (spec/integration/watch-cancelled.spec.ts).
   */
  forget(key: string): Watcher | undefined {
    const watcher = this.#byKey.get(key);
    if (!watcher) return undefined;
    this.#byKey.delete(key);
    this.#scope.delete(watcher);
    return watcher;
  }

  /** Resolves on {@link wake}, or after `maxWaitMs` at the latest. */
  sleep(maxWaitMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
      this.#timer = setTimeout(() => this.wake(), maxWaitMs);
    });
  }

  wake(): void {
    clearTimeout(this.#timer);
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Cancels every watch and the pending wait's timer (the wait itself is abandoned, not resolved). */
  close(): void {
    this.keepOnly(new Set());
    clearTimeout(this.#timer);
    this.#wake = undefined;
  }
}
