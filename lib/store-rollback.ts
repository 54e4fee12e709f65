/**
 * Noticing etcd's store going back in time. etcd restored from an older snapshot (`etcdctl snapshot restore`; etcd
 * 3.4 has no `--bump-revision`) comes back at the snapshot's revision, without the keys created since: a lock taken
 * after the snapshot is gone from etcd with no delete event to tell its holder, while its lease (granted before the
 * snapshot, a locker's) may live on and answer keepalives. Meanwhile the holder's watch waits for revisions the
 * restored store has not reached, and another contender finds the lock free.
 *
 * This matters for a locker, whose lease outlives its locks: a `lock$` grants its lease just before it puts its key,
 * so a snapshot that has the lease and not the key is one taken in that moment.
 *
 * A revision etcd has reached never comes back in one store. So every keepalive answer's header revision is
 * compared with the highest revision known to have been reached: our keys' create revisions and earlier answers.
 * A lower one is either a member that lags behind (a follower answering, harmless) or a store that went back;
 * one linearizable read (which the leader answers at the current revision) tells which. Only a store that went back
 * is reported. What this cannot see: a restored store that has already written its way past every revision we knew
 * before we next hear from it.
 */
import type { Etcd3 } from 'etcd3';
import { REQUEST_TIMEOUT_MS } from './session.js';

export class RollbackCheck {
  #highest = 0n;

  constructor(private readonly client: Etcd3) {}

  /** Records a revision etcd has reached: a key we created (its create revision), an answer's header. */
  reached(revision: string | bigint): void {
    const r = BigInt(revision);
    if (r > this.#highest) this.#highest = r;
  }

  /**
   * Whether an answer at `revision` (a keepalive's header) is below the highest revision reached: then ask
   * {@link confirm}. Otherwise it is recorded as reached.
   */
  below(revision: string): boolean {
    const answered = BigInt(revision);
    if (answered < this.#highest) return true;
    this.#highest = answered;
    return false;
  }

  /**
   * Asks etcd for its current revision: resolves it when the store went back below the highest revision reached
   * (which then starts again from it), else (a member that lagged) undefined. A read that fails says nothing: the
   * next keepalive asks again.
   */
  async confirm(): Promise<bigint | undefined> {
    let current: bigint;
    try {
      // Linearizable (the default): etcd answers at a revision at least as high as any it has committed.
      const res = await this.client.kv.range(
        { key: Buffer.from('\0'), keys_only: true, limit: 1 },
        { deadline: Date.now() + REQUEST_TIMEOUT_MS },
      );
      current = BigInt(res.header.revision);
    } catch {
      return undefined;
    }
    if (current >= this.#highest) return undefined;
    // The store's new history starts here: what we knew of the old one is no measure for it.
    this.#highest = current;
    return current;
  }
}
