/**
 * Latency sampling with warm-up, interleaved between subjects so that a burst of load from elsewhere on the
 * machine lands on all of them rather than on one.
 */

export interface Subject {
  name: string;
  /**
   * One timed operation; resolves when it is complete (for a lock: released, as etcd sees it). It may resolve
   * with its own duration in ms, when only part of it is to be timed.
   */
  op: () => Promise<number | void>;
}

export interface SamplePlan {
  /** Untimed operations per subject before the first round. */
  warmup: number;
  rounds: number;
  /** Time per subject per round... */
  roundMs: number;
  /** ...but at least this many operations, and at most that many. */
  minPerRound: number;
  maxPerRound: number;
}

/** Runs every subject's warm-up, then `rounds` rounds of each in turn; returns each one's latencies in ms. */
export async function sampleInterleaved(subjects: Subject[], plan: SamplePlan): Promise<Map<string, number[]>> {
  const samples = new Map(subjects.map((subject) => [subject.name, [] as number[]]));
  for (const subject of subjects) {
    for (let i = 0; i < plan.warmup; i++) await subject.op();
  }
  for (let round = 0; round < plan.rounds; round++) {
    // Alternate the order too, so no subject always runs right after the same other one.
    const order = round % 2 === 0 ? subjects : [...subjects].reverse();
    for (const subject of order) {
      const into = samples.get(subject.name)!;
      const end = performance.now() + plan.roundMs;
      for (let n = 0; n < plan.maxPerRound && (n < plan.minPerRound || performance.now() < end); n++) {
        const start = performance.now();
        const own = await subject.op();
        into.push(typeof own === 'number' ? own : performance.now() - start);
      }
    }
  }
  return samples;
}

/**
 * The plan for `scale` (see BenchConfig): at scale 1, three rounds of at least 350 operations (and 0.3 s)
 * per subject, so that a p99 rests on 10 or more samples above it.
 */
export function latencyPlan(scale: number): SamplePlan {
  return {
    warmup: 50,
    rounds: Math.max(3, Math.round(3 * scale)),
    roundMs: 300,
    minPerRound: 350,
    maxPerRound: 20_000,
  };
}
