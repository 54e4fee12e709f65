/** What the numbers were taken on: they mean little without the machine, its load, and the versions. */
import { spawnSync } from 'node:child_process';
import os from 'node:os';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGb: number;
  os: string;
  node: string;
  etcd: string;
  /** The commit measured, `+ changes` when the work tree differs from it. */
  commit: string;
  /** 1, 5 and 15 minute load averages. */
  loadBefore: number[];
  loadAfter: number[] | undefined;
  startedAt: string;
}

function etcdVersion(): string {
  const bin = process.env['BENCH_ETCD_BIN'] || process.env['ETCD_BIN'] || 'etcd';
  const result = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return /etcd Version: (\S+)/.exec(result.stdout ?? '')?.[1] ?? 'unknown';
}

function commit(): string {
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  if (head.status !== 0) return 'unknown (not a git checkout)';
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'lib', 'cli'], { encoding: 'utf8' }).stdout.trim();
  return `${head.stdout.trim()}${dirty ? ' + uncommitted changes in lib/ or cli/' : ''}`;
}

export function describeMachine(): Machine {
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.cpus().length,
    memoryGb: Math.round(os.totalmem() / 1024 ** 3),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    etcd: etcdVersion(),
    commit: commit(),
    loadBefore: os.loadavg(),
    loadAfter: undefined,
    startedAt: new Date().toISOString(),
  };
}

export function formatLoad(load: number[] | undefined): string {
  return load ? load.map((value) => value.toFixed(2)).join(' / ') : 'n/a';
}
