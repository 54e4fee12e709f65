/**
 * Turns what an etcdlocker worker run produces into the checker's {@link HolderEvent}s.
 *
 * A worker is an etcdlocker started with `-v` whose command is `spec/faults/fixtures/fenced-child.mjs` (or any
 * child that logs the same JSON lines to a file). Three sources, one clock: every `at` is
 * `performance.timeOrigin + performance.now()` (milliseconds since the epoch, as `now()` in fence.ts), read in the
 * process named below. etcdlocker's own `-v` stamps are relative to its start, so they are not used.
 *
 * | event           | source                                                  | clock read by | bound        |
 * | --------------- | ------------------------------------------------------- | ------------- | ------------ |
 * | `acquired`      | stderr `holding <key> with fencing token N`             | the test      | after (late) |
 * | `lost`          | stderr `etcdlocker: lost the lock (reason): ...`        | the test      | after (late) |
 * | `child-killed`  | stderr `...SIGTERM to the command's process group...`   | the test      | after (late) |
 * |                 | or `the command outlived SIGTERM ...: SIGKILL`          |               |              |
 * | `released`      | once `released the lock` comes: the stderr line before  | the test      | after (late) |
 * |                 | the revoke (`the command exited ...`, `... was killed   |               | (see below)  |
 * |                 | by ...` or `the command's process group is gone`)       |               |              |
 * | `child-started` | the child's `started` line (its PID, `ETCD_LOCK_REV`)   | the child     | exact        |
 * | `child-reaped`  | the test polling {@link isAlive} on that PID (a zombie  | the test      | after, by at |
 * |                 | counts as dead), every `pollMs`                         |               | most pollMs  |
 * | `lost` (etcd)   | `etcdEndedAt`: when the test saw etcd delete the key of | the test      | after (late) |
 * |                 | a holder it paused (see {@link WorkerLog.events})       |               |              |
 *
 * Stderr lines are stamped when they reach the test process (a pipe away), so every stamp of the test is an upper
 * bound: an `acquired` is logged a little late (lenient for no-overlap by a pipe's latency), a loss or a reaping
 * a little late too (strict for no-overlap and child-reaped-before-next-grant). Writes are judged by the fence's
 * own log, not by these events. An `etcdEndedAt` is read off the same watch event that wakes the next waiter,
 * which then needs a round trip to etcd (it re-reads the queue) before it prints `holding`: a margin of a few ms
 * only (7 to 15 ms in the runs of spec/faults/cli-faults.spec.ts), but one that load stretches on both sides.
 *
 * A release is the exception, because `released the lock` is printed once etcd has answered the revoke: etcd
 * grants the next waiter as soon as it applies the revoke, and that waiter's `holding` line can reach the test
 * first (it did in spec/faults/cli-faults.spec.ts, where `c` takes over from `b`), a false overlap. So a release
 * is stamped by the line etcdlocker prints when its command is over, right before it sends the revoke (cli/run.ts:
 * the wrap-up revokes in the same turn). That line is written before the next holder can be granted, so it is
 * read first; a next grant that came before it would be a real overlap, and is still caught. The `released` event
 * itself comes only with `released the lock`: a run that never printed it has not released.
 */
import { readFileSync } from 'node:fs';
import type { HolderEvent } from './checker.js';
import { isAlive, type LockerProcess } from './cli.js';
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

/** One stderr line of etcdlocker, stamped when the test read it. */
export interface StampedLine {
  at: number;
  text: string;
}

/** A child's death as the test saw it. */
export interface ChildDeath {
  pid: number;
  at: number;
}

/**
 * The pure part: a worker's stamped stderr, its child's log and the deaths the test saw, as checker events, in
 * time order. All events after a `holding ... with fencing token N` line belong to grant N (one etcdlocker run
 * holds at most once).
 *
 * @example
 * toHolderEvents('a', [{ at: 5, text: 'etcdlocker 0.1s holding /k/1 with fencing token 7' }], [], []);
 * // [{ kind: 'acquired', holder: 'a', token: '7', at: 5 }]
 */
export function toHolderEvents(
  holder: string,
  lines: readonly StampedLine[],
  childLines: readonly ChildLine[],
  deaths: readonly ChildDeath[],
): HolderEvent[] {
  const events: HolderEvent[] = [];
  let token: string | undefined;
  /** When etcdlocker last said its command was over: it sends the revoke right after. */
  let commandOverAt: number | undefined;
  for (const { at, text } of lines) {
    const message = text.replace(/^etcdlocker(?::| [\d.]+s) /, '');
    const holding = /^holding \S+ with fencing token (\d+)$/.exec(message);
    if (holding) {
      token = holding[1]!;
      events.push({ kind: 'acquired', holder, token, at });
      continue;
    }
    if (token === undefined) continue;
    const lost = /^lost the lock \(([^)]*)\)/.exec(message);
    if (lost) events.push({ kind: 'lost', holder, token, at, detail: lost[1]! });
    else if (/SIGTERM to the command's process group/.test(message)) {
      events.push({ kind: 'child-killed', holder, token, at, detail: 'SIGTERM' });
    } else if (/^the command outlived SIGTERM/.test(message)) {
      events.push({ kind: 'child-killed', holder, token, at, detail: 'SIGKILL' });
    } else if (/^the command (exited with code|was killed by) |^the command's process group is gone$/.test(message)) {
      commandOverAt = at;
    } else if (message === 'released the lock') {
      events.push({ kind: 'released', holder, token, at: commandOverAt ?? at });
    }
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
  /** etcdlocker's stderr so far, line by line, stamped on arrival. */
  lines(): StampedLine[];
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
 * Starts watching a worker: stamps its stderr lines as they arrive and polls its child log and its children's
 * PIDs every `pollMs`. Call right after `startLocker` so no line is missed (startLocker buffers from spawn, and
 * this reads that buffer first).
 *
 * @example
 * const a = watchWorker('a', startLocker(['-v', '-e', ep, '-k', key, '--', process.execPath, CHILD, log, url, 'a']), log);
 * try { ... } finally { a.stop(); }
 * check({ events: [...a.events(), ...b.events()], writes: fence.log() });
 */
export function watchWorker(holder: string, locker: LockerProcess, childLogFile: string, pollMs = 5): WorkerLog {
  const lines: StampedLine[] = [];
  let partial = '';
  const take = (chunk: string) => {
    const at = now();
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    for (const text of parts) lines.push({ at, text });
  };
  take(locker.stderr());
  const stream = locker.process.stderr;
  stream?.on('data', take);

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
    lines: () => [...lines],
    childLines: () => [...childLines],
    childPids: () => childLines.filter((l) => l.kind === 'started' && l.pid !== undefined).map((l) => l.pid!),
    deaths: () => [...deaths],
    events(options = {}) {
      const events = toHolderEvents(holder, lines, childLines, deaths);
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
      stream?.off('data', take);
    },
  };
}
