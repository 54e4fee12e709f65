/**
 * What stops the command when etcdlocker itself is killed. SIGKILL (`kill -9`, the OOM killer) cannot be caught:
 * etcdlocker dies at once, the command runs on in its own process group, and the lock ends with its lease, when
 * the next holder may start beside it. So next to the command, etcdlocker starts a watchdog: a `/bin/sh` reading a
 * pipe whose other end only etcdlocker holds. The kernel closes that end however etcdlocker dies; the watchdog then
 * reads end-of-file without the word `done` and SIGKILLs the command's process group. On every other way out,
 * etcdlocker writes `done` first and the watchdog exits quietly.
 *
 * The watchdog is in a process group of its own, so Ctrl-C in a terminal (SIGINT to the foreground group) does not
 * end it, and it holds no other file of ours. Where `/bin/sh` cannot be started, there is no watchdog, as before.
 */
import { spawn } from 'node:child_process';

/**
 * `$1` is the process group, refused unless it is a number above 1 (`kill -- -1` would signal every process we may).
 * `read` fails at end-of-file, leaving `line` empty. `kill -s KILL -- -N` is the spelling dash (Debian's /bin/sh)
 * and bash both take for a group.
 */
const SCRIPT =
  'case "$1" in ""|*[!0-9]*|0|1) exit 64;; esac; read -r line; [ "$line" = done ] || kill -s KILL -- "-$1" 2>/dev/null';

/** The name the watchdog runs under (its `$0`): `ps` shows it, with the group it watches. */
export const WATCHDOG_NAME = 'etcdlocker-watchdog';

export interface Watchdog {
  /** Tells the watchdog to exit without killing anything; resolves once it has the word (or is gone). */
  done(): Promise<void>;
}

/** Starts a watchdog over the process group `pgid` (the command's PID: it leads its own group). */
export function startWatchdog(pgid: number): Watchdog {
  if (!Number.isSafeInteger(pgid) || pgid <= 1) return { done: () => Promise.resolve() };
  let watchdog;
  try {
    watchdog = spawn('/bin/sh', ['-c', SCRIPT, WATCHDOG_NAME, String(pgid)], {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    });
  } catch {
    return { done: () => Promise.resolve() };
  }
  const stdin = watchdog.stdin;
  // Neither may keep etcdlocker running, and a watchdog that failed to start (or died) is no reason to fail.
  watchdog.on('error', () => undefined);
  stdin.on('error', () => undefined);
  watchdog.unref();
  (stdin as unknown as { unref?: () => void }).unref?.();
  let said: Promise<void> | undefined;
  return {
    done() {
      said ??= new Promise<void>((resolve) => {
        if (stdin.destroyed) {
          resolve();
          return;
        }
        const said = () => resolve();
        stdin.once('close', said);
        stdin.end('done\n', said);
      });
      return said;
    },
  };
}
