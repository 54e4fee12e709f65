/**
 * etcdlocker's messages on stderr. run.ts and status.ts say what happened, as a {@link LogEvent}; only this file
 * decides what it looks like: as text, errors always and the other events as progress lines with `-v`; or, with
 * `--log-json`, every event as one JSON object per line (docs/cli.md, "Machine-readable log").
 */
import type { LossReason } from '../lib/errors.js';

/** Why etcdlocker sent a signal to its command's process group. */
export type SignalReason =
  /** etcdlocker got the signal and passed it on. */
  | 'forwarded'
  /** A second SIGINT or SIGTERM: SIGKILL at once. */
  | 'second-signal'
  /** The lock was lost: SIGTERM, SIGKILL after the grace. */
  | 'lost'
  /** `-n`: the child's IPC ping failed: SIGTERM, SIGKILL after the grace. */
  | 'ping-failed'
  /** etcdlocker itself failed unexpectedly and can no longer vouch for the lock: SIGTERM, SIGKILL after the grace. */
  | 'internal-error'
  /** The command outlived SIGTERM by the grace: SIGKILL. */
  | 'kill-timeout'
  /** After a stop (Ctrl-Z), etcd confirmed the lease: SIGCONT to the command, stopped with etcdlocker. */
  | 'lease-confirmed'
  /** After a stop (Ctrl-Z), etcd no longer had the lease: SIGKILL to the stopped command. */
  | 'lease-gone';

/** Something that happened in one etcdlocker process, with what a reader needs to know about it. */
export type LogEvent =
  /** A run starts: `etcd` as {@link describeConnection} gives it (never a password). */
  | { event: 'connecting'; etcd: string; id: string }
  /** `--status` starts reading the lock. */
  | { event: 'reading'; etcd: string }
  /** Queued; `waitingFor` (the oldest holder) and `ahead` once known. */
  | { event: 'waiting'; waitingFor?: { id: string; fencingToken: string }; ahead?: number }
  | { event: 'acquired'; holderKey: string; fencingToken: string; leaseId: string }
  /** A keepalive was answered; `ttl` in seconds, as etcd granted it. */
  | { event: 'refreshed'; fencingToken: string; ttl: number }
  /** The held lock was lost; `detail` is the error that said so. */
  | { event: 'lost'; fencingToken: string; reason: LossReason; detail: string }
  | { event: 'child-started'; childPid: number; command: string[] }
  /** `-n`: the child answered an IPC ping. */
  | { event: 'ping-answered' }
  /**
   * Sent to the command's process group. `graceMs`: how long until SIGKILL (`lost`, `ping-failed`,
   * `internal-error`) or how long
   * it outlived SIGTERM (`kill-timeout`). `received`: the signal etcdlocker got (`second-signal`).
   */
  | { event: 'child-signalled'; signal: NodeJS.Signals; why: SignalReason; graceMs?: number; received?: NodeJS.Signals }
  /** The direct child exited: `code`, or the `signal` that killed it. */
  | { event: 'child-exited'; code: number | null; signal: NodeJS.Signals | null }
  /** After a stop (SIGTERM, SIGKILL), nothing is left of the command's process group. */
  | { event: 'child-group-gone' }
  /** A stop signal (Ctrl-Z: SIGTSTP) while the command runs: the command is stopped, then etcdlocker. */
  | { event: 'suspended'; signal: NodeJS.Signals }
  /** etcdlocker was continued; the command stays stopped until etcd confirms the lease. */
  | { event: 'resumed' }
  /** After a resume, etcd could not be asked about the lease: asked again shortly. */
  | { event: 'lease-check-failed'; detail: string }
  /** A signal came while waiting for the lock: the wait is given up. */
  | { event: 'wait-cancelled'; signal: NodeJS.Signals }
  /** The lock (or the place in the queue) is let go now; etcd has not been told yet. */
  | { event: 'releasing' }
  /** etcd answered the release (or there was nothing to release). */
  | { event: 'released' }
  /** etcdlocker exits with this code, now. */
  | { event: 'exit'; code: number }
  /** Why etcdlocker is failing, or what it had to do about it: printed with or without `-v`. */
  | { event: 'error'; message: string };

/** The name of a {@link LogEvent}. */
export type LogEventName = LogEvent['event'];

/** Where etcdlocker's events go. */
export interface Log {
  event(event: LogEvent): void;
  /** Short for `event({ event: 'error', message })`. */
  error(message: string): void;
}

export interface LogOptions {
  /** `-v`: progress lines too, not only errors. */
  verbose: boolean;
  /** `--log-json`: JSON lines, every event, instead of text (`verbose` then makes no difference). */
  logJson?: boolean;
  /** The lock's key, as given with `-k`. */
  key: string;
}

/** What every line of `--log-json` has besides its event; no event may have fields of these names. */
export interface Stamp {
  /** `performance.timeOrigin + performance.now()`: ms since the epoch, monotonic within the process. */
  at: number;
  /** etcdlocker's PID. */
  pid: number;
  key: string;
}

/** One line of `--log-json`: the event and its fields, stamped. */
export type LogRecord = LogEvent & Stamp;

/**
 * A log writing to stderr: with `logJson`, a {@link LogRecord} per event; else text lines, `etcdlocker: <message>`
 * for errors and `etcdlocker <seconds since start>s <progress>` for the rest with `verbose`.
 *
 * @example
 * const log = createLog({ verbose: true, key: '/k' });
 * log.event({ event: 'acquired', holderKey: '/k/694d', fencingToken: '7', leaseId: '694d' });
 * // etcdlocker 0.312s holding /k/694d with fencing token 7
 * // with logJson: {"event":"acquired","at":1764513000312.4,"pid":4242,"key":"/k","holderKey":"/k/694d",...}
 */
export function createLog(
  options: LogOptions,
  write: (line: string) => void = (line) => process.stderr.write(line),
): Log {
  if (options.logJson) {
    return jsonLog((e) => write(`${jsonLine(e, options.key)}\n`));
  }
  const started = performance.now();
  const stamp = () => `${((performance.now() - started) / 1000).toFixed(3)}s`;
  const event = (e: LogEvent) => {
    if (e.event === 'error') {
      write(`etcdlocker: ${e.message}\n`);
      return;
    }
    const text = options.verbose ? progressText(e, options.key) : undefined;
    if (text !== undefined) write(`etcdlocker ${stamp()} ${text}\n`);
  };
  return { event, error: (message) => event({ event: 'error', message }) };
}

function jsonLog(event: (e: LogEvent) => void): Log {
  return { event, error: (message) => event({ event: 'error', message }) };
}

/**
 * An event as its `--log-json` line (without the newline), stamped now. The type refuses an event with a field of
 * the stamp's name, which would overwrite it.
 */
export function jsonLine(e: LogEvent & { [field in keyof Stamp]?: never }, key: string): string {
  const { event, ...fields } = e;
  // `event` first, then the stamp, then the event's own fields: the order a person reads a line in.
  return JSON.stringify({ event, at: performance.timeOrigin + performance.now(), pid: process.pid, key, ...fields });
}

/**
 * The `-v` line of an event, or undefined for the events `-v` does not show: `lost`, a `kill-timeout` SIGKILL and
 * a `lease-gone` SIGKILL have an error line of their own, `releasing` is for machines.
 */
export function progressText(e: Exclude<LogEvent, { event: 'error' }>, key: string): string | undefined {
  switch (e.event) {
    case 'connecting':
      return `connecting to ${e.etcd} for ${JSON.stringify(key)} as ${e.id}`;
    case 'reading':
      return `reading ${JSON.stringify(key)} from ${e.etcd}`;
    case 'waiting':
      return e.waitingFor
        ? `waiting behind ${e.waitingFor.id} (token ${e.waitingFor.fencingToken})`
        : 'queued for the lock';
    case 'acquired':
      return `holding ${e.holderKey} with fencing token ${e.fencingToken}`;
    case 'refreshed':
      return `refreshed the lease (TTL ${e.ttl} s)`;
    case 'child-started':
      return `running ${e.command.join(' ')}`;
    case 'ping-answered':
      return 'ping answered';
    case 'child-signalled':
      return signalledText(e);
    case 'child-exited':
      return `the command ${e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`}`;
    case 'child-group-gone':
      return "the command's process group is gone";
    case 'wait-cancelled':
      return `${e.signal}: giving up the wait`;
    case 'suspended':
      return `${e.signal}: stopping the command, then etcdlocker (the lease is not kept alive while stopped)`;
    case 'resumed':
      return 'continued: asking etcd whether the lease is still alive before the command goes on';
    case 'lease-check-failed':
      return `could not ask etcd about the lease (${e.detail}); asking again`;
    case 'released':
      return 'released the lock';
    case 'lost':
    case 'releasing':
    case 'exit':
      return undefined;
  }
}

const STOP_CAUSES = { lost: 'lock lost', 'ping-failed': 'ping failure', 'internal-error': 'etcdlocker failed' };

function signalledText(e: Extract<LogEvent, { event: 'child-signalled' }>): string | undefined {
  switch (e.why) {
    case 'forwarded':
      return `forwarding ${e.signal} to the command`;
    case 'second-signal':
      return `${e.received ?? e.signal} again: killing the command`;
    case 'lost':
    case 'ping-failed':
    case 'internal-error':
      return e.signal === 'SIGKILL'
        ? `${STOP_CAUSES[e.why]}: SIGKILL to the command's process group`
        : `${STOP_CAUSES[e.why]}: ${e.signal} to the command's process group, SIGKILL after ${e.graceMs} ms`;
    case 'lease-confirmed':
      return 'etcd still has the lease: the command goes on';
    case 'lease-gone':
    case 'kill-timeout':
      return undefined;
  }
}
