#!/usr/bin/env node
// Runs the *.spec.ts files under the given directories (or files) with node's test runner through tsx.
//   node scripts/run-tests.mjs                      # spec/unit spec/integration spec/cli
//   node scripts/run-tests.mjs spec/unit some/file.spec.ts
// A run that finds no test files fails: a green test command that ran nothing hides a broken glob.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';

const DEFAULT_ROOTS = ['spec/unit', 'spec/integration', 'spec/cli', 'spec/faults'];

/** Every *.spec.ts file under `dir`, recursively (node_modules skipped). */
function collect(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : collect(path);
    return entry.isFile() && entry.name.endsWith('.spec.ts') ? [path] : [];
  });
}

const explicit = process.argv.slice(2);
for (const path of explicit) {
  if (!existsSync(path)) {
    console.error(`run-tests: ${path} does not exist.`);
    process.exit(1);
  }
}
const roots = explicit.length > 0 ? explicit : DEFAULT_ROOTS.filter((dir) => existsSync(dir));
const files = [...new Set(roots.flatMap((root) => (statSync(root).isDirectory() ? collect(root) : [root])))].sort();

if (files.length === 0) {
  console.error(`run-tests: no *.spec.ts files under ${roots.join(', ') || DEFAULT_ROOTS.join(', ')}.`);
  process.exit(1);
}

// Files run in parallel, two at a time: each integration file starts its own etcd on free ports with its own
// data dir, so they cannot collide, and two keeps timing-sensitive lease tests away from a starved CPU.
// TEST_CONCURRENCY overrides it (1 to debug one file at a time).
const concurrency = process.env.TEST_CONCURRENCY ?? '2';
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-concurrency=${concurrency}`, ...files],
  { stdio: 'inherit' },
);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  process.exit(code ?? 128 + (constants.signals[signal] ?? 0));
});
