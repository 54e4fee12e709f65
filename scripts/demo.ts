/**
 * `npm run demo`: starts a throwaway etcd, then three contenders take turns on one lock, twice each, printing
 * who waits behind whom, who holds it and with which fencing token. Stops etcd at the end.
 *
 * Set ETCD_ENDPOINTS=host:port to run it against an etcd of your own instead.
 */
import { Etcd3 } from 'etcd3';
import { concatMap, EMPTY, exhaustMap, lastValueFrom, range, take, tap, timer } from 'rxjs';
import { lock$, type LockState } from '../lib/index.js';
import { useEtcd } from '../spec/support/etcd.js';

const KEY = '/etcd-lock-demo/nightly-report';
const ROUNDS = 2;
const WORK_MS = 400;
const started = performance.now();
const grants: string[] = [];
const releases: Promise<void>[] = [];

function say(who: string, what: string): void {
  const at = ((performance.now() - started) / 1000).toFixed(3).padStart(7);
  console.log(`${at}s  ${who.padEnd(8)} ${what}`);
}

function describe(state: LockState): string {
  switch (state.kind) {
    case 'acquiring':
      return state.waitingFor
        ? `waits behind ${state.waitingFor.id} (${state.ahead ?? '?'} ahead)`
        : 'asks for the lock';
    case 'held':
      return `HOLDS the lock, fencing token ${state.fencingToken}, lease ${state.leaseId}`;
    case 'refreshed':
      return `refreshed the lease (TTL ${state.ttl} s)`;
    case 'lost':
      return `LOST the lock: ${state.reason}`;
  }
}

/** One turn: queue for the lock, work while holding it, then release by unsubscribing (take(1) does it). */
function turn(client: Etcd3, id: string) {
  // Unsubscribing releases at once, but the delete and revoke reach etcd a moment later: onRelease says when.
  return lock$(client, KEY, { id, ttl: 5, onRelease: (released) => releases.push(released) }).pipe(
    tap((state) => {
      say(id, describe(state));
      if (state.kind === 'held') grants.push(`${id}#${state.fencingToken}`);
    }),
    exhaustMap((state) => (state.kind === 'held' ? timer(WORK_MS) : EMPTY)),
    take(1),
    tap({ complete: () => say(id, 'releases it') }),
  );
}

async function main(): Promise<void> {
  const etcd = await useEtcd();
  console.log(`etcd at ${etcd.endpoints.join(',')}${etcd.node ? ` (throwaway, pid ${etcd.node.pid})` : ''}`);
  const clients = ['alice', 'bob', 'carol'].map((id) => ({ id, client: new Etcd3({ hosts: etcd.endpoints }) }));
  try {
    await Promise.all(
      clients.map(({ id, client }, i) =>
        // Start a few milliseconds apart so the queue order is visible.
        lastValueFrom(timer(i * 50).pipe(concatMap(() => range(0, ROUNDS).pipe(concatMap(() => turn(client, id))))), {
          defaultValue: undefined,
        }),
      ),
    );
    await Promise.all(releases);
    const left = await clients[0]!.client.getAll().prefix(`${KEY}/`).keys();
    console.log(`grants in order (holder#token): ${grants.join(' ')}`);
    console.log(`keys left under ${KEY}/: ${left.length}`);
  } finally {
    for (const { client } of clients) client.close();
    await etcd.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
