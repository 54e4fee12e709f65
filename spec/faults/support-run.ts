/**
 * One fault run: a 3-member cluster, a fence, library workers contending for one lock (optionally one of them in
 * a network namespace of its own), a watcher that notes when etcd deletes each lock key, and the faults the suite
 * injects. Everything is started here and torn down by {@link FaultRun.stop}.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Etcd3, type IOptions, type Watcher } from 'etcd3';
import { check, type HolderEvent, type RunLog, type Violation } from '../support/checker.js';
import { listKeys, startCluster, uniquePrefix, type EtcdCluster, type EtcdNode } from '../support/etcd.js';
import { type FenceServer, now, startFence } from '../support/fence.js';
import { type IsolatedWorker, startIsolatedWorker } from './netns-partition.js';
import {
  type ClientKind,
  holdDetail,
  type HoldMode,
  faultLogDir,
  makeClient,
  readWorkerLog,
  startWorker,
  waitFor,
  type Worker,
} from './support-workers.js';

export interface RunOptions {
  label: string;
  ttl: number;
  clientKind: ClientKind;
  /** Workers in this process; default 3, or 2 beside an isolated one. */
  workers?: number;
  /** A seeded random source for the workers' hold times and pauses. */
  random?: () => number;
  /** One more worker, `iso`, in a network namespace of its own: the one {@link partitionWorker} cuts off. */
  isolated?: boolean;
  /** The negative control: every worker ignores `lost` and goes on writing until its hold ends. */
  ignoreLoss?: boolean;
  /** `false`: the fence trusts every writer (the negative control's resource). Default `true`. */
  enforceFence?: boolean;
}

export interface FaultRun {
  readonly cluster: EtcdCluster;
  readonly fence: FenceServer;
  readonly key: string;
  /** Every worker's events, in the order they reached this process (the checker sorts by time): for waiting on. */
  readonly events: HolderEvent[];
  /** Where each worker logs its events as JSON lines, `<name>.jsonl` ({@link readWorkerLog}). */
  readonly logDir: string;
  /**
   * Every worker's events read back from its log file, what the checks run on. Call once the workers have stopped:
   * it asserts that the files hold as many events as {@link events}.
   */
  loggedEvents(): HolderEvent[];
  /** All workers, the isolated one (if any) last. */
  readonly workers: Worker[];
  readonly isolated: IsolatedWorker | undefined;
  /** When the watcher saw etcd delete each lock key, by the key's create revision (its holder's fencing token). */
  readonly deletedAt: ReadonlyMap<string, number>;
  /** Sets how long `workers` (default: all) hold their next grants; `short` also ends long holds soon. */
  hold(mode: HoldMode, workers?: readonly Worker[]): void;
  /** Resolves once `count` grants (by `holder`, if given) have been logged at or after `since`; false on timeout. */
  grantsSince(since: number, count: number, timeoutMs: number, holder?: string): Promise<boolean>;
  /** Stops the workers (releasing), then closes the clients; the cluster and fence stay up for inspection. */
  stopWorkers(): Promise<void>;
  /** Keys still under the lock's prefix, polling until none are left or `timeoutMs` passes. */
  keysLeft(timeoutMs: number): Promise<string[]>;
  /** Tears everything down (workers, clients, fence, cluster). Idempotent; for `finally`. */
  stop(): Promise<void>;
}

export async function startRun(options: RunOptions): Promise<FaultRun> {
  const cluster = await startCluster(3);
  const clients: Etcd3[] = [];
  const workers: Worker[] = [];
  let isolated: IsolatedWorker | undefined;
  let fence: FenceServer | undefined;
  const events: HolderEvent[] = [];
  const deletedAt = new Map<string, number>();
  const key = `${uniquePrefix(options.label)}/lock`;
  const logs = faultLogDir(options.label);
  const logFile = (name: string) => logs.file(`${name}.jsonl`);

  let watcher: Watcher | undefined;
  let workersStopped: Promise<void> | undefined;
  const stopWorkers = () =>
    (workersStopped ??= (async () => {
      try {
        await Promise.all(workers.map((worker) => worker.stop()));
        // A watcher left on a closed client makes etcd3 try to reconnect it forever, keeping the process alive.
        await Promise.race([watcher?.cancel(), sleep(2_000)]);
      } finally {
        for (const client of clients) client.close();
      }
    })());
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      try {
        // Members a fault left paused or dead would make releases hang until their 10 s limit: bring them back.
        for (const member of cluster.members) member.resume();
        await stopWorkers();
      } finally {
        await fence?.close();
        await cluster.stop();
        logs.remove();
      }
    })());

  try {
    fence = await startFence({ enforce: options.enforceFence ?? true });
    // etcd's view of the lock, for the figures: when each holder's key went (released, revoked or expired).
    const observer = makeObserver(cluster.endpoints);
    clients.push(observer);
    watcher = await observer.watch().prefix(`${key}/`).withPreviousKV().create();
    watcher.on('delete', (_kv, previous) => {
      if (previous) deletedAt.set(previous.create_revision, now());
    });

    const record = (event: HolderEvent) => void events.push(event);
    const inProcess = options.workers ?? (options.isolated ? 2 : 3);
    for (let i = 0; i < inProcess; i++) {
      const client = makeClient(options.clientKind, cluster.endpoints);
      clients.push(client);
      workers.push(
        startWorker({
          name: `w${i}`,
          client,
          key,
          ttl: options.ttl,
          fenceUrl: fence.url,
          record,
          logFile: logFile(`w${i}`),
          ...(options.random && { random: options.random }),
          ...(options.ignoreLoss && { ignoreLoss: true }),
        }),
      );
    }
    if (options.isolated) {
      isolated = await startIsolatedWorker({
        name: 'iso',
        endpoints: cluster.endpoints,
        fenceUrl: fence.url,
        key,
        ttl: options.ttl,
        clientKind: options.clientKind,
        record,
        logFile: logFile('iso'),
        ...(options.ignoreLoss && { ignoreLoss: true }),
      });
      workers.push(isolated);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const theFence = fence;

  return {
    cluster,
    fence: theFence,
    key,
    events,
    logDir: logs.dir,
    loggedEvents: () => {
      const logged = workers.flatMap((worker) => readWorkerLog(logFile(worker.name)));
      assert.equal(logged.length, events.length, `the workers' log files in ${logs.dir} hold every event`);
      return logged;
    },
    workers,
    isolated,
    deletedAt,
    hold: (mode, which = workers) => {
      for (const worker of which) worker.hold(mode);
    },
    grantsSince: (since, count, timeoutMs, holder) =>
      waitFor(
        () =>
          events.filter((e) => e.kind === 'acquired' && e.at >= since && (holder === undefined || e.holder === holder))
            .length >= count,
        timeoutMs,
      ),
    stopWorkers,
    keysLeft: async (timeoutMs) => {
      const start = performance.now();
      for (;;) {
        const keys = await listKeys(cluster.endpoints, `${key}/`);
        if (keys.length === 0 || performance.now() - start > timeoutMs) return keys;
        await sleep(200);
      }
    },
    stop,
  };
}

/**
 * The client of the run's watcher, which is no lock client: etcd3's fault handling off (each call goes straight
 * through, to the next endpoint on failure), and a watch that reconnects every 250 ms. With etcd3's default watch
 * backoff (exponential, up to 30 s) the watch could stay away long after an outage, and its last reconnect timer
 * keeps the test process alive that long after close().
 */
function makeObserver(endpoints: string[]): Etcd3 {
  type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
  const direct = {
    // etcd3's markFailed() runs a call that throws, and expects a rejection, not an exception.
    execute: (call: (context: { signal: AbortSignal }) => unknown, signal?: AbortSignal) =>
      Promise.resolve().then(() => call({ signal: signal ?? new AbortController().signal })),
  } as unknown as Policy;
  const steady = { duration: 250, next: () => steady };
  return new Etcd3({ hosts: endpoints, faultHandling: { host: () => direct, global: direct, watchBackoff: steady } });
}

/** What a fault did: when it began and healed (on {@link now}'s clock), and what showed that it happened. */
export interface FaultOutcome {
  faultAt: number;
  healedAt: number;
  /** For the figures: e.g. the old and new leader, the time to elect. */
  detail: Record<string, string | number>;
  /** The grant the fault hit, when the run waited for a holder first ({@link faultWhileHeld}). */
  holderAtFault?: { holder: string; token: string };
  /** When a stalled leader was let go again (see {@link splitStaleLeaderRevocations}). */
  stalledLeaderResumedAt?: number;
}

/** A fault: injects itself into the run, lasts about `ms`, heals, and says what happened. */
export type Fault = (run: FaultRun, ms: number) => Promise<FaultOutcome>;

/** SIGKILL the leader, see another member elected, keep it down for `downMs`, restart it on its data dir. */
export const killLeader: Fault = async (run, downMs) => {
  const leader = await run.cluster.leader();
  const faultAt = now();
  await leader.kill();
  const next = await run.cluster.leader();
  const electedAfterMs = Math.round(now() - faultAt);
  assert.notEqual(next.name, leader.name, 'a new leader was elected');
  await sleep(Math.max(0, faultAt + downMs - now()));
  await leader.restart();
  return { faultAt, healedAt: now(), detail: { oldLeader: leader.name, newLeader: next.name, electedAfterMs } };
};

/** SIGSTOP the leader for `pausedMs` (far past the 100 ms election timeout), see another elected, SIGCONT. */
export const pauseLeader: Fault = async (run, pausedMs) => {
  const leader = await run.cluster.leader();
  const faultAt = now();
  leader.pause();
  try {
    let next = await run.cluster.leader();
    // leader() takes each member's word about itself, and once (in a soak, right after other faults) it named the
    // member just paused: ask again, and say so in the figures, until another member says it leads.
    const staleAnswers: string[] = [];
    while (next === leader && now() - faultAt < 10_000) {
      staleAnswers.push(`${Math.round(now() - faultAt)} ms, process state ${processState(leader.pid)}`);
      await sleep(50);
      next = await run.cluster.leader();
    }
    const electedAfterMs = Math.round(now() - faultAt);
    assert.notEqual(
      next.name,
      leader.name,
      `a new leader was elected while the old one was paused: ${staleAnswers.join('; ')}`,
    );
    await sleep(Math.max(0, faultAt + pausedMs - now()));
    const beforeResume = describeWorkers(run.workers);
    leader.resume();
    const healedAt = now();
    return {
      faultAt,
      healedAt,
      stalledLeaderResumedAt: healedAt,
      detail: {
        oldLeader: leader.name,
        newLeader: next.name,
        electedAfterMs,
        beforeResume,
        ...(staleAnswers.length > 0 && { pausedLeaderStillNamed: staleAnswers.join('; ') }),
      },
    };
  } finally {
    leader.resume();
  }
};

/**
 * SIGKILL every member at once (a power cut), check that none answers, wait `downMs`, start them all again on
 * their data dirs (together: a member is healthy only once a quorum has elected a leader).
 */
export const stopAll: Fault = async (run, downMs) => {
  const { members } = run.cluster;
  const faultAt = now();
  await Promise.all(members.map((member) => member.kill()));
  const answering = await Promise.all(members.map(answers));
  assert.deepEqual(answering, [false, false, false], 'no member answers during the outage');
  await sleep(Math.max(0, faultAt + downMs - now()));
  await Promise.all(members.map((member) => member.restart()));
  const healedAt = now();
  const leader = await run.cluster.leader();
  return { faultAt, healedAt, detail: { leaderAfter: leader.name } };
};

/**
 * Cuts the isolated worker's link to etcd for `ms` (its packets dropped, its link to the fence up), then heals it.
 * The rest of the cluster and the other workers carry on: to them the isolated holder just goes quiet.
 */
export const partitionWorker: Fault = async (run, ms) => {
  const isolated = run.isolated;
  if (!isolated) throw new Error('partitionWorker needs a run started with `isolated: true`');
  const faultAt = now();
  const stateAtFault = isolated.lastState;
  await isolated.partition();
  try {
    await sleep(Math.max(0, faultAt + ms - now()));
  } finally {
    await isolated.heal();
  }
  return { faultAt, healedAt: now(), detail: { isolated: `${isolated.name}, ${stateAtFault}` } };
};

/**
 * Runs `fault` while a worker is in the middle of a hold: switches `who` (default: every worker) to long holds,
 * waits for one of them to be granted the lock anew, injects the fault, and switches everyone back to short
 * holds once it has healed. Without this a fault mostly finds the lock between two short holds, or a holder that
 * releases of its own accord before it could notice anything.
 */
export async function faultWhileHeld(
  run: FaultRun,
  fault: Fault,
  ms: number,
  who: readonly Worker[] = run.workers,
): Promise<FaultOutcome> {
  const since = now();
  const names = new Set(who.map((worker) => worker.name));
  const longGrant = (e: HolderEvent) =>
    e.kind === 'acquired' && e.at >= since && names.has(e.holder) && e.detail === holdDetail('long');
  run.hold('long', who);
  try {
    assert.ok(
      await waitFor(() => run.events.some(longGrant), 30_000),
      `one of ${[...names].join(', ')} is granted the lock for a long hold`,
    );
    const grant = run.events.find(longGrant)!;
    const outcome = await fault(run, ms);
    return { ...outcome, holderAtFault: { holder: grant.holder, token: grant.token } };
  } finally {
    run.hold('short');
  }
}

/** How long after a stalled leader resumes a revocation of its making can still come (its lessor ticks at 500 ms). */
const STALE_REVOKE_WINDOW_MS = 3_000;

/**
 * etcd 3.4 before the fix of etcd-io/etcd#15247 (etcd-io/etcd#16822; 3.4.23 here is older): a leader stalled for
 * longer than a lease's TTL (SIGSTOP, a disk or CPU stall) may, when it resumes and before it learns that it was
 * deposed, find leases "expired" on its own stale clock and have them revoked through the new leader, although
 * their holders kept them alive there all along. A holder then learns of the loss (`deleted`) from its watch at
 * the same moment as the next contender, with no head start: the two can overlap by a few milliseconds, and only
 * the fence protects the resource. No client can prevent it (nothing warned the holder), so the fault tests set
 * such overlaps apart, print them, and fail on every other violation.
 *
 * An overlap is set apart only when the earlier grant ended in a `deleted` loss within a few seconds after a
 * stalled leader resumed: in these runs nobody deletes another's key, and etcd (without that bug) never ends a
 * lease before the holder's local deadline, which would have reported `expired` first.
 */
export function splitStaleLeaderRevocations(
  violations: readonly Violation[],
  events: readonly HolderEvent[],
  outcomes: readonly FaultOutcome[],
): { explained: Violation[]; rest: Violation[] } {
  const resumes = outcomes.flatMap((o) => (o.stalledLeaderResumedAt === undefined ? [] : [o.stalledLeaderResumedAt]));
  const revokedByStaleLeader = (holder: string, token: string) =>
    events.some(
      (e) =>
        e.kind === 'lost' &&
        e.holder === holder &&
        e.token === token &&
        e.detail === 'deleted' &&
        resumes.some((at) => e.at >= at && e.at <= at + STALE_REVOKE_WINDOW_MS),
    );
  const explained: Violation[] = [];
  const rest: Violation[] = [];
  for (const violation of violations) {
    // noOverlap's message names the earlier grant: "... while <holder> (token <n>) still held it ...".
    const earlier = /while (\S+) \(token (\d+)\) still held it/.exec(violation.message);
    const isExplained =
      violation.property === 'no-overlap' && earlier !== null && revokedByStaleLeader(earlier[1]!, earlier[2]!);
    (isExplained ? explained : rest).push(violation);
  }
  return { explained, rest };
}

/** `deleted` losses soon after a stalled leader resumed: the live leases etcd-io/etcd#15247 revoked, for figures. */
export function staleLeaderRevocations(events: readonly HolderEvent[], outcome: FaultOutcome): number {
  const at = outcome.stalledLeaderResumedAt;
  if (at === undefined) return 0;
  return events.filter(
    (e) => e.kind === 'lost' && e.detail === 'deleted' && e.at >= at && e.at <= at + STALE_REVOKE_WINDOW_MS,
  ).length;
}

/** Every fault of the suite, by the name its figures print. */
export const FAULTS = {
  'leader-killed': killLeader,
  'leader-paused': pauseLeader,
  'all-members-down': stopAll,
  'worker-partitioned': partitionWorker,
} satisfies Record<string, Fault>;
export type FaultName = keyof typeof FAULTS;

/**
 * The checker over the whole run (and the liveness bound after `heal`, if given), with the overlaps that
 * etcd-io/etcd#15247 explains set apart and printed as `[faults] <label> ...` lines: what a test must fail on.
 */
export function violationsToFailOn(
  run: FaultRun,
  label: string,
  outcomes: readonly FaultOutcome[],
  heal?: RunLog['heal'],
): Violation[] {
  const events = run.loggedEvents();
  const violations = check({ events, writes: run.fence.log(), ...(heal && { heal }) });
  const { explained, rest } = splitStaleLeaderRevocations(violations, events, outcomes);
  for (const v of explained) {
    console.log(
      `[faults] ${label} overlap explained by etcd-io/etcd#15247 (a stale leader revoked a live lease): ${v.message}`,
    );
  }
  return rest;
}

/** What each worker was doing, for the figures: `w0: held 41; w1: acquiring behind 41; ...`. */
export function describeWorkers(workers: readonly Worker[]): string {
  return workers.map((worker) => `${worker.name}: ${worker.lastState}`).join('; ');
}

/** The state letter in /proc/<pid>/stat (`T`: stopped, `S`: sleeping, ...), for messages. */
function processState(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] ?? '?';
  } catch {
    return 'unknown';
  }
}

async function answers(member: EtcdNode): Promise<boolean> {
  try {
    await fetch(`${member.clientUrl}/health`, { signal: AbortSignal.timeout(500) });
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
