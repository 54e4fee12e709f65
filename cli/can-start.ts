/**
 * Whether the command etcdlocker is asked to run can be started, checked before the lock is taken. Apart from
 * child.ts so that the bin checks it without loading cross-spawn, which only a run needs (issue 5).
 */
import { accessSync, constants as fsConstants, existsSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * Checks, before the lock is taken, that `command` can be started: an executable file on PATH or at
 * the given path, or (for `node`) an existing module file. Returns a reason it cannot, or undefined.
 */
export function cannotStart(command: string, node: boolean, env: NodeJS.ProcessEnv): string | undefined {
  if (node) {
    const candidates = ['', '.js', '.mjs', '.cjs'].map((ext) => path.resolve(command + ext));
    return candidates.some(isFile) ? undefined : `no such Node.js module: ${command}`;
  }
  if (command.includes('/')) {
    if (!existsSync(command)) return `no such file: ${command}`;
    return isExecutable(command) ? undefined : `not an executable file: ${command}`;
  }
  const dirs = (env['PATH'] ?? '').split(path.delimiter).filter(Boolean);
  return dirs.some((dir) => isExecutable(path.join(dir, command))) ? undefined : `command not found: ${command}`;
}

function isFile(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, fsConstants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}
