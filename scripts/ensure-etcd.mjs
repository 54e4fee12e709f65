#!/usr/bin/env node
// Makes sure the tests can start a real etcd: finds `etcd` and `etcdctl` (ETCD_BIN / ETCDCTL_BIN, then PATH),
// installs Debian's packages when we are root on an apt system, and prints the version it found.
// With ETCD_ENDPOINTS set the user brings their own cluster, so there is nothing to do.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const HOW_TO_INSTALL = [
  'Install etcd v3.4 or later, then run this again:',
  '  Debian/Ubuntu:  sudo apt-get install etcd-server etcd-client',
  '  elsewhere:      download a release from https://github.com/etcd-io/etcd/releases and put etcd and etcdctl on PATH',
  '  or point ETCD_BIN and ETCDCTL_BIN at the binaries, or set ETCD_ENDPOINTS=host:port,... to use a running cluster.',
].join('\n');

/** Whether `file` is an executable regular file. */
function isExecutable(file) {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The binary named by the `envName` variable (if given and set), else the first `name` on PATH, else undefined. */
function findBinary(envName, name) {
  const fromEnv = envName && process.env[envName];
  if (fromEnv) {
    if (!isExecutable(fromEnv)) fail(`${envName}=${fromEnv} is not an executable file.`);
    return fromEnv;
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && isExecutable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

function fail(message) {
  console.error(`${message}\n${HOW_TO_INSTALL}`);
  process.exit(1);
}

function run(command, args) {
  // No stdin: CI has none, and apt-get must never wait for an answer.
  const result = spawnSync(command, args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (result.error) fail(`${command} ${args.join(' ')} failed: ${result.error.message}`);
  if (result.status !== 0) fail(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}.`);
}

/** "3.4.23" from `etcd --version` / `etcdctl version`, or undefined. */
function versionOf(binary, args) {
  const result = spawnSync(binary, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return /version:\s*(\S+)/i.exec(`${result.stdout ?? ''}${result.stderr ?? ''}`)?.[1];
}

if (process.env.ETCD_ENDPOINTS) {
  console.log(`ETCD_ENDPOINTS=${process.env.ETCD_ENDPOINTS}: using that cluster, not checking for a local etcd.`);
  process.exit(0);
}

let etcd = findBinary('ETCD_BIN', 'etcd');
let etcdctl = findBinary('ETCDCTL_BIN', 'etcdctl');
if (!etcd || !etcdctl) {
  const missing = !etcd ? 'etcd' : 'etcdctl';
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !findBinary(undefined, 'apt-get')) fail(`${missing} not found.`);
  console.error(`${missing} not found: installing Debian's etcd-server and etcd-client with apt-get`);
  run('apt-get', ['update', '-qq']);
  run('apt-get', ['install', '-y', '-qq', 'etcd-server', 'etcd-client']);
  etcd = findBinary('ETCD_BIN', 'etcd');
  etcdctl = findBinary('ETCDCTL_BIN', 'etcdctl');
  if (!etcd || !etcdctl) fail(`${missing} still not found after apt-get install.`);
}

const version = versionOf(etcd, ['--version']);
if (!version) fail(`${etcd} --version did not print a version.`);
const ctlVersion = versionOf(etcdctl, ['version']) ?? 'unknown version';
console.log(`etcd ${version} (${etcd}), etcdctl ${ctlVersion} (${etcdctl})`);
