import { hostname } from 'node:os';
import { InvalidArgumentError } from './errors.js';
import { DEFAULT_TTL_SECONDS, show, validateId, validateRefreshInterval, validateTtl } from './options.js';

/**
 * Options of {@link createLocker}: consul-locker's (`name`, `maxRetries`, `retryInterval`), plus the lease's
 * `ttl` and `refreshInterval` as {@link lock$} has them. Times: `ttl` and `retryInterval` in seconds (as
 * consul-locker), `refreshInterval` in milliseconds (as etcd-lock).
 */
export interface LockerOptions {
  /** The key prefix: lock `id` is the lock named `${name}/${id}`. Lockers that compete must share it. */
  name: string;
  /** The session's lease time-to-live, in whole seconds. Default 60. */
  ttl?: number;
  /** Milliseconds between keepalives of the session's lease. Default `ttl * 1000 / 2`. */
  refreshInterval?: number;
  /** Who holds the locks: stored as the value of each key, shown to others as the holder. Default: the host name. */
  holderId?: string;
  /** How many more times to try creating the session when it fails. Default 10 (consul-locker's). */
  maxRetries?: number;
  /** Seconds between those tries. Default 30 (consul-locker's); fractions allowed. */
  retryInterval?: number;
}

/** Options of `locker.lock(id, options)`. */
export interface LockerLockOptions {
  /**
   * `true` waits in the queue while another holder has the lock. Default: `false` (fail at once with
   * `ETCDLOCK_BUSY`, as consul-locker's "Already locked"), or `true` when `timeout` is above 0.
   */
  wait?: boolean;
  /**
   * Milliseconds this call may take, counted from the call, waiting for the session included; then it rejects
   * with `ETCDLOCK_TIMEOUT`. `0` tries once. Default: no limit.
   */
  timeout?: number;
  /** Aborting stops this call, which rejects with `signal.reason` (a lock already held stays held). */
  signal?: AbortSignal;
}

/** {@link LockerOptions} after validation, with defaults and units in the names. */
export interface ResolvedLockerOptions {
  name: string;
  ttlSeconds: number;
  refreshIntervalMs: number;
  holderId: string;
  maxRetries: number;
  retryIntervalMs: number;
}

/** {@link LockerLockOptions} after validation. */
export interface ResolvedLockerLockOptions {
  wait: boolean;
  timeoutMs: number | undefined;
  signal: AbortSignal | undefined;
}

export const DEFAULT_MAX_RETRIES = 10;
export const DEFAULT_RETRY_INTERVAL_SECONDS = 30;
const MAX_TIMER_MS = 2 ** 31 - 1;

const knownLockerOptions = new Set(['name', 'ttl', 'refreshInterval', 'holderId', 'maxRetries', 'retryInterval']);
const knownLockOptions = new Set(['wait', 'timeout', 'signal']);

/**
 * Validates {@link createLocker}'s options before any network call, naming the value that was wrong.
 * @throws InvalidArgumentError
 */
export function resolveLockerOptions(options: unknown): ResolvedLockerOptions {
  const o = knownObject<LockerOptions>(options, 'options', knownLockerOptions, true);
  const name = validateLockerName(o.name);
  const ttlSeconds = o.ttl === undefined ? DEFAULT_TTL_SECONDS : validateTtl(o.ttl);
  const refreshIntervalMs =
    o.refreshInterval === undefined ? (ttlSeconds * 1000) / 2 : validateRefreshInterval(o.refreshInterval, ttlSeconds);
  let holderId = hostname();
  try {
    if (o.holderId !== undefined) holderId = validateId(o.holderId);
  } catch {
    throw new InvalidArgumentError(`Expected \`holderId\` to be a non-empty string, got ${show(o.holderId)}`);
  }
  const maxRetries = o.maxRetries ?? DEFAULT_MAX_RETRIES;
  if (typeof maxRetries !== 'number' || !Number.isInteger(maxRetries) || maxRetries < 0) {
    throw new InvalidArgumentError(`Expected \`maxRetries\` to be a whole number >= 0, got ${show(o.maxRetries)}`);
  }
  const retryInterval = o.retryInterval ?? DEFAULT_RETRY_INTERVAL_SECONDS;
  if (typeof retryInterval !== 'number' || !Number.isFinite(retryInterval) || retryInterval < 0) {
    throw new InvalidArgumentError(
      `Expected \`retryInterval\` to be a number of seconds >= 0, got ${show(o.retryInterval)}`,
    );
  }
  if (retryInterval * 1000 > MAX_TIMER_MS) {
    throw new InvalidArgumentError(
      `Expected \`retryInterval\` to be at most ${Math.floor(MAX_TIMER_MS / 1000)} seconds, got ${retryInterval}`,
    );
  }
  return {
    name,
    ttlSeconds,
    refreshIntervalMs,
    holderId,
    maxRetries,
    retryIntervalMs: retryInterval * 1000,
  };
}

/**
 * Validates the options of one `lock(id)` call.
 * @throws InvalidArgumentError
 */
export function resolveLockerLockOptions(options: unknown): ResolvedLockerLockOptions {
  const o = knownObject<LockerLockOptions>(options ?? {}, 'options', knownLockOptions, false);
  if (o.wait !== undefined && typeof o.wait !== 'boolean') {
    throw new InvalidArgumentError(`Expected \`wait\` to be a boolean, got ${show(o.wait)}`);
  }
  const timeoutMs = o.timeout;
  if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && Number.isFinite(timeoutMs) && timeoutMs >= 0)) {
    throw new InvalidArgumentError(`Expected \`timeout\` to be a number of milliseconds >= 0, got ${show(timeoutMs)}`);
  }
  if (timeoutMs !== undefined && timeoutMs > MAX_TIMER_MS) {
    throw new InvalidArgumentError(`Expected \`timeout\` to be at most ${MAX_TIMER_MS} ms, got ${timeoutMs}`);
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
    throw new InvalidArgumentError(`Expected \`signal\` to be an AbortSignal, got ${show(o.signal)}`);
  }
  return {
    // timeout 0 tries once (as lock$ and flock -w 0); a longer timeout means waiting is wanted.
    wait: timeoutMs === 0 ? false : (o.wait ?? (timeoutMs !== undefined && timeoutMs > 0)),
    timeoutMs: timeoutMs === 0 ? undefined : timeoutMs,
    signal: o.signal,
  };
}

/**
 * @throws InvalidArgumentError unless `name` is a non-empty string that does not end with `/` (the locks are
 * `${name}/${id}`: a trailing slash would double it).
 */
export function validateLockerName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidArgumentError(`Expected \`name\` to be a non-empty string, got ${show(name)}`);
  }
  if (name.endsWith('/')) {
    throw new InvalidArgumentError(
      `Expected \`name\` not to end with "/" (lock ids are added as \`\${name}/\${id}\`), got ${show(name)}`,
    );
  }
  return name;
}

/**
 * A lock id as a string: a non-empty string without `/`, or a finite number (consul-locker took `lock(123)`;
 * `123` and `'123'` are the same lock). A `/` would nest one lock's keys under another's prefix, so that
 * holding `a/b` would queue behind, and block, `a`.
 * @throws InvalidArgumentError
 */
export function validateLockId(id: unknown): string {
  if (typeof id === 'number' && Number.isFinite(id)) return String(id);
  if (typeof id !== 'string' || id.length === 0) {
    throw new InvalidArgumentError(`Expected \`id\` to be a non-empty string or a finite number, got ${show(id)}`);
  }
  if (id.includes('/')) {
    throw new InvalidArgumentError(
      `Expected \`id\` not to contain "/" (it would nest one lock inside another's key range), got ${show(id)}`,
    );
  }
  return id;
}

function knownObject<T>(value: unknown, what: string, known: Set<string>, required: boolean): Partial<T> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(
      `Expected \`${what}\` to be an object${required ? ' with a `name`' : ''}, got ${show(value)}`,
    );
  }
  for (const key of Object.keys(value)) {
    if (!known.has(key)) throw new InvalidArgumentError(`Unknown option \`${key}\``);
  }
  return value;
}
