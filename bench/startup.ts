/**
 * Where etcdlocker's start-up goes: each probe runs in a fresh node, as etcdlocker does, and reports the
 * milliseconds of each step, medians over the runs. The protobuf step is what etcd3 does when it is loaded:
 * @grpc/proto-loader's loadSync of etcd3's rpc.proto, with the options etcd3 passes.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { summarize } from './stats.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

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
