/** Everything one `npm run bench` measured, per etcd topology. */
import type { BenchConfig, Topology } from './config.js';
import type { ContendedRow } from './contended.js';
import type { FloorRow } from './floor.js';
import type { Machine } from './machine.js';
import type { ScaleRow } from './scale.js';
import type { StartupStep } from './startup.js';
import type { UncontendedRow } from './uncontended.js';
import type { WallTimeRow } from './wall-time.js';

export interface TopologyResults {
  topology: Topology;
  members: number;
  floor: FloorRow[];
  uncontended: UncontendedRow[];
  /** By K, in the order of BenchConfig.contenders. */
  contended: { k: number; rows: ContendedRow[] }[];
  scale: ScaleRow[];
  cli: WallTimeRow[];
  startup: StartupStep[];
}

export interface BenchResults {
  config: BenchConfig;
  machine: Machine;
  command: string;
  runs: TopologyResults[];
}

export function emptyResults(topology: Topology, members: number): TopologyResults {
  return { topology, members, floor: [], uncontended: [], contended: [], scale: [], cli: [], startup: [] };
}
