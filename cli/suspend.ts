/**
 * Ctrl-Z while the command runs. The command has a process group of its own, so a terminal's SIGTSTP reaches
 * etcdlocker alone: by default etcdlocker would stop, its keepalives with it, and the command would run on while the
 * lease ran out and the next holder started beside it.
 *
 * Instead, etcdlocker stops the command's group first (SIGSTOP, which the command cannot ignore), then itself, so
 * the shell sees the job stopped. When the job is continued (`fg`, `bg`), the command stays stopped until etcd
 * answers, to a request sent after the resume, that the lease is still alive; only then does the command get
 * SIGCONT. A lease that ended during the stop means the lock is gone: the command is killed without ever running
 * again. While etcd cannot be asked, the command stays stopped and etcdlocker's own deadline decides, as for any
 * loss.
 */
import type { Etcd3 } from 'etcd3';
import type { Child } from './child.js';
import type { Log } from './log.js';

/**
 * The stop signals handled here: SIGTSTP alone. SIGTTOU and SIGTTIN come from a write to (or a read from) the
 * terminal by a background job, and the kernel restarts that write after a caught signal only to send it again:
 * caught, SIGTTOU made a background etcdlocker with `stty tostop` spin at 100% CPU in its first `-v` line (tried in
 * tmux). Left to their default they stop etcdlocker, as before. etcdlocker never reads the terminal.
 */
export const STOP_SIGNALS = ['SIGTSTP'] as const;

/** How long one "is the lease alive?" request may take before it is asked again. */
const CHECK_TIMEOUT_MS = 2000;
/** How long after a failed check the next one is sent. */
const CHECK_RETRY_MS = 250;

/** Stops this process; returns once something continues it. SIGSTOP cannot be caught or ignored. */
export function stopThisProcess(): void {
  process.kill(process.pid, 'SIGSTOP');
}

/**
 * Whether etcd still has the lease (`leaseId` in hex), asked now. Throws when etcd cannot answer in time.
 * etcd answers a TTL of -1 for a lease that has ended.
 */
export async function leaseAlive(client: Etcd3, leaseId: string): Promise<boolean> {
  const res = await client.leaseClient.leaseTimeToLive(
    { ID: BigInt(`0x${leaseId}`).toString() },
    { deadline: Date.now() + CHECK_TIMEOUT_MS },
  );
  return Number(res.TTL) > 0;
}

export interface SuspensionParams {
  child: Child;
  log: Log;
  /** Asks etcd whether our lease is alive; throws when it cannot tell. */
  leaseAlive: () => Promise<boolean>;
  /** False once the run is stopping the command or releasing: nothing is continued then. */
  running: () => boolean;
  /** The lease ended while the job was stopped: the run records the loss; the command is then killed here. */
  onLeaseGone: () => void;
  /** Stops etcdlocker until it is continued: {@link stopThisProcess}, but for tests. */
  stopSelf?: () => void;
}

/** The stop and resume of one running command with etcdlocker; see the file's comment. */
export class Suspension {
  /** True while the command's group is stopped by us. */
  #commandStopped = false;
  /** Counts stops, so that the check of an earlier resume does not continue the command after a later stop. */
  #stops = 0;

  constructor(private readonly params: SuspensionParams) {}

  /** Whether the command is stopped by us (then it cannot use a grace period: it gets SIGKILL at once). */
  get commandStopped(): boolean {
    return this.#commandStopped;
  }

  /** Stops the command, then etcdlocker; on resume, checks the lease before the command may go on. */
  suspend(signal: NodeJS.Signals): void {
    const { child, log } = this.params;
    const stop = ++this.#stops;
    log.event({ event: 'suspended', signal });
    if (child.signalGroup('SIGSTOP')) this.#commandStopped = true;
    (this.params.stopSelf ?? stopThisProcess)();
    // Continued. Our timers (the lease's local deadline among them) have not run yet: the check goes out now and
    // its answer comes after they had their turn.
    log.event({ event: 'resumed' });
    void this.#checkLease(stop);
  }

  async #checkLease(stop: number): Promise<void> {
    const { child, log } = this.params;
    const current = () => stop === this.#stops && this.params.running() && !child.exited;
    while (current()) {
      let alive: boolean;
      try {
        alive = await this.params.leaseAlive();
      } catch (err) {
        if (!current()) return;
        log.event({ event: 'lease-check-failed', detail: err instanceof Error ? err.message : String(err) });
        await new Promise((resolve) => setTimeout(resolve, CHECK_RETRY_MS));
        continue;
      }
      if (!current()) return;
      if (alive) {
        this.#commandStopped = false;
        log.event({ event: 'child-signalled', signal: 'SIGCONT', why: 'lease-confirmed' });
        child.signalGroup('SIGCONT');
      } else {
        this.params.onLeaseGone();
        log.event({ event: 'child-signalled', signal: 'SIGKILL', why: 'lease-gone' });
        child.signalGroup('SIGKILL');
      }
      return;
    }
  }
}
