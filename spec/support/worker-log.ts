/**
 * Turns what an etcdlocker worker run leaves behind into the checker's {@link HolderEvent}s.
 *
 * A worker is an etcdlocker started with `--log-json` whose command is `spec/faults/fixtures/fenced-child.mjs` (or
 * any child that logs the same JSON lines to a file). Every `at` is `performance.timeOrigin + performance.now()`
 * (milliseconds since the epoch, as `now()` in fence.ts), read in the process that saw the thing happen:
 *
 * | event           | source                                                                    | clock of   |
 * | --------------- | ------------------------------------------------------------------------- | ---------- |
 * | `acquired`      | etcdlocker's `acquired` record                                            | etcdlocker |
 * | `lost`          | its `lost` record (detail: the reason)                                    | etcdlocker |
 * | `child-killed`  | its `child-signalled` records of a stop (`lost`, `ping-failed`, `kill-timeout`) | etcdlocker |
 * | `released`      | its `releasing` record, once `released` has come (see below)              | etcdlocker |
 * | `child-started` | the child's `started` line (its PID, `ETCD_LOCK_REV`)                     | the child  |
 * | `child-reaped`  | the test polling {@link isAlive} on that PID every `pollMs` (a zombie is dead) | the test |
 * | `lost` (etcd)   | `etcdEndedAt`: when the test saw etcd delete the key of a holder it paused | the test   |
 *
 * So a stamp comes a little after the fact: an `acquired` after etcd's grant (lenient for no-overlap by that
 * latency), a `lost` after etcd ended the grant, a reaping up to `pollMs` late (strict for no-overlap and for
 * child-reaped-before-next-grant). Writes are judged by the fence's own log, not by these events. An `etcdEndedAt`
 * is read off the same watch event that wakes the next waiter, which needs a round trip to etcd before it logs
 * `acquired`: a margin of a few ms, which load stretches on both sides.
 *
 * A release is stamped when etcdlocker is about to send the revoke (`releasing`), not when etcd has answered it
 * (`released`): etcd grants the next waiter as soon as it applies the revoke, so the next holder can stamp its
 * `acquired` before this one stamps `released`, a false overlap. A grant before `releasing` is a real overlap, and
 * is still caught. A run that never logged `released` has not released, whatever it logged before.
 */
import { readFileSync } from 'node:fs';
import type { LogEventName, LogRecord } from '../../cli/log.js';
import type { HolderEvent } from './checker.js';
import { isAlive, type LockerProcess, logRecords } from './cli.js';
import { now } from './fence.js';

/** One line of the child's JSON log (see spec/faults/fixtures/fenced-child.mjs). */
export interface ChildLine {
  kind: 'started' | 'write' | 'sigterm';
  /** The child's clock: `performance.timeOrigin + performance.now()`. */
  at: number;
  /** Its `ETCD_LOCK_REV`. */
  token: string;
  /** On `started`. */
  pid?: number;
  /** On `write`: what the fence answered. */
  verdict?: 'accepted' | 'rejected' | 'invalid' | 'unreachable';
}

/** A child's death as the test saw it. */
export interface ChildDeath {
  pid: number;
  at: number;
}

/**
 * The pure part: a worker's `--log-json` records, its child's log and the deaths the test saw, as checker events,
 * in time order. All events after the `acquired` record belong to that grant (one etcdlocker run holds at most
 * once).
 *
 * @example
 * toHolderEvents('a', [{ event: 'acquired', at: 5, pid: 9, key: '/k', holderKey: '/k/1', fencingToken: '7', leaseId: '1' }], [], []);
 * // [{ kind: 'acquired', holder: 'a', token: '7', at: 5 }]
 */
export function toHolderEvents(
  holder: string,
  records: readonly LogRecord[],
  childLines: readonly ChildLine[],
  deaths: readonly ChildDeath[],
): HolderEvent[] {
  const events: HolderEvent[] = [];
  let token: string | undefined;
  /** When etcdlocker was about to send the revoke. */
  let releasingAt: number | undefined;
  for (const record of records) {
    const { at } = record;
    if (record.event === 'acquired') {
      token = record.fencingToken;
      events.push({ kind: 'acquired', holder, token, at });
      continue;
    }
    if (token === undefined) continue;
    if (record.event === 'lost') events.push({ kind: 'lost', holder, token, at, detail: record.reason });
    else if (record.event === 'child-signalled' && record.why !== 'forwarded' && record.why !== 'second-signal') {
      events.push({ kind: 'child-killed', holder, token, at, detail: record.signal });
    } else if (record.event === 'releasing') releasingAt = at;
    else if (record.event === 'released') events.push({ kind: 'released', holder, token, at: releasingAt ?? at });
  }
  for (const line of childLines) {
    if (line.kind !== 'started' || line.pid === undefined) continue;
    events.push({ kind: 'child-started', holder, token: line.token, at: line.at, detail: `pid ${line.pid}` });
    const death = deaths.find((d) => d.pid === line.pid);
    if (death)
      events.push({ kind: 'child-reaped', holder, token: line.token, at: death.at, detail: `pid ${line.pid}` });
  }
  return events.sort((a, b) => a.at - b.at);
}

/** Reads a child's JSON-lines log; a missing file is an empty log, a torn last line is skipped. */
export function readChildLog(file: string): ChildLine[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line.endsWith('}'))
    .map((line) => JSON.parse(line) as ChildLine);
}

/** A worker being watched, from {@link watchWorker}. */
export interface WorkerLog {
  readonly holder: string;
  readonly locker: LockerProcess;
  /** etcdlocker's `--log-json` records so far (its own: lines of another PID, or not JSON, are left out). */
  records(): LogRecord[];
  /** Waits for etcdlocker's first record of `event`, and returns it. */
  next<E extends LogEventName>(event: E, timeoutMs?: number): Promise<Extract<LogRecord, { event: E }>>;
  /** The child's log so far. */
  childLines(): ChildLine[];
  /** The PIDs of the children that logged `started` (only these may be signalled by a test's cleanup). */
  childPids(): number[];
  /** The children the test has seen dead. */
  deaths(): ChildDeath[];
  /**
   * The checker's events for this worker. `etcdEndedAt` is for a holder the test paused: its own view stopped
   * with it, so its grant is ended (`lost`, detail `etcd deleted the key`) when the test saw etcd delete its key,
   * the grant as etcd saw it. Its own `lost` line, printed once it runs again, comes later and changes nothing.
   */
  events(options?: { etcdEndedAt?: number }): HolderEvent[];
  /** Stops polling (after the last child is dead, or in cleanup). Idempotent. */
  stop(): void;
}

/**
 * Starts watching a worker: polls its child log and its children's PIDs every `pollMs`; etcdlocker's records are
 * read from its stderr when asked for.
 *
 * @example
 * const a = watchWorker('a', startLocker(['--log-json', '-e', ep, '-k', key, '--', process.execPath, CHILD, log, url, 'a']), log);
 * try { ... } finally { a.stop(); }
 * check({ events: [...a.events(), ...b.events()], writes: fence.log() });
 */
export function watchWorker(holder: string, locker: LockerProcess, childLogFile: string, pollMs = 5): WorkerLog {
  const records = () => logRecords(locker.stderr()).filter((r) => r.pid === locker.pid);
  let childLines: ChildLine[] = [];
  const deaths: ChildDeath[] = [];
  const poll = () => {
    childLines = readChildLog(childLogFile);
    for (const line of childLines) {
      if (line.kind !== 'started' || line.pid === undefined) continue;
      const pid = line.pid;
      if (!deaths.some((d) => d.pid === pid) && !isAlive(pid)) deaths.push({ pid, at: now() });
    }
  };
  const timer = setInterval(poll, pollMs);
  let stopped = false;

  return {
    holder,
    locker,
    records,
    async next(event, timeoutMs = 20_000) {
      type Found = Extract<LogRecord, { event: typeof event }>;
      await locker.waitForStderr(new RegExp(`"event":"${event}"[^\\n]*\\n`), timeoutMs);
      const found = records().find((r): r is Found => r.event === event);
      if (!found) throw new Error(`no ${event} record of etcdlocker ${locker.pid}:\n${locker.stderr()}`);
      return found;
    },
    childLines: () => [...childLines],
    childPids: () => childLines.filter((l) => l.kind === 'started' && l.pid !== undefined).map((l) => l.pid!),
    deaths: () => [...deaths],
    events(options = {}) {
      const events = toHolderEvents(holder, records(), childLines, deaths);
      const acquired = events.find((e) => e.kind === 'acquired');
      if (options.etcdEndedAt !== undefined && acquired) {
        events.push({
          kind: 'lost',
          holder,
          token: acquired.token,
          at: options.etcdEndedAt,
          detail: 'etcd deleted the key',
        });
        events.sort((a, b) => a.at - b.at);
      }
      return events;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      poll();
      clearInterval(timer);
    },
  };
}
