/**
 * The benchmark's settings, from the environment. The defaults keep `npm run bench` to a few minutes;
 * `BENCH_SCALE=5 npm run bench` runs five times longer for steadier tails.
 */
export type Section = 'floor' | 'uncontended' | 'contended' | 'scale' | 'cli';
export type Topology = 'single' | 'cluster';

export interface BenchConfig {
  /** Multiplies every time budget and iteration count. */
  scale: number;
  sections: ReadonlySet<Section>;
  topologies: ReadonlySet<Topology>;
  /** Contender counts for the contended runs. */
  contenders: number[];
  /** How many locks the scale runs hold at once. */
  scaleCounts: number[];
  /** Where the report goes; `none` prints only. */
  out: string;
  /** Another etcdlocker to time beside the built one (a bundle, say): a path to a runnable file. */
  extraEtcdlocker: string | undefined;
}

const SECTIONS: Section[] = ['floor', 'uncontended', 'contended', 'scale', 'cli'];
const TOPOLOGIES: Topology[] = ['single', 'cluster'];

function list<T extends string>(name: string, allowed: T[]): Set<T> {
  const raw = process.env[name];
  if (!raw) return new Set(allowed);
  const picked = raw.split(',').map((item) => item.trim());
  for (const item of picked) {
    if (!allowed.includes(item as T)) throw new Error(`${name}: expected some of ${allowed.join(',')}, got ${item}`);
  }
  return new Set(picked as T[]);
}

function numbers(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (!raw) return fallback;
  const values = raw.split(',').map(Number);
  if (values.some((value) => !Number.isInteger(value) || value < 1)) {
    throw new Error(`${name}: expected whole numbers >= 1, got ${raw}`);
  }
  return values;
}

export function readConfig(): BenchConfig {
  const scale = Number(process.env['BENCH_SCALE'] ?? '1');
  if (!(scale > 0)) throw new Error(`BENCH_SCALE: expected a number > 0, got ${process.env['BENCH_SCALE']}`);
  return {
    scale,
    sections: list('BENCH_ONLY', SECTIONS),
    topologies: list('BENCH_TOPOLOGY', TOPOLOGIES),
    contenders: numbers('BENCH_CONTENDERS', [2, 8, 32]),
    scaleCounts: numbers('BENCH_LOCKS', [1_000, 10_000]),
    out: process.env['BENCH_OUT'] ?? 'docs/benchmarks.md',
    extraEtcdlocker: process.env['BENCH_ETCDLOCKER'] || undefined,
  };
}
