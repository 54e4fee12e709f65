/**
 * Part 3, contended handoffs: K contenders on one key, each on its own client, each taking the lock,
 * incrementing a shared counter, releasing, and asking again, for a fixed time after a warm-up.
 */
import { timedOut } from './deadline.js';
import { HandoffLog, type HandoffResult } from './handoffs.js';
import type { Contender, LockKind } from './locks/kind.js';

export interface ContendedPlan {
  warmupMs: number;
  durationMs: number;
  /** How long after the window a run may take to wind down before it is called stalled. */
  drainMs: number;
}

export interface ContendedRow extends HandoffResult {
  name: string;
  short: string;
  lateErrors: number;
  /** Some contender never got the lock back after the window (and the run was abandoned). */
  stalled: boolean;
  /** The first error that ended a contender's loop. */
  failure: string | undefined;
}

export function contendedPlan(scale: number): ContendedPlan {
  return { warmupMs: 300, durationMs: 2000 * scale, drainMs: 20_000 };
}

export async function runContended(
  kind: LockKind,
  k: number,
  endpoints: string[],
  key: string,
  plan: ContendedPlan,
): Promise<ContendedRow> {
  let lateErrors = 0;
  const contenders: Contender[] = [];
  try {
    for (let i = 0; i < k; i++) {
      contenders.push(await kind.open({ endpoints, key, id: `contender-${i}`, onLateError: () => lateErrors++ }));
    }
    const start = performance.now();
    const log = new HandoffLog(k, start + plan.warmupMs, start + plan.warmupMs + plan.durationMs);
    let failure: string | undefined;
    const loops = contenders.map(async (contender, who) => {
      try {
        while (log.open) {
          const askedAt = performance.now();
          const release = await contender.acquire();
          log.acquired(who, askedAt);
          await log.increment();
          log.releasing();
          await release();
        }
      } catch (err) {
        failure ??= err instanceof Error ? err.message : String(err);
      }
    });
    const stalled = await timedOut(Promise.all(loops), plan.warmupMs + plan.durationMs + plan.drainMs);
    return { name: kind.name, short: kind.short, ...log.result(), lateErrors, stalled, failure };
  } finally {
    await Promise.all(contenders.map((contender) => contender.close().catch(() => undefined)));
  }
}
