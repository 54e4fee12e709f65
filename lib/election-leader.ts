import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { Observable } from 'rxjs';
import { validateElectionName } from './election-options.js';
import type { Leader } from './election-state.js';
import { UnavailableError } from './errors.js';
import { assertClient } from './options.js';
import { REQUEST_TIMEOUT_MS } from './session.js';
import { keepResumePoint } from './watch-resume.js';

/**
 * Who leads the election `name`, without running in it: a cold stream that emits the leader (or `null` when nobody
 * runs) at once, then again each time that changes: a new leader, nobody, or the leader proclaiming a new value. It
 * takes no lease and writes nothing. It never completes; it errors with `ETCDLOCK_UNAVAILABLE` when etcd cannot be
 * read at subscribe (or after etcd cancelled its watch, say by a compaction). While etcd cannot be reached it stays
 * silent: the etcd3 client reconnects its watch and it catches up from where it was.
 *
 * The leader is the candidate with the oldest key under `${name}/`, as in etcd's own election, so it sees leaders
 * elected by `etcdctl elect` and Go's `concurrency.Election` as well as by {@link campaign$}.
 *
 * @throws InvalidArgumentError at once for a bad client or name.
 *
 * @example
 * ```ts
 * import { Etcd3 } from 'etcd3';
 * import { leader$ } from 'etcd-lock';
 *
 * const client = new Etcd3({ hosts: '127.0.0.1:2379' });
 * const subscription = leader$(client, '/services/scheduler').subscribe({
 *   next: (leader) => console.log(leader ? `${leader.id} leads (token ${leader.fencingToken})` : 'nobody leads'),
 *   error: (err) => console.error('cannot observe the election:', err.code),
 * });
 * // ...later
 * subscription.unsubscribe();
 * ```
 */
export function leader$(client: Etcd3, name: string): Observable<Leader | null> {
  assertClient(client);
  const prefix = `${validateElectionName(name)}/`;

  return new Observable<Leader | null>((subscriber) => {
    let stopped = false;
    let watcher: Watcher | undefined;
    let last: Leader | null | undefined;
    // Every candidate's key, kept up to date from one watch on the prefix: the leader is the oldest of them. A handful
    // of candidates is the norm, and this way a change of leader needs no read.
    const candidates = new Map<string, IKeyValue>();

    const emitIfChanged = () => {
      let oldest: IKeyValue | undefined;
      for (const kv of candidates.values()) {
        if (!oldest || BigInt(kv.create_revision) < BigInt(oldest.create_revision)) oldest = kv;
      }
      const leader = oldest ? toLeader(oldest) : null;
      if (last !== undefined && sameLeader(last, leader)) return;
      last = leader;
      subscriber.next(leader);
    };

    const fail = (err: unknown) => {
      if (!stopped)
        subscriber.error(new UnavailableError(`Could not observe the election ${JSON.stringify(name)}`, err));
    };

    const follow = async () => {
      const res = await client
        .getAll()
        .prefix(prefix)
        .options({ deadline: Date.now() + REQUEST_TIMEOUT_MS })
        .exec();
      if (stopped) return;
      candidates.clear();
      for (const kv of res.kvs) candidates.set(kv.key.toString('latin1'), kv);
      emitIfChanged();
      // Just after the revision we read: no event is missed, and the watch starts on etcd's synced path.
      const from = (BigInt(res.header.revision) + 1n).toString();
      const current = client.watch().prefix(prefix).startRevision(from).watcher();
      keepResumePoint(current, from);
      watcher = current;
      current.on('put', (kv) => {
        candidates.set(kv.key.toString('latin1'), kv);
        emitIfChanged();
      });
      current.on('delete', (kv) => {
        candidates.delete(kv.key.toString('latin1'));
        emitIfChanged();
      });
      current.on('error', () => {
        // etcd cancelled the watch (a compaction, say): read the candidates again and watch from there. Not
        // current.cancel(): etcd3 has already let go of it (see WaiterWatches.forget).
        if (watcher !== current) return;
        watcher = undefined;
        if (!stopped) follow().catch(fail);
      });
    };
    follow().catch(fail);

    return () => {
      stopped = true;
      void watcher?.cancel().catch(() => undefined);
      watcher = undefined;
    };
  });
}

function toLeader(kv: IKeyValue): Leader {
  return {
    id: kv.value.toString(),
    fencingToken: kv.create_revision,
    leaseId: BigInt(kv.lease).toString(16),
    leaderKey: kv.key.toString(),
  };
}

function sameLeader(a: Leader | null, b: Leader | null): boolean {
  if (a === null || b === null) return a === b;
  return a.leaderKey === b.leaderKey && a.fencingToken === b.fencingToken && a.id === b.id && a.leaseId === b.leaseId;
}
