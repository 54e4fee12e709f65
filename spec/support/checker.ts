/**
 * The safety checker: pure functions over the logs of a run (no I/O, no clock), each returning the violations it
 * found as readable messages; `[]` means the property held. The logs come from the workers ({@link HolderEvent}:
 * what each holder and its child did) and from the fence ({@link FenceAttempt}: every write and its verdict).
 *
 * Times (`at`) are `performance.timeOrigin + performance.now()` in every process, so logs from processes on one
 * machine can be merged; each check says which order it relies on.
 */
import type { FenceAttempt } from './fence.js';

export type { FenceAttempt } from './fence.js';

/** One line of a worker's log. A grant is identified by its holder and its token. */
export interface HolderEvent {
  kind: 'acquired' | 'refreshed' | 'released' | 'lost' | 'child-started' | 'child-killed' | 'child-reaped';
  /** When the worker saw it: `performance.timeOrigin + performance.now()`. */
  at: number;
  /** The worker (library subscriber or etcdlocker process) that holds, or held, the grant. */
  holder: string;
  /** The grant's fencing token, as a decimal string. */
  token: string;
  /** A loss reason, a signal, an exit code: for the messages only. */
  detail?: string;
}

/** The properties of issue 4's check, one name each. */
export type Property =
  'tokens-rise' | 'no-overlap' | 'no-stale-write' | 'child-reaped-before-next-grant' | 'held-again-after-heal';

export interface Violation {
  property: Property;
  message: string;
}

/** A grant: from its `acquired` event to its first `released` or `lost` (`end` is Infinity while still held). */
export interface Grant {
  holder: string;
  token: string;
  start: number;
  end: number;
  endedBy: 'released' | 'lost' | undefined;
}

/**
 * The grants of a run in grant order (by `acquired` time; ties keep log order).
 *
 * @example
 * grants(events).map((g) => g.token); // ['41', '45']
 */
export function grants(events: readonly HolderEvent[]): Grant[] {
  return events
    .map((event, index) => ({ event, index }))
    .filter(({ event }) => event.kind === 'acquired')
    .sort((a, b) => a.event.at - b.event.at || a.index - b.index)
    .map(({ event }) => {
      const end = events
        .filter(
          (e) =>
            (e.kind === 'released' || e.kind === 'lost') &&
            e.holder === event.holder &&
            e.token === event.token &&
            e.at >= event.at,
        )
        .sort((a, b) => a.at - b.at)[0];
      return {
        holder: event.holder,
        token: event.token,
        start: event.at,
        end: end?.at ?? Infinity,
        endedBy: end?.kind as Grant['endedBy'],
      };
    });
}

const name = (grant: Pick<Grant, 'holder' | 'token'>) => `${grant.holder} (token ${grant.token})`;

/**
 * Tokens rise strictly in grant order: each grant's token is greater than every earlier grant's. A repeated token
 * means two grants of one epoch; a lower one means etcd's revisions did not order the holders.
 *
 * @example
 * tokensRise([acquired('a', '7', 1), acquired('b', '5', 2)]); // one violation
 */
export function tokensRise(events: readonly HolderEvent[]): Violation[] {
  const violations: Violation[] = [];
  let previous: Grant | undefined;
  for (const grant of grants(events)) {
    if (previous && BigInt(grant.token) <= BigInt(previous.token)) {
      violations.push({
        property: 'tokens-rise',
        message: `${name(grant)} was granted after ${name(previous)}, but its token is not greater`,
      });
    }
    if (!previous || BigInt(grant.token) > BigInt(previous.token)) previous = grant;
  }
  return violations;
}

/**
 * Holders' intervals never overlap: every grant starts at or after the end (release or loss) of every earlier
 * grant. A grant with no end is held to the end of the log, so any later grant overlaps it. This relies on the
 * order of `acquired` and `released`/`lost` across workers, so feed it logs from one clock (one machine).
 *
 * @example
 * noOverlap([acquired('a', '7', 1), acquired('b', '9', 2), lost('a', '7', 3)]); // one violation
 */
export function noOverlap(events: readonly HolderEvent[]): Violation[] {
  const violations: Violation[] = [];
  let latest: Grant | undefined; // the earlier grant that ends last
  for (const grant of grants(events)) {
    if (latest && grant.start < latest.end) {
      const until =
        latest.end === Infinity ? 'never released or lost it' : `ended it ${latest.end - grant.start} ms later`;
      violations.push({
        property: 'no-overlap',
        message: `${name(grant)} acquired the lock while ${name(latest)} still held it (${latest.holder} ${until})`,
      });
    }
    if (!latest || grant.end > latest.end) latest = grant;
  }
  return violations;
}

/**
 * No stale write is accepted by the fence: once a write with token T was accepted, no write with a token below T
 * is accepted after it. Such a write comes from a holder whose grant a later grant had already superseded, and it
 * did reach the resource. A working fence makes this impossible by construction; the check is there for the
 * fences that trust (the negative control) and for resources fenced some other way. Uses the fence's own order
 * (arrival), one clock.
 *
 * @example
 * noStaleWrite([write('b', '9', 1), write('a', '7', 2)]); // one violation: a's write came after b's
 */
export function noStaleWrite(writes: readonly FenceAttempt[]): Violation[] {
  const violations: Violation[] = [];
  let newest: FenceAttempt | undefined; // the first accepted write with the highest token so far
  for (const write of [...writes].sort((a, b) => a.at - b.at)) {
    if (write.verdict !== 'accepted') continue;
    if (newest && BigInt(write.token) < BigInt(newest.token)) {
      violations.push({
        property: 'no-stale-write',
        message:
          `the fence accepted a stale write from ${write.writer} (token ${write.token}) ` +
          `${write.at - newest.at} ms after ${newest.writer}'s write with the newer token ${newest.token}`,
      });
    }
    if (!newest || BigInt(write.token) > BigInt(newest.token)) newest = write;
  }
  return violations;
}

/**
 * For every loss of a grant that ran a child, the child was reaped before the next grant (of anyone) began; a
 * loss whose child was never reaped is a violation too. Grants without a `child-started` event (library workers)
 * are skipped. Relies on the order of `child-reaped` and the next `acquired` across workers: one clock.
 *
 * @example
 * childReapedBeforeNextGrant([
 *   acquired('a', '7', 1), childStarted('a', '7', 2), lost('a', '7', 3), acquired('b', '9', 4), childReaped('a', '7', 5),
 * ]); // one violation
 */
export function childReapedBeforeNextGrant(events: readonly HolderEvent[]): Violation[] {
  const violations: Violation[] = [];
  const all = grants(events);
  const of = (grant: Grant, kind: HolderEvent['kind']) =>
    events.filter((e) => e.kind === kind && e.holder === grant.holder && e.token === grant.token);
  all.forEach((grant, index) => {
    if (grant.endedBy !== 'lost' || of(grant, 'child-started').length === 0) return;
    const reaped = of(grant, 'child-reaped').sort((a, b) => a.at - b.at)[0];
    const next = all.slice(index + 1).find((g) => g.start >= grant.start);
    if (!reaped) {
      violations.push({
        property: 'child-reaped-before-next-grant',
        message: `${name(grant)} lost the lock but its child was never reaped`,
      });
    } else if (next && reaped.at > next.start) {
      violations.push({
        property: 'child-reaped-before-next-grant',
        message:
          `${name(grant)} lost the lock and its child was reaped only ${reaped.at - next.start} ms after ` +
          `${name(next)} was granted it`,
      });
    }
  });
  return violations;
}

/**
 * Liveness after a fault: someone holds the lock again within `withinMs` of `healedAt`, i.e. a grant begins in
 * `[healedAt, healedAt + withinMs]`, or one that began earlier lasts past that window.
 *
 * @example
 * heldAgainAfterHeal(events, healedAt, (ttl + 3) * 1000);
 */
export function heldAgainAfterHeal(events: readonly HolderEvent[], healedAt: number, withinMs: number): Violation[] {
  const deadline = healedAt + withinMs;
  const held = grants(events).some(
    (g) => (g.start >= healedAt && g.start <= deadline) || (g.start < healedAt && g.end > deadline),
  );
  return held
    ? []
    : [{ property: 'held-again-after-heal', message: `nobody held the lock within ${withinMs} ms of the heal` }];
}

/** What {@link check} looks at. */
export interface RunLog {
  events: readonly HolderEvent[];
  writes?: readonly FenceAttempt[];
  /** When the last fault healed and how soon someone must hold the lock again; checked only when given. */
  heal?: { at: number; withinMs: number };
}

/**
 * Every check over one run's logs.
 *
 * @example
 * assert.deepEqual(check({ events, writes: fence.log() }), []);
 */
export function check(run: RunLog): Violation[] {
  return [
    ...tokensRise(run.events),
    ...noOverlap(run.events),
    ...noStaleWrite(run.writes ?? []),
    ...childReapedBeforeNextGrant(run.events),
    ...(run.heal ? heldAgainAfterHeal(run.events, run.heal.at, run.heal.withinMs) : []),
  ];
}
