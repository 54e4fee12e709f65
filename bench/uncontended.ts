/**
 * Part 2, uncontended acquire + release: one contender per lock, taking and releasing a free key again and
 * again on a client (and, where the lock has one, a session) that lives for the whole run.
 */
import type { Contender, LockKind } from './locks/kind.js';
import { latencyPlan, sampleInterleaved } from './sampler.js';
import { summarize, type Summary } from './stats.js';

export interface UncontendedRow {
  kind: LockKind;
  latency: Summary;
  lateErrors: number;
}

export async function measureUncontended(
  kinds: LockKind[],
  endpoints: string[],
  prefix: string,
  scale: number,
): Promise<UncontendedRow[]> {
  const lateErrors = new Map(kinds.map((kind) => [kind, 0]));
  const opened: [LockKind, Contender][] = [];
  try {
    for (const [i, kind] of kinds.entries()) {
      const contender = await kind.open({
        endpoints,
        key: `${prefix}/uncontended/${i}`,
        id: `bench-${i}`,
        onLateError: () => lateErrors.set(kind, (lateErrors.get(kind) ?? 0) + 1),
      });
      opened.push([kind, contender]);
    }
    const samples = await sampleInterleaved(
      opened.map(([kind, contender]) => ({
        name: kind.name,
        op: async () => {
          const release = await contender.acquire();
          await release();
        },
      })),
      latencyPlan(scale),
    );
    return kinds.map((kind) => ({
      kind,
      latency: summarize(samples.get(kind.name)!),
      lateErrors: lateErrors.get(kind) ?? 0,
    }));
  } finally {
    for (const [, contender] of opened) await contender.close();
  }
}
