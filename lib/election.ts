import type { Etcd3, ITxnResponse } from 'etcd3';
import {
  catchError,
  concat,
  defer,
  EMPTY,
  finalize,
  map,
  mergeMap,
  type Observable,
  of,
  startWith,
  Subject,
  takeUntil,
  throwError,
} from 'rxjs';
import { type CampaignOptions, resolveCampaignOptions, validateProposal } from './election-options.js';
import type { ElectionState, LeaderState } from './election-state.js';
import { LockLostError, NotHeldError, UnavailableError } from './errors.js';
import { contend$, type Ticket } from './mutex.js';
import { assertClient } from './options.js';
import { type Lease, REQUEST_TIMEOUT_MS, session$ } from './session.js';

/**
 * Runs for leader of the election `name`, as a cold stream: each subscription is one candidate, on its own lease,
 * with its own key `${name}/<lease hex>` whose value is its proposal (`id`). That is the key layout of etcd's own
 * election (Go's `concurrency.Election`, `etcdctl elect`), so they and this library run in the same elections.
 *
 * It emits `candidate` at once (again, with who leads, each time the candidate ahead of us leaves and we still do
 * not lead), then `leader` with the fencing token once every older candidate is gone. The leader stays leader until
 * it resigns or loses its lease; on loss the stream emits `lost` and then errors with that state's
 * {@link LockLostError}. To resign, call `resign()` on a state (the stream completes) or unsubscribe: either way the
 * lease is revoked, our key goes with it, and the next candidate in line leads.
 *
 * @throws InvalidArgumentError at once (before any network call) for a bad client, name or option.
 *
 * @example
 * ```ts
 * import { Etcd3 } from 'etcd3';
 * import { campaign$ } from 'etcd-lock';
 *
 * const client = new Etcd3({ hosts: '127.0.0.1:2379' });
 * const subscription = campaign$(client, '/services/scheduler', { id: 'node-1', ttl: 10 }).subscribe({
 *   next: (state) => {
 *     if (state.kind === 'leader') console.log('leading with fencing token', state.fencingToken);
 *   },
 *   error: (err) => console.error('lost the leadership or could not campaign:', err.code),
 * });
 * // ...later: resign
 * subscription.unsubscribe();
 * ```
 */
export function campaign$(client: Etcd3, name: string, options?: CampaignOptions): Observable<ElectionState> {
  assertClient(client);
  const o = resolveCampaignOptions(name, options);
  const base = { name: o.key, id: o.id };

  return defer(() => {
    const releases: Promise<void>[] = [];
    const resign$ = new Subject<void>();
    let settleRelease!: (done: Promise<void>) => void;
    const released = new Promise<void>((resolve) => (settleRelease = resolve));
    const resign = (): Promise<void> => {
      resign$.next();
      return released;
    };
    let ended = false;
    let leading: LeaderState | undefined;

    const leaderState = (lease: Lease, ticket: Ticket): LeaderState => ({
      kind: 'leader',
      ...base,
      fencingToken: ticket.fencingToken,
      leaseId: lease.hex,
      leaderKey: ticket.holderKey,
      resign,
      proclaim: async (value) => {
        const proposal = validateProposal(value);
        if (ended) throw notLeader(o.key);
        if (!(await proclaimed(client, o.key, lease, ticket, proposal)).succeeded) throw notLeader(o.key);
      },
    });

    const states$ = session$(client, {
      name: o.key,
      ttlSeconds: o.ttlSeconds,
      refreshIntervalMs: o.refreshIntervalMs,
      onRelease: (done) => void releases.push(done),
    }).pipe(
      mergeMap((event) =>
        event.kind === 'granted'
          ? // The lease is this candidate's alone: revoking it at the end deletes our key too, in one request.
            contend$(
              client,
              { key: o.key, prefix: o.prefix, id: o.id, lease: event.lease },
              { wait: true, deleteOnRelease: false, allowOwnPuts: true },
            ).pipe(
              map((step): ElectionState => {
                if (step.kind === 'waiting') {
                  return {
                    kind: 'candidate',
                    ...base,
                    ...(step.holder && { leader: step.holder }),
                    ahead: step.ahead,
                    resign,
                  };
                }
                leading = leaderState(event.lease, step.ticket);
                return leading;
              }),
            )
          : EMPTY,
      ),
      // A leader's loss is announced as a state before the error; a candidate's failure just errors.
      catchError((err: unknown) =>
        leading && err instanceof LockLostError
          ? concat(
              of<ElectionState>({
                kind: 'lost',
                ...base,
                fencingToken: leading.fencingToken,
                reason: err.reason,
                error: err,
              }),
              throwError(() => err),
            )
          : throwError(() => err),
      ),
    );

    return states$.pipe(
      startWith<ElectionState>({ kind: 'candidate', ...base, resign }),
      takeUntil(resign$),
      finalize(() => {
        ended = true;
        // The session's teardown, which starts the revoke, runs in the same unsubscribe; a microtask later it has
        // handed over its promise.
        const done = Promise.resolve().then(() => Promise.all(releases).then(() => undefined));
        settleRelease(done);
        o.onRelease?.(done);
      }),
    );
  });
}

/** Go's `Proclaim`: put the new value on our key, only while it still has our create revision. */
async function proclaimed(
  client: Etcd3,
  name: string,
  lease: Lease,
  ticket: Ticket,
  value: string,
): Promise<ITxnResponse> {
  try {
    return await client
      .if(ticket.holderKey, 'Create', '==', ticket.fencingToken)
      .then(client.put(ticket.holderKey).value(value).lease(lease.id))
      .options({ deadline: Date.now() + REQUEST_TIMEOUT_MS })
      .commit();
  } catch (err) {
    throw new UnavailableError(`etcd failed while proclaiming in the election ${JSON.stringify(name)}`, err);
  }
}

function notLeader(name: string): NotHeldError {
  return new NotHeldError(name, `Not the leader of the election ${JSON.stringify(name)}`);
}
