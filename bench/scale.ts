/**
 * Part 4, scale: one process acquiring N distinct free locks at once on one client, holding them while
 * etcd counts the keepalives it receives, then releasing them all.
 *
 * `lock$` has no shared session yet, so its row is N locks, N leases. The session row is lib's protocol on one
 * lease (`session$` + `contend$`), which is what issue 6's Locker will offer: when it lands, add a row that takes
 * the N locks through it (see locks/session-mutex.ts for the same hook).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { timedOut } from './deadline.js';
import { acquireOnLease, openSession } from './locks/session-mutex.js';
import { lock$ } from '../lib/lock-stream.js';
import { isHeld } from '../lib/state.js';
import { memoryNow } from './memory.js';
import { forEachLimited } from './pool.js';
import { grpcCounts } from './metrics.js';
import { untilReady } from './until-ready.js';

/** Short, so that a few keepalive periods fit in the holding window: one keepalive per lease every 5 s. */
export const SCALE_TTL_SECONDS = 10;

export interface ScaleRow {
  name: string;
  locks: number;
  /** From asking for all N to holding all N. */
  acquireMs: number;
  releaseMs: number;
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
  releaseAll(): Promise<void>;
}

/** Acquisitions in flight at once (see pool.ts for why not all N). */
export const SCALE_IN_FLIGHT = 256;

function lockStreamHolding(client: Etcd3, keys: string[], fail: () => void): Holding {
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

function sessionHolding(client: Etcd3, keys: string[], fail: () => void): Holding {
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

export const SCALE_VARIANTS = [
  { name: 'etcd-lock 2 `lock$` x N on one client (N leases)', make: lockStreamHolding },
  { name: 'etcd-lock 2 protocol, N locks on one session (`session$` + `contend$`)', make: sessionHolding },
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
    const keys = Array.from({ length: locks }, (_, i) => `${prefix}/${i}`);
    const holding = variant.make(client, keys, () => failures++);
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
