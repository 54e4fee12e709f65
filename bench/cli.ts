/**
 * Part 5, the CLI: wall time of `etcdlocker -k k -- true` (the built binary, as npm installs it), of
 * `etcdctl lock k -- true`, and of `node -e 0`, plus where etcdlocker's start-up goes.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { measureWallTimes, type Command, type WallTimeRow } from './wall-time.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const ETCDLOCKER = `${ROOT}dist/cli/etcdlocker.cjs`;
export const NODE_BASELINE = '`node -e 0`';
export const ETCDLOCKER_RUN = '`etcdlocker -k k -- true`';

export function cliRuns(scale: number): number {
  return Math.max(10, Math.round(20 * scale));
}

export function measureCli(endpoint: string, key: string, runs: number, extra: string | undefined): WallTimeRow[] {
  if (!existsSync(ETCDLOCKER)) throw new Error(`${ETCDLOCKER} is missing: npm run build first`);
  const commands: Command[] = [
    { name: NODE_BASELINE, file: process.execPath, args: ['-e', '0'] },
    { name: ETCDLOCKER_RUN, file: ETCDLOCKER, args: ['-e', endpoint, '-k', key, '--', 'true'] },
    { name: '`etcdlocker --help` (etcd3 not loaded)', file: ETCDLOCKER, args: ['--help'] },
    {
      name: '`etcdctl lock k -- true`',
      file: process.env['ETCDCTL_BIN'] || 'etcdctl',
      args: [`--endpoints=${endpoint}`, 'lock', key, '--', 'true'],
    },
  ];
  if (extra) {
    commands.push({
      name: `\`node ${extra} -k k -- true\` (BENCH_ETCDLOCKER)`,
      file: process.execPath,
      args: [extra, '-e', endpoint, '-k', key, '--', 'true'],
    });
  }
  return measureWallTimes(commands, runs);
}
