/**
 * `npm run bench`: starts its own etcd servers (one single node, one 3-member cluster; fsync on), measures the
 * five parts of issue 5 side by side, prints the tables, and writes docs/benchmarks.md and its SVG chart.
 * Settings: see config.ts (BENCH_SCALE, BENCH_ONLY, BENCH_TOPOLOGY, BENCH_CONTENDERS, BENCH_LOCKS, BENCH_OUT).
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { runBaton } from './baton.js';
import { cliRuns, measureCli } from './cli.js';
import { readConfig, type Topology } from './config.js';
import { contendedPlan, runContended } from './contended.js';
import { measureFloor } from './floor.js';
import { etcd3Lock } from './locks/etcd3-lock.js';
import { etcdLockV1 } from './locks/etcd-lock-v1.js';
import { facade } from './locks/facade.js';
import { floorTxnDelete } from './locks/floor.js';
import { lockStream } from './locks/lock-stream.js';
import { facadeOnLocker, locker, lockerStream } from './locks/locker.js';
import { describeMachine } from './machine.js';
import { CHART_FILE, renderChart, renderReport } from './report.js';
import { type BenchResults, emptyResults, type TopologyResults } from './results.js';
import { runScaleIsolated, SCALE_VARIANTS, scalePlan } from './scale.js';
import { startServers } from './servers.js';
import { measureStartup } from './startup.js';
import { measureUncontended } from './uncontended.js';

const UNCONTENDED = [floorTxnDelete, locker, lockerStream, facadeOnLocker, lockStream, facade, etcd3Lock, etcdLockV1];
const CONTENDED = [locker, lockerStream, lockStream, etcd3Lock, etcdLockV1];

const config = readConfig();
const progress = (message: string) => process.stderr.write(`bench: ${message}\n`);

/** A part that fails is reported and skipped: the other parts of the run still count. */
async function part<T>(name: string, fallback: T, measure: () => Promise<T>): Promise<T> {
  try {
    return await measure();
  } catch (err) {
    progress(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return fallback;
  }
}

async function measureTopology(topology: Topology): Promise<TopologyResults> {
  progress(`starting ${topology} etcd`);
  const etcd = await startServers(topology);
  const results = emptyResults(topology, etcd.endpoints.length);
  // Every run writes under its own prefix, so a rerun against the same data never meets old keys.
  const prefix = `/etcd-lock-bench/${randomBytes(4).toString('hex')}`;
  try {
    if (config.sections.has('floor')) {
      progress(`${topology}: floor`);
      const clients: [Etcd3, Etcd3] = [new Etcd3({ hosts: etcd.endpoints }), new Etcd3({ hosts: etcd.endpoints })];
      try {
        results.floor = await part('floor', [], () => measureFloor(clients, `${prefix}/floor`, config.scale));
      } finally {
        for (const client of clients) client.close();
      }
    }
    if (config.sections.has('uncontended')) {
      progress(`${topology}: uncontended`);
      results.uncontended = await part('uncontended', [], () =>
        measureUncontended(UNCONTENDED, etcd.endpoints, prefix, config.scale),
      );
    }
    if (config.sections.has('contended')) {
      const plan = contendedPlan(config.scale);
      for (const k of config.contenders) {
        progress(`${topology}: contended, K=${k}`);
        const rows = [await runBaton(k, etcd.endpoints, `${prefix}/baton/${k}`, plan)];
        for (const kind of CONTENDED) {
          const key = `${prefix}/contended/${kind.short}/${k}`;
          const row = await part(`contended ${kind.short}`, undefined, () =>
            runContended(kind, k, etcd.endpoints, key, plan),
          );
          if (row) rows.push(row);
        }
        results.contended.push({ k, rows });
      }
    }
    if (topology === 'single' && config.sections.has('scale')) {
      for (const locks of config.scaleCounts) {
        for (const [i, variant] of SCALE_VARIANTS.entries()) {
          progress(`${topology}: scale, ${locks} locks, ${variant.name}`);
          const key = `${prefix}/scale/${locks}/${i}`;
          const row = await part('scale', undefined, () =>
            runScaleIsolated(i, locks, etcd.endpoints, key, scalePlan(config.scale)),
          );
          if (row) results.scale.push(row);
        }
      }
    }
    if (topology === 'single' && config.sections.has('cli')) {
      progress(`${topology}: CLI start-up`);
      results.startup = measureStartup(cliRuns(config.scale) / 2);
      progress(`${topology}: CLI`);
      results.cli = measureCli(etcd.endpoints[0]!, `${prefix}/cli`, cliRuns(config.scale), config.extraEtcdlocker);
    }
  } finally {
    await etcd.stop();
  }
  return results;
}

const results: BenchResults = {
  config,
  machine: describeMachine(),
  command: `${Object.entries(process.env)
    .filter(([name]) => name.startsWith('BENCH_'))
    .map(([name, value]) => `${name}=${value} `)
    .join('')}npm run bench`,
  runs: [],
};
/** The parts measured on the 3-member cluster too; scale and CLI run on the single node only. */
const CLUSTER_SECTIONS = ['floor', 'uncontended', 'contended'] as const;
for (const topology of ['single', 'cluster'] as const) {
  if (!config.topologies.has(topology)) continue;
  // BENCH_ONLY=scale would otherwise start (and wait for) a cluster it never uses.
  if (topology === 'cluster' && !CLUSTER_SECTIONS.some((section) => config.sections.has(section))) continue;
  results.runs.push(await measureTopology(topology));
}
results.machine.loadAfter = os.loadavg();

const notes = new URL('./notes.md', import.meta.url);
const report = renderReport(results, notes);
process.stdout.write(`${report}\n`);
if (config.out !== 'none') {
  writeFileSync(config.out, report);
  writeFileSync(path.join(path.dirname(config.out), CHART_FILE), renderChart(results));
  progress(`wrote ${config.out} and ${CHART_FILE} beside it`);
}
// etcd3 clients may hold reconnect timers for a moment after close; everything is written.
process.exit(0);
