/**
 * Library workers for the fault suite, and the figures it prints.
 *
 * A worker is one contender in a loop: subscribe `lock$`, and once held make a fenced write with its token every
 * 100 ms, release, queue again. It logs {@link HolderEvent}s on the clock the fence and the checker share
 * ({@link now}), to the run and as JSON lines to a file of its own ({@link readWorkerLog}). It never looks at etcd
 * itself: what it logs is what the library told it.
 *
 * How long it holds is the run's to say ({@link Worker.hold}): `short` (300-500 ms, so that the workers trade the
 * lock often) or `long` (until told `short` again), so that a fault can be made to hit a holder in the middle of
 * its work, which is when loss detection matters.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { Etcd3 } from 'etcd3';
import type { Subscription } from 'rxjs';
import { createClient } from '../../cli/client.js';
import { isLockError } from '../../lib/errors.js';
import { lock$ } from '../../lib/lock-stream.js';
import { lossMarginMs } from '../../lib/options.js';
import { grants, type HolderEvent } from '../support/checker.js';
import { tempDir } from '../support/cli.js';
import { fenceWrite, now } from '../support/fence.js';

/**
 * Which etcd3 fault handling the workers' clients use: `lock-friendly` is etcdlocker's (`cli/client.ts`: a failed
 * host is skipped for 500 ms, a failed call retried once per endpoint); `default` is etcd3's own (a circuit breaker
 * per host that stays open 5 s after 3 failures). `FAULTS_CLIENT=default` runs the suite with the latter.
 */
export type ClientKind = 'lock-friendly' | 'default';

export function clientKindFromEnv(): ClientKind {
  return process.env['FAULTS_CLIENT'] === 'default' ? 'default' : 'lock-friendly';
}

export function makeClient(kind: ClientKind, endpoints: string[]): Etcd3 {
  return kind === 'default' ? new Etcd3({ hosts: endpoints }) : createClient(endpoints);
}

/** `short`: release 300-500 ms after the grant. `long`: hold until switched back to `short` (then 300-500 ms). */
export type HoldMode = 'short' | 'long';

/** The `detail` of an `acquired` event: how long the worker means to hold that grant. */
export const holdDetail = (mode: HoldMode) => `hold ${mode}`;

/** What a run needs of a worker, whether it runs in this process or in a network namespace of its own. */
export interface Worker {
  readonly name: string;
  /** Errors the worker's streams ended with, by code (`ETCDLOCK_LOST`, `ETCDLOCK_UNAVAILABLE`, ...). */
  readonly errors: ReadonlyMap<string, number>;
  /** The last state its current stream emitted (`held 123`, `acquiring behind 120`), or `between` runs. */
  readonly lastState: string;
  /** How many `lost` states it ignored (only a worker started with `ignoreLoss`). */
  readonly ignoredLosses: number;
  /** How long to hold from now on; switching to `short` ends a long hold 300-500 ms later. */
  hold(mode: HoldMode): void;
  /** Stops the loop, releases what it holds or waits for, and resolves once every release has settled. */
  stop(): Promise<void>;
}

export interface WorkerOptions {
  name: string;
  client: Etcd3;
  key: string;
  ttl: number;
  fenceUrl: string;
  /** Receives each event, in the order the worker saw them (the run appends them to its shared log). */
  record: (event: HolderEvent) => void;
  /** Also appends each event to this file, a JSON line each, before `record` gets it: see {@link readWorkerLog}. */
  logFile?: string;
  /** A seeded random source in [0, 1) for hold times and pauses; Math.random by default. */
  random?: () => number;
  /**
   * The negative control: the worker ignores `lost` (the library's local deadline, in effect, turned off) and
   * goes on writing with its old token until its hold ends, as a holder whose work outlasts its lease would.
   */
  ignoreLoss?: boolean;
  /** Called whenever {@link Worker.lastState}, its errors or its ignored losses change (the child relays them). */
  onChange?: () => void;
}

const WRITE_EVERY_MS = 100;
const RETRY_AFTER_ERROR_MS = 200;
/** A long hold still ends after this, whatever happens to the test that asked for it. */
const LONG_HOLD_CAP_MS = 120_000;

export function startWorker(options: WorkerOptions): Worker {
  const { name, client, key, ttl, fenceUrl, record } = options;
  const random = options.random ?? Math.random;
  const changed = options.onChange ?? (() => undefined);
  const errors = new Map<string, number>();
  const releases: Promise<void>[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let mode: HoldMode = 'short';
  let stopping = false;
  let ignoredLosses = 0;
  let current: { stop: () => void; shorten: () => void } | undefined;
  let wake: (() => void) | undefined;
  let lastState = 'between';

  const { logFile } = options;
  // From the start, so that a worker that never logged has an empty log rather than none.
  if (logFile !== undefined) appendFileSync(logFile, '');
  const log = (kind: HolderEvent['kind'], token: string, detail?: string) => {
    const event: HolderEvent = { kind, at: now(), holder: name, token, ...(detail !== undefined && { detail }) };
    if (logFile !== undefined) appendFileSync(logFile, `${JSON.stringify(event)}\n`);
    record(event);
  };
  const setState = (state: string) => {
    lastState = state;
    changed();
  };

  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
    return timer;
  };
  const clear = (timer: NodeJS.Timeout | undefined) => {
    if (timer === undefined) return;
    clearTimeout(timer);
    timers.delete(timer);
  };
  const shortHoldMs = () => 300 + random() * 200;

  /** One contention, from subscribe to release, loss or failure. */
  const once = () =>
    new Promise<void>((resolve) => {
      /** The grant this worker believes it holds (an ignoring worker goes on believing after a loss). */
      let holding: string | undefined;
      let holdingLong = false;
      let writer: NodeJS.Timeout | undefined;
      let holdTimer: NodeJS.Timeout | undefined;
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        clear(writer);
        clear(holdTimer);
        resolve();
      };
      const write = (token: string) => {
        // Fire and forget: a write that reaches the fence after a newer holder's is exactly what the fence is for.
        fenceWrite(fenceUrl, token, name).catch(() => undefined);
        writer = later(WRITE_EVERY_MS, () => write(token));
      };
      /** Stops writing, logs the release (before etcd sees it: the revoke comes after), unsubscribes. */
      const release = () => {
        clear(writer);
        if (holding !== undefined) log('released', holding);
        holding = undefined;
        subscription.unsubscribe();
        end();
      };
      const subscription: Subscription = lock$(client, key, {
        ttl,
        id: name,
        onRelease: (released) => void releases.push(released),
      }).subscribe({
        next: (state) => {
          setState(
            state.kind === 'acquiring'
              ? `acquiring${state.waitingFor ? ` behind ${state.waitingFor.fencingToken}` : ''}`
              : `${state.kind} ${state.fencingToken}`,
          );
          if (state.kind === 'held') {
            holding = state.fencingToken;
            holdingLong = mode === 'long';
            log('acquired', holding, holdDetail(mode));
            write(holding);
            holdTimer = later(holdingLong ? LONG_HOLD_CAP_MS : shortHoldMs(), release);
          } else if (state.kind === 'refreshed') {
            log('refreshed', state.fencingToken);
          } else if (state.kind === 'lost' && options.ignoreLoss) {
            ignoredLosses++;
            changed();
          } else if (state.kind === 'lost') {
            clear(writer);
            holding = undefined;
            log('lost', state.fencingToken, state.reason);
          }
        },
        error: (err: unknown) => {
          const code = isLockError(err) ? err.code : String(err);
          errors.set(code, (errors.get(code) ?? 0) + 1);
          changed();
          // An ignoring holder works on, as if nothing happened, until its hold timer says it is done.
          if (holding === undefined) end();
        },
      });
      current = {
        stop: release,
        shorten: () => {
          if (!holdingLong || holding === undefined) return;
          holdingLong = false;
          clear(holdTimer);
          holdTimer = later(shortHoldMs(), release);
        },
      };
    });

  const loop = (async () => {
    while (!stopping) {
      const errorsBefore = [...errors.values()].reduce((a, b) => a + b, 0);
      await once();
      current = undefined;
      setState('between');
      const failed = [...errors.values()].reduce((a, b) => a + b, 0) > errorsBefore;
      // After a failure (etcd unreachable, lease lost while queued) back off a moment; else a short random pause.
      const pauseMs = failed ? RETRY_AFTER_ERROR_MS : random() * 100;
      await new Promise<void>((resolve) => {
        wake = resolve;
        later(pauseMs, resolve);
      });
      wake = undefined;
    }
  })();

  return {
    name,
    errors,
    get lastState() {
      return lastState;
    },
    get ignoredLosses() {
      return ignoredLosses;
    },
    hold: (next) => {
      mode = next;
      if (next === 'short') current?.shorten();
    },
    stop: async () => {
      stopping = true;
      current?.stop();
      wake?.();
      await loop;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await Promise.all(releases);
    },
  };
}

/**
 * The events of a worker's log file ({@link WorkerOptions.logFile}), in the order it wrote them; a torn last line
 * (a worker killed mid-write) is left out.
 * @throws Error when the file does not exist: the worker was never started with it
 */
export function readWorkerLog(file: string): HolderEvent[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .slice(0, -1)
    .map((line) => JSON.parse(line) as HolderEvent);
}

/**
 * A temporary directory for a fault run's JSON-lines logs, removed by `remove()` unless `FAULTS_KEEP_LOGS` is set:
 * then `remove()` prints where it is, for a post-mortem.
 */
export function faultLogDir(label: string): ReturnType<typeof tempDir> {
  const dir = tempDir(label);
  if (!process.env['FAULTS_KEEP_LOGS']) return dir;
  return { ...dir, remove: () => console.log(`[faults] ${label}: logs kept in ${dir.dir}`) };
}

/** The errors of several workers, added up by code. */
export function errorCounts(workers: readonly Worker[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const worker of workers) {
    for (const [code, count] of worker.errors) counts[code] = (counts[code] ?? 0) + count;
  }
  return counts;
}

/** Times in ms relative to a fault, for the printed figures. */
export interface FaultFigures {
  fault: string;
  client: ClientKind;
  ttlSeconds: number;
  /**
   * About when a holder cut off from etcd learns of its loss, counted from the fault: its local deadline is its last
   * acknowledged keepalive + TTL - margin, and that keepalive was sent about one refresh interval before at most (a
   * little more when a keepalive was in flight at the fault, or the timers ran late: the lower bound is loose).
   */
  lossExpectedWithinMs: [number, number];
  /** How long the fault lasted (fault start to heal), ms. */
  faultLastedMs: number;
  /** Who held the lock when the fault began, if the run waited for a holder first. */
  holderAtFault: string | null;
  /** How that grant ended: a loss reason, `released`, or null while still held at the end of the log. */
  holderAtFaultEndedBy: string | null;
  /** Fault start to the first `lost` any worker logged after it; null when nobody lost the lock. */
  faultToFirstLossMs: number | null;
  firstLossReason: string | null;
  /** From that loss to the deletion of the lost holder's key as a watcher on the cluster saw it (etcd's expiry). */
  firstLossToKeyDeletedMs: number | null;
  /** Fault start to the first grant after it (the lock's service gap, if any). */
  faultToNextGrantMs: number | null;
  /** Heal to the first grant after it. */
  healToNextGrantMs: number | null;
  /** Grants during the fault, and in all the log given. */
  grantsDuringFault: number;
  grants: number;
}

export function figures(params: {
  fault: string;
  client: ClientKind;
  ttlSeconds: number;
  events: readonly HolderEvent[];
  faultAt: number;
  healedAt: number;
  holderAtFault?: { holder: string; token: string } | undefined;
  /** When a watcher on the cluster saw each lock key deleted, by the key's create revision (the token). */
  deletedAt?: ReadonlyMap<string, number>;
}): FaultFigures {
  const { events, faultAt, healedAt, ttlSeconds, holderAtFault } = params;
  const round = (ms: number | undefined) => (ms === undefined ? null : Math.round(ms));
  const firstLoss = events.find((e) => e.kind === 'lost' && e.at >= faultAt);
  const acquired = events.filter((e) => e.kind === 'acquired');
  const ttlMs = ttlSeconds * 1000;
  const refreshMs = ttlMs / 2; // the workers use the default refresh interval
  const deadlineMs = ttlMs - lossMarginMs(ttlSeconds, refreshMs);
  const grantAtFault =
    holderAtFault && grants(events).find((g) => g.holder === holderAtFault.holder && g.token === holderAtFault.token);
  const lossEvent =
    grantAtFault?.endedBy === 'lost'
      ? events.find((e) => e.kind === 'lost' && e.holder === grantAtFault.holder && e.token === grantAtFault.token)
      : undefined;
  const deleted = firstLoss && params.deletedAt?.get(firstLoss.token);
  return {
    fault: params.fault,
    client: params.client,
    ttlSeconds,
    lossExpectedWithinMs: [deadlineMs - refreshMs, deadlineMs],
    faultLastedMs: Math.round(healedAt - faultAt),
    holderAtFault: holderAtFault ? `${holderAtFault.holder} (token ${holderAtFault.token})` : null,
    holderAtFaultEndedBy: grantAtFault ? (lossEvent?.detail ?? grantAtFault.endedBy ?? null) : null,
    faultToFirstLossMs: round(firstLoss && firstLoss.at - faultAt),
    firstLossReason: firstLoss?.detail ?? null,
    firstLossToKeyDeletedMs: round(firstLoss && deleted !== undefined ? deleted - firstLoss.at : undefined),
    faultToNextGrantMs: figureFrom(acquired, faultAt),
    healToNextGrantMs: figureFrom(acquired, healedAt),
    grantsDuringFault: acquired.filter((e) => e.at >= faultAt && e.at < healedAt).length,
    grants: acquired.length,
  };
}

function figureFrom(acquired: readonly HolderEvent[], from: number): number | null {
  const next = acquired.find((e) => e.at >= from);
  return next ? Math.round(next.at - from) : null;
}

/** Prints figures as one line the docs can quote: `[faults] <fault> {json}`. */
export function printFigures(figures: { fault: string; [name: string]: unknown }): void {
  console.log(`[faults] ${figures.fault} ${JSON.stringify(figures)}`);
}

/** mulberry32: a small seeded PRNG, so that a soak schedule can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Resolves once `probe` is true, polling every 20 ms; false after `timeoutMs`. */
export async function waitFor(probe: () => boolean, timeoutMs: number): Promise<boolean> {
  const start = performance.now();
  while (!probe()) {
    if (performance.now() - start > timeoutMs) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}
