/**
 * One etcdlocker run: take the lock, run the command while it is held, stop the command if the lock is
 * lost, release when the command is gone, and decide the exit code. The first cause of the end decides it.
 */
import type { Etcd3 } from 'etcd3';
import type { Subscription } from 'rxjs';
import { isLockError, LockLostError } from '../lib/errors.js';
import { lock$ } from '../lib/lock-stream.js';
import { lossMarginMs } from '../lib/options.js';
import type { LockState } from '../lib/state.js';
import { type Config, hidePasswordFromProcessTitle } from './args.js';
import { type Child, type ChildOutcome, startChild, stopChild } from './child.js';
import { connectionHint, createClient, describeConnection } from './client.js';
import { ExitCode, signalExitCode } from './exit-codes.js';
import type { Log } from './log.js';
import { ping$, type PingPeer } from './ping.js';
import { leaseAlive, STOP_SIGNALS, stopThisProcess, Suspension } from './suspend.js';
import { startWatchdog, type Watchdog } from './watchdog.js';

/** What Node.js reports of a failure nothing caught; while a run is on, it stops the command (see Run's #crash). */
const CRASHES = ['uncaughtException', 'unhandledRejection'] as const;

/** After an unexpected failure, how long the release may take once the command is gone before we exit anyway. */
const CRASH_RELEASE_MS = 5000;

/** The signals etcdlocker forwards to the command (and that cancel a wait). */
export const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

/**
 * How long a lost command may take to stop before SIGKILL: `--kill-timeout`, but never past three
 * quarters of the loss margin, the time between our local deadline and the lease's earliest expiry.
 */
export function killGraceMs(config: Config): number {
  const cap = Math.floor(0.75 * lossMarginMs(config.ttlSeconds, config.refreshIntervalMs));
  return Math.min(config.killTimeoutMs ?? cap, cap);
}

export async function run(config: Config, log: Log, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  hidePasswordFromProcessTitle(config);
  const client = createClient(config.endpoints, config);
  try {
    return await new Run(config, log, env, client).done;
  } finally {
    client.close();
  }
}

class Run {
  readonly done: Promise<number>;
  #finish!: (code: number) => void;
  #exitCode: number | undefined;
  #child: Child | undefined;
  /** Kills the command's group should we die without a word (SIGKILL): see watchdog.ts. */
  #watchdog: Watchdog | undefined;
  /** Ctrl-Z while the command runs: see suspend.ts. */
  #suspension: Suspension | undefined;
  #childGone!: () => void;
  readonly #childGonePromise = new Promise<void>((resolve) => (this.#childGone = resolve));
  #released: Promise<void> = Promise.resolve();
  #lock: Subscription | undefined;
  #ping: Subscription | undefined;
  #stopping = false;
  #wrappedUp = false;
  #signalsSeen = 0;
  readonly #onSignal = (signal: NodeJS.Signals) => this.#signal(signal);
  readonly #onStopSignal = (signal: NodeJS.Signals) => this.#stopSignal(signal);
  readonly #onCrash = (err: unknown) => this.#crash(err);

  constructor(
    private readonly config: Config,
    private readonly log: Log,
    private readonly env: NodeJS.ProcessEnv,
    private readonly client: Etcd3,
  ) {
    this.done = new Promise<number>((resolve) => (this.#finish = resolve));
    for (const signal of FORWARDED_SIGNALS) process.on(signal, this.#onSignal);
    for (const signal of STOP_SIGNALS) process.on(signal, this.#onStopSignal);
    for (const event of CRASHES) process.on(event, this.#onCrash);
    log.event({ event: 'connecting', etcd: describeConnection(config), id: config.id });
    this.#lock = lock$(client, config.key, {
      id: config.id,
      ttl: config.ttlSeconds,
      refreshInterval: config.refreshIntervalMs,
      wait: config.waitMs !== 0,
      limit: config.limit,
      ...(config.waitMs !== undefined && config.waitMs > 0 && { timeout: config.waitMs }),
      // On loss, our key keeps everyone else out until the command is dead (at most until the lease ends).
      releaseAfter: this.#childGonePromise,
      onRelease: (released) => {
        this.#released = released;
      },
    }).subscribe({
      next: (state) => this.#onState(state),
      error: (err: unknown) => this.#onLockError(err),
    });
  }

  #onState(state: LockState): void {
    switch (state.kind) {
      case 'acquiring':
        this.log.event({
          event: 'waiting',
          ...(state.waitingFor && { waitingFor: state.waitingFor }),
          ...(state.ahead !== undefined && { ahead: state.ahead }),
        });
        return;
      case 'held': {
        const { holderKey, fencingToken, leaseId } = state;
        this.log.event({ event: 'acquired', holderKey, fencingToken, leaseId });
        this.#startCommand(fencingToken, holderKey, leaseId);
        return;
      }
      case 'refreshed':
        this.log.event({ event: 'refreshed', fencingToken: state.fencingToken, ttl: state.ttl });
        return;
      case 'lost':
        // The error that follows stops the command and says so.
        this.log.event({
          event: 'lost',
          fencingToken: state.fencingToken,
          reason: state.reason,
          detail: describe(state.error),
        });
        return;
    }
  }

  #startCommand(fencingToken: string, holderKey: string, leaseId: string): void {
    if (this.#exitCode !== undefined) return;
    const { command, args, key, id, node } = this.config;
    const child = startChild(command, args, {
      node,
      env: {
        ...this.env,
        ETCD_LOCK_REV: fencingToken,
        ETCD_LOCK_KEY: key,
        ETCD_LOCK_ID: id,
        ETCD_LOCK_HOLDER_KEY: holderKey,
      },
    });
    this.#child = child;
    this.#suspension = new Suspension({
      child,
      log: this.log,
      leaseAlive: () => leaseAlive(this.client, leaseId),
      running: () => !this.#stopping && this.#lock !== undefined,
      onLeaseGone: () =>
        this.#end(
          ExitCode.lockLost,
          'lost the lock: its lease ended while etcdlocker was stopped; killing the command',
        ),
    });
    const pid = child.process?.pid;
    if (pid !== undefined) {
      this.#watchdog = startWatchdog(pid);
      this.log.event({ event: 'child-started', childPid: pid, command: [command, ...args] });
    }
    void child.outcome.then((outcome) => this.#onChildEnd(outcome));
    if (node && child.process) this.#startPing(child.process);
  }

  #startPing(peer: PingPeer): void {
    this.#ping = ping$(peer, {
      intervalMs: this.config.refreshIntervalMs,
      timeoutMs: this.config.ttlSeconds * 1000,
    }).subscribe({
      next: () => this.log.event({ event: 'ping-answered' }),
      error: (err: unknown) => {
        this.#end(ExitCode.pingFailed, `IPC ping failed: ${err instanceof Error ? err.message : String(err)}`);
        void this.#stopCommand('ping-failed');
      },
    });
  }

  #onChildEnd(outcome: ChildOutcome): void {
    this.#ping?.unsubscribe();
    if (outcome.kind === 'spawn-failed') {
      this.#end(ExitCode.childFailed, `could not start ${this.config.command}: ${outcome.error.message}`);
    } else {
      this.log.event({ event: 'child-exited', code: outcome.code, signal: outcome.signal });
      this.#end(outcome.signal ? signalExitCode(outcome.signal) : (outcome.code ?? ExitCode.childFailed));
    }
    // While the command is being stopped, #stopCommand finishes the job once the whole group is gone.
    if (!this.#stopping) this.#wrapUp();
  }

  #onLockError(err: unknown): void {
    this.#lock = undefined;
    if (this.#child && !this.#child.exited) {
      const reason = err instanceof LockLostError ? err.reason : 'error';
      this.#end(ExitCode.lockLost, `lost the lock (${reason}): ${describe(err)}; stopping the command`);
      void this.#stopCommand('lost');
      return;
    }
    if (this.#child) return; // the command already ended; its exit code stands
    const where =
      isLockError(err) && err.code === 'ETCDLOCK_UNAVAILABLE' ? ` (etcd: ${this.config.endpoints.join(',')})` : '';
    this.#end(ExitCode.acquireFailed, `could not acquire ${JSON.stringify(this.config.key)}${where}: ${describe(err)}`);
    const hint = connectionHint(err, this.config);
    if (hint) this.log.error(hint);
    this.#wrapUp();
  }

  #signal(signal: NodeJS.Signals): void {
    this.#signalsSeen++;
    this.#end(signalExitCode(signal));
    const child = this.#child;
    if (!child) {
      this.log.event({ event: 'wait-cancelled', signal });
      this.#wrapUp();
      return;
    }
    if (child.exited) return;
    const again = this.#signalsSeen > 1 && (signal === 'SIGINT' || signal === 'SIGTERM');
    this.log.event(
      again
        ? { event: 'child-signalled', signal: 'SIGKILL', why: 'second-signal', received: signal }
        : { event: 'child-signalled', signal, why: 'forwarded' },
    );
    try {
      child.signalGroup(again ? 'SIGKILL' : signal);
    } catch (err) {
      this.log.error(`could not signal the command: ${describe(err)}`);
    }
  }

  /**
   * A stop signal (Ctrl-Z). While waiting, etcdlocker stops as it would by default (a lease that ends meanwhile
   * fails the wait). While the command runs, see suspend.ts. While the command is being stopped or the lock
   * released, the signal is ignored: those steps have deadlines that a stopped etcdlocker would miss.
   */
  #stopSignal(signal: NodeJS.Signals): void {
    if (!this.#child) stopThisProcess();
    else if (!this.#child.exited && !this.#stopping) this.#suspension?.suspend(signal);
  }

  /**
   * An exception nothing caught, or a rejection nothing handled: a bug, here or in a library. By default Node.js
   * would end the process there, leaving the command running unsupervised, and the lock to its lease's TTL, after
   * which the next holder may start beside it. We can no longer vouch for the lock: stop the command as on a loss,
   * release, and exit 70. Should the release hang in a process in that state, we exit anyway a little later.
   */
  #crash(err: unknown): void {
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    // Said even when an earlier cause decided the exit code: a bug is worth reporting whatever else happened.
    this.log.error(`unexpected failure: ${detail}; stopping the command and releasing the lock`);
    this.#end(ExitCode.internalError);
    const exitCode = this.#exitCode ?? ExitCode.internalError;
    setTimeout(() => this.#finish(exitCode), killGraceMs(this.config) + CRASH_RELEASE_MS).unref();
    if (this.#child && !this.#child.exited) void this.#stopCommand('internal-error');
    else this.#wrapUp();
  }

  /** SIGTERM, SIGKILL after the grace (at once with none), then release: the command is never running once we let go. */
  async #stopCommand(why: 'lost' | 'ping-failed' | 'internal-error'): Promise<void> {
    const child = this.#child;
    if (!child || this.#stopping) return;
    this.#stopping = true;
    // A command we stopped (Ctrl-Z) is not let run again without the lock's say-so: no grace, SIGKILL at once.
    const graceMs = this.#suspension?.commandStopped ? 0 : killGraceMs(this.config);
    this.log.event({ event: 'child-signalled', signal: graceMs > 0 ? 'SIGTERM' : 'SIGKILL', why, graceMs });
    try {
      const stopped = await stopChild(child, {
        graceMs,
        onEscalate: () => {
          this.log.event({ event: 'child-signalled', signal: 'SIGKILL', why: 'kill-timeout', graceMs });
          this.log.error(`the command outlived SIGTERM by ${graceMs} ms: SIGKILL`);
        },
      });
      if (!stopped) this.#end(ExitCode.childFailed, 'the command survived SIGKILL');
      else this.log.event({ event: 'child-group-gone' });
    } catch (err) {
      this.#end(ExitCode.childFailed, `could not kill the command: ${describe(err)}`);
    }
    this.#wrapUp();
  }

  /** Records the exit code unless an earlier cause decided it; prints why, if there is a message. */
  #end(code: number, message?: string): void {
    if (this.#exitCode !== undefined) return;
    this.#exitCode = code;
    if (message) this.log.error(message);
  }

  /** Releases the lock (after the command is gone) and settles `done`. */
  #wrapUp(): void {
    if (this.#wrappedUp || (this.#child && !this.#child.exited)) return;
    this.#wrappedUp = true;
    // Before the revoke is sent: this.#childGone() lets it go (on a loss, lock$ waits for it), unsubscribing sends it.
    this.log.event({ event: 'releasing' });
    this.#childGone();
    this.#lock?.unsubscribe();
    this.#lock = undefined;
    for (const signal of FORWARDED_SIGNALS) process.off(signal, this.#onSignal);
    for (const signal of STOP_SIGNALS) process.off(signal, this.#onStopSignal);
    for (const event of CRASHES) process.off(event, this.#onCrash);
    // The command is gone (or, after a normal exit, what it left in the background is meant to stay): the watchdog
    // may stand down. Waited for, so that our exit does not reach it before its word.
    const stoodDown = this.#watchdog?.done();
    // A failed lock$ calls our error handler before its teardown hands over the release: read it a tick later.
    void Promise.resolve()
      .then(() => Promise.all([this.#released, stoodDown]))
      .then(() => {
        this.log.event({ event: 'released' });
        this.#finish(this.#exitCode ?? ExitCode.childFailed);
      });
  }
}

function describe(err: unknown): string {
  if (isLockError(err)) {
    const cause =
      err.cause instanceof Error && !err.message.includes(err.cause.message) ? ` (${err.cause.message})` : '';
    return `${err.message}${cause} [${err.code}]`;
  }
  return err instanceof Error ? err.message : String(err);
}
