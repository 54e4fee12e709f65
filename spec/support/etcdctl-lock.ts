/** `etcdctl lock <key> [command...]` as a running process, for interop tests. */
import { spawn } from 'node:child_process';

export interface EtcdctlLock {
  readonly child: ReturnType<typeof spawn>;
  /** What it printed so far: its holder key when run without a command, else the command's output. */
  stdout(): string;
  /** Its exit code once it exits. */
  readonly exited: Promise<number | null>;
}

export function etcdctlLock(endpoints: readonly string[], key: string, command: string[] = []): EtcdctlLock {
  const child = spawn(
    process.env['ETCDCTL_BIN'] ?? 'etcdctl',
    [`--endpoints=${endpoints.join(',')}`, 'lock', key, ...command],
    { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => stdout, exited };
}
