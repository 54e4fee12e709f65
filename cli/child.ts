/**
 * The command etcdlocker runs while it holds the lock: started in a process group of its own, so that
 * signals and, on loss, SIGTERM and SIGKILL reach everything it started, not only the direct child.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import spawn from 'cross-spawn';

/** How the direct child ended. */
export type ChildOutcome =
  { kind: 'exited'; code: number | null; signal: NodeJS.Signals | null } | { kind: 'spawn-failed'; error: Error };

export interface StartOptions {
  /** Fork a Node.js module with an IPC channel instead of spawning a program. */
  node: boolean;
  env: NodeJS.ProcessEnv;
}

/** A running command. */
export interface Child {
  /** The direct child: IPC (`send`, `message`) when forked with `node`. */
  readonly process: ChildProcess | undefined;
  /** Settles once the direct child has exited or failed to start. Never rejects. */
  readonly outcome: Promise<ChildOutcome>;
  /** True once {@link outcome} has settled. */
  readonly exited: boolean;
  /**
   * Sends `signal` to the child's whole process group (0 only checks that it exists). Returns false when
   * nothing is left to signal.
   * @throws Error when the group exists but may not be signalled (EPERM)
   */
  signalGroup(signal: NodeJS.Signals | 0): boolean;
}

/** Starts `command` in a new process group with stdio inherited. Never throws: failures show in `outcome`. */
export function startChild(command: string, args: readonly string[], options: StartOptions): Child {
  let exited = false;
  let child: ChildProcess;
  try {
    // detached: a new process group whose ID is the child's PID (not a daemon: we still wait for it).
    child = options.node
      ? fork(command, args, { stdio: ['inherit', 'inherit', 'inherit', 'ipc'], detached: true, env: options.env })
      : spawn(command, [...args], { stdio: 'inherit', detached: true, env: options.env });
  } catch (err) {
    exited = true;
    const error = err instanceof Error ? err : new Error(String(err));
    return {
      process: undefined,
      outcome: Promise.resolve({ kind: 'spawn-failed', error }),
      exited,
      signalGroup: () => false,
    };
  }
  const outcome = new Promise<ChildOutcome>((resolve) => {
    child.once('error', (error) => {
      // 'error' without a PID means the spawn failed; with a PID it was a failed kill() or send(), not an end.
      if (child.pid === undefined) resolve({ kind: 'spawn-failed', error });
    });
    child.once('exit', (code, signal) => resolve({ kind: 'exited', code, signal }));
  }).then((result) => {
    exited = true;
    return result;
  });
  return {
    process: child,
    outcome,
    get exited() {
      return exited;
    },
    signalGroup(signal) {
      if (child.pid === undefined) return false;
      try {
        process.kill(-child.pid, signal);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
        throw err;
      }
    },
  };
}

export interface StopOptions {
  /** How long the group has after SIGTERM before SIGKILL. */
  graceMs: number;
  /** How long to wait for the direct child to exit after SIGKILL before giving up. */
  killWaitMs?: number;
  /** Called before the SIGKILL that follows an unheeded SIGTERM (not when there was no grace). */
  onEscalate?: () => void;
}

/**
 * SIGTERM to the group, SIGKILL after `graceMs` (at once when it is 0) if the direct child is still alive, then SIGKILL to
 * whatever is left of the group. Resolves true once the direct child is reaped and the group is gone
 * (or after a short bounded wait for the group), false when the child survived SIGKILL.
 * @throws Error when the group may not be signalled (EPERM)
 */
export async function stopChild(child: Child, options: StopOptions): Promise<boolean> {
  if (!child.exited) {
    // No grace: SIGKILL straight away (a SIGTERM first would only be pending for a stopped command).
    if (options.graceMs > 0) child.signalGroup('SIGTERM');
    const inTime = options.graceMs > 0 && (await settlesWithin(child.outcome, options.graceMs));
    if (!inTime) {
      if (options.graceMs > 0) options.onEscalate?.();
      child.signalGroup('SIGKILL');
      const reaped = await settlesWithin(child.outcome, options.killWaitMs ?? 5000);
      if (!reaped) return false;
    }
  }
  await sweepGroup(child);
  return true;
}

/**
 * True once `promise` settles, false if `ms` pass first. The timer is cleared either way: a pending one would
 * keep etcdlocker alive for the rest of the grace after the command is long gone.
 */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([promise.then(() => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** SIGKILL to what the command left in its group, then wait (briefly, bounded) until none of it is left. */
async function sweepGroup(child: Child): Promise<void> {
  if (!child.signalGroup('SIGKILL')) return;
  for (let i = 0; i < 50; i++) {
    await sleep(10);
    if (!child.signalGroup(0)) return;
  }
}
