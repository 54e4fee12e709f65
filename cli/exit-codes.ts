import { constants } from 'node:os';

/** etcdlocker's own exit codes; otherwise it exits with the command's code, or 128 + a signal number. */
export const ExitCode = {
  /** Acquiring failed: etcd unreachable, timed out (`-w`), or busy (`-w 0`). */
  acquireFailed: 1,
  /** The lock was lost while the command ran; the command was killed. */
  lockLost: 2,
  /** The command could not be spawned, or could not be killed. */
  childFailed: 3,
  /** `-n`: the Node.js child answered a ping wrongly, too late, or not at all. */
  pingFailed: 4,
  /** etcdlocker failed unexpectedly (a bug): the command was stopped, the lock released (sysexits' EX_SOFTWARE). */
  internalError: 70,
  /** Bad usage: unknown flag, missing key, bad number (sysexits' EX_USAGE). */
  usage: 64,
} as const;

/** 128 + the signal's number, as shells report a death by signal (143 for SIGTERM). */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}
