/**
 * The etcd servers a benchmark run starts: one single node and one 3-member cluster, each on free loopback
 * ports with its own data dir, through the test suite's launcher (spec/support/etcd.ts) and the
 * production-timings wrapper next to this file.
 */
import { fileURLToPath } from 'node:url';
import type { Topology } from './config.js';

export interface BenchEtcd {
  topology: Topology;
  /** `host:port` of every member. */
  endpoints: string[];
  stop(): Promise<void>;
}

const WRAPPER = fileURLToPath(new URL('./etcd-production.sh', import.meta.url));

/** The launcher reads ETCD_BIN once, when it is loaded: set it first, then load it. */
async function launcher(): Promise<typeof import('../spec/support/etcd.js')> {
  process.env['BENCH_ETCD_BIN'] ??= process.env['ETCD_BIN'] || 'etcd';
  process.env['ETCD_BIN'] = WRAPPER;
  return import('../spec/support/etcd.js');
}

export async function startServers(topology: Topology): Promise<BenchEtcd> {
  const { startEtcd, startCluster } = await launcher();
  if (topology === 'single') {
    const node = await startEtcd({ name: 'bench' });
    return { topology, endpoints: [node.endpoint], stop: () => node.stop() };
  }
  const cluster = await startCluster(3);
  return { topology, endpoints: cluster.endpoints, stop: () => cluster.stop() };
}
