/**
 * Part 4, scale: one process acquiring N distinct free locks at once on one client, holding them while
 * etcd counts the keepalives it receives, then releasing them all.
 *
 * The rows: `lock$` N times (N leases: `lock$` takes no shared session); the Locker (`createLocker`, issue 6),
 * which holds all N on one lease, released once with a `release(id)` per lock and once with one `close()`, and its
 * streams (`locker.lock$(id)` N times, unsubscribed N times); and,
 * for comparison, lib's key protocol on one lease without the Locker (`session$` + `contend$` per lock: a txn
 * and an etcd3 watch each), which is what the Locker's batched transactions and shared watch are for.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import type { Subscription } from 'rxjs';
import { timedOut } from './deadline.js';
import { acquireOnLease, openSession } from './locks/session-mutex.js';
import { createLocker, isHeld, lock$ } from './built-lib.js';
import type { Locker } from '../lib/locker.js';
import type { LockerStreamState } from '../lib/locker-stream.js';
import { memoryNow } from './memory.js';
import { forEachLimited } from './pool.js';
import { grpcCounts } from './metrics.js';
import { untilReady } from './until-ready.js';

/** Short, so that a few keepalive periods fit in the holding window: one keepalive per lease every 5 s. */
export const SCALE_TTL_SECONDS = 10;

export interface ScaleRow {
  name: string;
  /** The row's name in the targets. */
  short: string;
  /** Whether issue 5's scale targets are checked against this row (not for the comparison row). */
  target: boolean;
  locks: number;
  /** From asking for all N (the lease grant included, for the rows that share one) to holding all N. */
  acquireMs: number;
  /** From letting go of all N to etcd having deleted every key and revoked the lease(s). */
  releaseMs: number;
  /** Heap in use plus external memory, after a full GC, holding all N minus just before asking (client connected). */
  heapAddedMb: number;
  rssAddedMb: number;
  memoryCollected: boolean;
  /** What etcd received while the N locks were held. */
  keepalivesPerSecond: number;
  keepaliveStreams: number;
  /** Locks that failed to be acquired, or were lost while held. */
  failures: number;
  timedOut: boolean;
}

/** One way of holding N locks: acquire them all, then release them all. */
interface Holding {
  acquireAll(): Promise<void>;
  /** Resolves once etcd has deleted every key (and revoked the lease, where the holding has one of its own). */
  releaseAll(): Promise<void>;
}

/** Acquisitions in flight at once for the rows that send one request per lock (see pool.ts for why not all N). */
export const SCALE_IN_FLIGHT = 256;

function lockStreamHolding(client: Etcd3, prefix: string, locks: number, fail: () => void): Holding {
  const keys = Array.from({ length: locks }, (_, i) => `${prefix}/${i}`);
  const releases: (() => Promise<void>)[] = [];
  return {
    acquireAll: () =>
      forEachLimited(keys, SCALE_IN_FLIGHT, async (key) => {
        let released = Promise.resolve();
        const options = {
          id: 'scale',
          ttl: SCALE_TTL_SECONDS,
          onRelease: (done: Promise<void>) => void (released = done),
        };
        try {
          const { stop } = await untilReady(lock$(client, key, options), isHeld, fail);
          releases.push(async () => {
            stop();
            await released;
          });
        } catch {
          fail();
        }
      }),
    releaseAll: () => forEachLimited(releases, SCALE_IN_FLIGHT, (release) => release()),
  };
}

/**
 * The Locker: `lock(id)` for every id at once, as docs/locker.md advises (it batches them itself, 64 per
 * transaction, at most 4 transactions in flight, so no pool here). `by: 'release'` lets go with one
 * `release(id)` per lock, all at once, then closes the locker (its lease is revoked with no keys left);
 * `by: 'close'` lets go of all of them with `close()` alone, one lease revoke.
 */
function lockerHolding(by: 'release' | 'close') {
  return (client: Etcd3, prefix: string, locks: number, fail: () => void): Holding => {
    let locker: Locker | undefined;
    let lost: Subscription | undefined;
    const held: string[] = [];
    return {
      acquireAll: async () => {
        // Created here, not before: its lease grant and watch count towards the acquisition, as openSession does.
        locker = createLocker(client, { name: prefix, holderId: 'scale', ttl: SCALE_TTL_SECONDS });
        lost = locker.lost$.subscribe(() => fail());
        await Promise.all(
          Array.from({ length: locks }, (_, i) =>
            locker!.lock(i).then(
              (grant) => void held.push(grant.lockId),
              () => fail(),
            ),
          ),
        );
      },
      releaseAll: async () => {
        if (by === 'release') await Promise.all(held.map((id) => locker!.release(id).catch(fail)));
        lost?.unsubscribe();
        await locker?.close();
      },
    };
  };
}

/**
 * The Locker's streams: `locker.lock$(id)` subscribed N times at once, unsubscribed N times, then `close()`. The
 * harness keeps only each stream's Subscription, as a user must (one observer and one onRelease serve them all),
 * so that the memory column is the library's, as for the rows above.
 */
function lockerStreamHolding(client: Etcd3, prefix: string, locks: number, fail: () => void): Holding {
  let locker: Locker | undefined;
  const subscriptions: Subscription[] = [];
  const releases: Promise<void>[] = [];
  return {
    acquireAll: () =>
      new Promise<void>((resolve) => {
        locker = createLocker(client, { name: prefix, holderId: 'scale', ttl: SCALE_TTL_SECONDS });
        let pending = locks;
        const settled = () => {
          if (--pending === 0) resolve();
        };
        // A stream that fails before it holds counts as settled; one that fails later is a loss, counted by fail().
        const observer = {
          next: (state: LockerStreamState) => {
            if (state.kind === 'held') settled();
          },
          error: () => {
            fail();
            settled();
          },
        };
        const onRelease = (released: Promise<void>) => void releases.push(released);
        for (let i = 0; i < locks; i++) subscriptions.push(locker.lock$(i, { onRelease }).subscribe(observer));
      }),
    releaseAll: async () => {
      for (const subscription of subscriptions) subscription.unsubscribe();
      await Promise.all(releases);
      await locker?.close();
    },
  };
}

/** lib's protocol on one lease without the Locker: a `contend$` per lock, each with its own txns and watch. */
function rawSessionHolding(client: Etcd3, prefix: string, locks: number, fail: () => void): Holding {
  const keys = Array.from({ length: locks }, (_, i) => `${prefix}/${i}`);
  let session: Awaited<ReturnType<typeof openSession>> | undefined;
  const releases: (() => Promise<void>)[] = [];
  return {
    acquireAll: async () => {
      session = await openSession(client, 'scale', fail, SCALE_TTL_SECONDS);
      const lease = session.lease;
      await forEachLimited(keys, SCALE_IN_FLIGHT, (key) =>
        acquireOnLease(client, key, 'scale', lease, fail).then((release) => void releases.push(release), fail),
      );
    },
    releaseAll: async () => {
      await forEachLimited(releases, SCALE_IN_FLIGHT, (release) => release());
      session?.stop();
      await session?.released();
    },
  };
}

/** `short` names the row in the targets; `target: false` rows are there for comparison only. */
export const SCALE_VARIANTS = [
  {
    name: 'etcd-lock 2 `lock$` x N on one client (N leases)',
    short: 'lock$',
    target: true,
    make: lockStreamHolding,
  },
  {
    name: 'etcd-lock 2 `createLocker`: `lock(id)` x N, let go by `release(id)` x N',
    short: 'locker',
    target: true,
    make: lockerHolding('release'),
  },
  {
    name: 'etcd-lock 2 `locker.lock$(id)` x N subscribed, then unsubscribed, on one locker',
    short: 'locker.lock$',
    target: true,
    make: lockerStreamHolding,
  },
  {
    name: 'etcd-lock 2 `createLocker`: `lock(id)` x N, let go by one `close()`',
    short: 'locker, close()',
    target: true,
    make: lockerHolding('close'),
  },
  {
    name: 'for comparison, without the Locker: N `contend$` on one `session$` (a txn and a watch per lock)',
    short: 'raw session',
    target: false,
    make: rawSessionHolding,
  },
] as const;

export interface ScalePlan {
  holdMs: number;
  acquireTimeoutMs: number;
}

export function scalePlan(scale: number): ScalePlan {
  return { holdMs: 10_000 * Math.min(scale, 3), acquireTimeoutMs: 180_000 };
}

export async function runScale(
  variant: (typeof SCALE_VARIANTS)[number],
  locks: number,
  endpoints: string[],
  prefix: string,
  plan: ScalePlan,
): Promise<ScaleRow> {
  const client = new Etcd3({ hosts: endpoints });
  let failures = 0;
  try {
    const holding = variant.make(client, prefix, locks, () => failures++);
    // Connect first: the channel to etcd (and the code that loads with it) is the client's cost, not the locks'.
    await client.get(`${prefix}/warm-up`).string();
    const baseline = await grpcCounts(endpoints);
    const before = await memoryNow();
    const start = performance.now();
    const late = await timedOut(holding.acquireAll(), plan.acquireTimeoutMs);
    const acquireMs = performance.now() - start;
    const after = await memoryNow();
    const holdStart = await grpcCounts(endpoints);
    const holdStartedAt = performance.now();
    await sleep(plan.holdMs);
    const holdEnd = await grpcCounts(endpoints);
    const holdSeconds = (performance.now() - holdStartedAt) / 1000;
    const releaseStart = performance.now();
    await holding.releaseAll();
    const releaseMs = performance.now() - releaseStart;
    const open = (c: typeof baseline) => c.keepaliveStreamsStarted - c.keepaliveStreamsHandled;
    return {
      name: variant.name,
      short: variant.short,
      target: variant.target,
      locks,
      acquireMs,
      releaseMs,
      heapAddedMb: after.heapMb - before.heapMb,
      rssAddedMb: after.rssMb - before.rssMb,
      memoryCollected: after.collected,
      keepalivesPerSecond: (holdEnd.keepaliveMessages - holdStart.keepaliveMessages) / holdSeconds,
      keepaliveStreams: open(holdEnd) - open(baseline),
      failures,
      timedOut: late,
    };
  } finally {
    client.close();
  }
}

/** Runs {@link runScale} in a fresh node process (see scale-worker.ts). */
export async function runScaleIsolated(
  variantIndex: number,
  locks: number,
  endpoints: string[],
  prefix: string,
  plan: ScalePlan,
): Promise<ScaleRow> {
  const worker = fileURLToPath(new URL('./scale-worker.ts', import.meta.url));
  const args = [
    '--expose-gc',
    '--import',
    'tsx',
    worker,
    String(variantIndex),
    String(locks),
    endpoints.join(','),
    prefix,
  ];
  const child = spawn(process.execPath, [...args, JSON.stringify(plan)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`scale worker exited with ${code}`);
  return JSON.parse(out) as ScaleRow;
}
