/**
 * The targets of issue 5, checked against the single-node run: each with the measured figure, the goal, and
 * whether it was met. What to do about a miss is written up in docs/benchmarks.md, not here.
 */
import type { ContendedRow } from './contended.js';
import { NODE_BASELINE, ETCDLOCKER_RUN } from './cli.js';
import type { TopologyResults } from './results.js';
import { ms, ratio } from './table.js';

export interface TargetCheck {
  target: string;
  measured: string;
  met: boolean | undefined;
}

/** The row names the targets compare (see locks/*.ts). */
export const SUBJECTS = {
  floor: 'floor',
  ours: 'lock$',
  locker: 'locker',
  lockerStream: 'locker.lock$',
  facadeOnLocker: 'facade on a locker',
  etcd3: 'etcd3 Lock',
  v1: 'etcd-lock 1.1.0',
  baton: 'floor (baton)',
} as const;

function check(target: string, measured: string, met: boolean | undefined): TargetCheck {
  return { target, measured, met };
}

export function checkTargets(run: TopologyResults): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const p50 = (short: string) => run.uncontended.find((row) => row.kind.short === short)?.latency.p50 ?? Number.NaN;
  if (run.uncontended.length > 0) {
    for (const short of [SUBJECTS.ours, SUBJECTS.locker, SUBJECTS.lockerStream, SUBJECTS.facadeOnLocker]) {
      const ours = p50(short);
      checks.push(
        check(
          `uncontended ${short} within 1.25x of the floor (txn + delete), p50`,
          ratio(ours / p50(SUBJECTS.floor)),
          ours <= 1.25 * p50(SUBJECTS.floor),
        ),
        check(
          `uncontended ${short} at least 2x faster than etcd3 Lock, p50`,
          ratio(p50(SUBJECTS.etcd3) / ours),
          p50(SUBJECTS.etcd3) >= 2 * ours,
        ),
        check(
          `uncontended ${short} faster than etcd-lock 1.1.0, p50`,
          `${ms(ours)} vs ${ms(p50(SUBJECTS.v1))} ms`,
          ours < p50(SUBJECTS.v1),
        ),
      );
    }
  }
  const at = (k: number, short: string): ContendedRow | undefined =>
    run.contended.find((entry) => entry.k === k)?.rows.find((row) => row.short === short);
  for (const short of [SUBJECTS.ours, SUBJECTS.locker, SUBJECTS.lockerStream]) {
    for (const k of [2, 8]) {
      const ours = at(k, short);
      const floor = at(k, SUBJECTS.baton);
      if (!ours || !floor) continue;
      const share = ours.handoffsPerSecond / floor.handoffsPerSecond;
      checks.push(
        check(
          `K=${k} ${short}: at least 90% of the floor's handoff rate`,
          `${(share * 100).toFixed(0)}%`,
          share >= 0.9,
        ),
      );
    }
    const ours32 = at(32, short);
    const etcd3 = at(32, SUBJECTS.etcd3);
    if (ours32 && etcd3) {
      const times = ours32.handoffsPerSecond / etcd3.handoffsPerSecond;
      checks.push(check(`K=32 ${short}: at least 3x etcd3 Lock-with-retry`, ratio(times), times >= 3));
    }
    const rows = run.contended
      .map((entry) => entry.rows.find((row) => row.short === short))
      .filter((row) => row !== undefined);
    if (rows.length > 0) {
      const worst = Math.max(...rows.map((row) => row.fairness.spread));
      const slow = rows.reduce((sum, row) => sum + row.slowHandoffs, 0);
      checks.push(
        check(
          `${short}: strictly fair (grants per contender differ by at most 1), every K`,
          `max spread ${worst}`,
          worst <= 1,
        ),
        check(
          `${short}: no handoff waits on etcd's 100 ms watch catch-up loop`,
          `${slow} handoffs of 90 ms or more`,
          slow === 0,
        ),
      );
    }
  }
  for (const row of run.scale.filter((entry) => entry.locks === 10_000 && entry.target)) {
    const name = row.short;
    const ok = row.failures === 0 && !row.timedOut;
    checks.push(
      check(
        `10,000 locks, ${name}: acquired in under 2 s`,
        ok ? `${ms(row.acquireMs)} ms` : `${row.failures} failed`,
        ok && row.acquireMs < 2000,
      ),
      check(
        `10,000 locks, ${name}: one keepalive stream`,
        ok ? String(row.keepaliveStreams) : 'n/a',
        ok && row.keepaliveStreams === 1,
      ),
      check(
        `10,000 locks, ${name}: under 40 MB added (heap + external)`,
        `${row.heapAddedMb.toFixed(1)} MB`,
        ok && row.heapAddedMb < 40,
      ),
    );
  }
  const node = run.cli.find((row) => row.name === NODE_BASELINE);
  const locker = run.cli.find((row) => row.name === ETCDLOCKER_RUN);
  if (node && locker) {
    const times = locker.time.p50 / node.time.p50;
    checks.push(check('`etcdlocker -- true` within 1.5x of `node -e 0`, p50', ratio(times), times <= 1.5));
  }
  return checks;
}
