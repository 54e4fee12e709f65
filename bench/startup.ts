/**
 * Where etcdlocker's start-up goes: each probe runs in a fresh node, as etcdlocker does, and reports the
 * milliseconds of each step, medians over the runs. The first probes load the packages as they are installed (as
 * dist/lib does, and as etcdlocker did before it was bundled); the protobuf step is what etcd3 does when it is loaded:
 * @grpc/proto-loader's loadSync of etcd3's rpc.proto, with the options etcd3 passes. The last ones load what
 * etcdlocker loads now for a run: its bundled core (scripts/build-cli.ts), with and without its V8 code cache.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CORE_WRAPPER } from '../scripts/build-cli/load-core.js';
import { summarize } from './stats.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CORE = `${ROOT}dist/cli/etcdlocker-core.cjs`;

/** A probe that compiles and runs the core as scripts/build-cli/load-core.ts does, with the cache or without. */
function coreProbe(name: string, withCache: boolean): string {
  return `const fs = require('node:fs'), vm = require('node:vm'), path = require('node:path');
   const file = ${JSON.stringify(CORE)};
   const t = performance.now();
   const source = ${JSON.stringify(CORE_WRAPPER[0])} + fs.readFileSync(file, 'utf8') + ${JSON.stringify(CORE_WRAPPER[1])};
   const script = new vm.Script(source, { filename: file, ${withCache ? "cachedData: fs.readFileSync(file + '.cache')" : ''} });
   const module = { exports: {} };
   script.runInThisContext()(module.exports, require('node:module').createRequire(file), module, file, path.dirname(file));
   const ms = performance.now() - t;
   if (${withCache} && script.cachedDataRejected) throw new Error('V8 rejected the code cache: npm run build again');
   console.log(JSON.stringify({ ${JSON.stringify(name)}: ms }));`;
}

export interface StartupStep {
  name: string;
  medianMs: number;
}

/** Each probe prints one JSON object of step name -> ms. */
const PROBES: string[] = [
  `const t0 = performance.now();
   const out = { 'node start-up, to the first line of a script': t0 };
   let t = t0;
   const step = (name) => { const now = performance.now(); out[name] = now - t; t = now; };
   require('@grpc/grpc-js'); step('load @grpc/grpc-js');
   const loader = require('@grpc/proto-loader'); step('load @grpc/proto-loader and protobufjs');
   loader.loadSync(require.resolve('etcd3/proto/rpc.proto'), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
   step('parse etcd3 protos (loadSync of rpc.proto, at etcd3 load)');
   console.log(JSON.stringify(out));`,
  `const t = performance.now(); require('etcd3');
   console.log(JSON.stringify({ 'load etcd3, all of it (includes the three steps above)': performance.now() - t }));`,
  `const t = performance.now(); require('rxjs');
   console.log(JSON.stringify({ 'load rxjs (its CommonJS build: the whole library)': performance.now() - t }));`,
  `const t = performance.now();
   import(${JSON.stringify(`${ROOT}dist/lib/index.js`)}).then(() =>
     console.log(JSON.stringify({ 'load the etcd-lock library (dist/lib/index.js, with rxjs and etcd3)': performance.now() - t })));`,
  coreProbe("load etcdlocker's bundled core (dist/cli/etcdlocker-core.cjs) with its V8 code cache", true),
  coreProbe("the same without the code cache (as on another Node.js version than the build's)", false),
];

export function measureStartup(runs: number): StartupStep[] {
  const samples = new Map<string, number[]>();
  for (let run = 0; run < runs; run++) {
    for (const probe of PROBES) {
      const result = spawnSync(process.execPath, ['-e', probe], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
      if (result.status !== 0) throw new Error(`start-up probe failed: ${result.stderr}`);
      for (const [name, ms] of Object.entries(JSON.parse(result.stdout) as Record<string, number>)) {
        if (!samples.has(name)) samples.set(name, []);
        samples.get(name)!.push(ms);
      }
    }
  }
  return [...samples].map(([name, values]) => ({ name, medianMs: summarize(values).p50 }));
}
