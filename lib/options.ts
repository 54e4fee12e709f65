import { hostname } from 'node:os';
import type { Etcd3 } from 'etcd3';
import type { Observable, SchedulerLike } from 'rxjs';
import { InvalidArgumentError } from './errors.js';

/** Options of {@link lock$}. Times follow etcd-lock 1.x: `ttl` in seconds, the others in milliseconds. */
export interface LockOptions {
  /** Who holds the lock: stored as the value of our key. Default: the host name. */
  id?: string;
  /** Lease time-to-live in whole seconds. Default 60. */
  ttl?: number;
  /** Milliseconds between lease keepalives. Default `ttl * 1000 / 2`; must be below `ttl * 1000`. */
  refreshInterval?: number;
  /**
   * `false` tries once and fails with `ETCDLOCK_BUSY` when someone holds the lock (with a `limit`, when
   * `limit` contenders are ahead of us). Default `true`.
   */
  wait?: boolean;
  /**
   * Milliseconds to wait for the lock, counted from subscribing, before failing with `ETCDLOCK_TIMEOUT`.
   * `0` tries once, like `wait: false` (`ETCDLOCK_BUSY` when held). Default: no limit.
   */
  timeout?: number;
  /** Aborting stops waiting (or releases a held lock); the stream errors with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * A semaphore: up to `limit` contenders hold at once, each with its own fencing token; the others wait in
   * FIFO order. A whole number >= 1; default 1, a lock (etcd's own protocol, so `etcdctl lock` interoperates).
   * Every contender for one key must use the same `limit`.
   */
  limit?: number;
  /**
   * Called once when the subscription ends (unsubscribe, error or loss), with a promise that settles
   * when our key and lease are gone from etcd. It never rejects. Use it to await the release.
   */
  onRelease?: (released: Promise<void>) => void;
  /**
   * Holds the release back until this settles: after the subscription ends (on loss too), our key
   * stays in etcd, with no more keepalives, until then, so nobody else is granted the lock while you
   * stop the work it protected. The lease still ends by its TTL at the latest. etcdlocker passes a
   * promise that settles once its child is dead. Default: release at once.
   */
  releaseAfter?: PromiseLike<unknown>;
  /** Each emission sends a keepalive now, besides the regular cadence (the facade's `lock()` while held). */
  refresh$?: Observable<unknown>;
  /** The scheduler for every timer (keepalive cadence, deadline, timeout). For tests in virtual time. */
  scheduler?: SchedulerLike;
}

/** {@link LockOptions} after validation, with defaults filled in and units in the names. */
export interface ResolvedLockOptions {
  key: string;
  /** The prefix under which every contender owns one key: `key + '/'`, as etcd's own lock does. */
  prefix: string;
  id: string;
  ttlSeconds: number;
  refreshIntervalMs: number;
  wait: boolean;
  timeoutMs: number | undefined;
  signal: AbortSignal | undefined;
  /** Up to this many holders at once; 1 for a lock. */
  limit: number;
  onRelease: ((released: Promise<void>) => void) | undefined;
  releaseAfter: PromiseLike<unknown> | undefined;
  refresh$: Observable<unknown> | undefined;
  scheduler: SchedulerLike | undefined;
}

export const DEFAULT_TTL_SECONDS = 60;
/** The longest delay a Node timer can hold (2^31 - 1 ms) decides the longest TTL we can keep alive. */
export const MAX_TTL_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

const known = new Set([
  'id',
  'ttl',
  'refreshInterval',
  'wait',
  'timeout',
  'signal',
  'limit',
  'onRelease',
  'releaseAfter',
  'refresh$',
  'scheduler',
]);

/**
 * Validates `key` and `options` before any network call, naming the value that was wrong.
 * @throws InvalidArgumentError
 */
export function resolveLockOptions(key: unknown, options: LockOptions | undefined = {}): ResolvedLockOptions {
  const keyName = validateKey(key);
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError(`Expected \`options\` to be an object, got ${show(options)}`);
  }
  for (const name of Object.keys(options)) {
    if (!known.has(name)) throw new InvalidArgumentError(`Unknown option \`${name}\``);
  }
  const ttlSeconds = options.ttl === undefined ? DEFAULT_TTL_SECONDS : validateTtl(options.ttl);
  const refreshIntervalMs =
    options.refreshInterval === undefined
      ? (ttlSeconds * 1000) / 2
      : validateRefreshInterval(options.refreshInterval, ttlSeconds);
  const id = options.id === undefined ? hostname() : validateId(options.id);
  const limit = options.limit === undefined ? 1 : validateLimit(options.limit);
  if (options.wait !== undefined && typeof options.wait !== 'boolean') {
    throw new InvalidArgumentError(`Expected \`wait\` to be a boolean, got ${show(options.wait)}`);
  }
  const timeoutMs = options.timeout;
  if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && Number.isFinite(timeoutMs) && timeoutMs >= 0)) {
    throw new InvalidArgumentError(`Expected \`timeout\` to be a number of milliseconds >= 0, got ${show(timeoutMs)}`);
  }
  if (timeoutMs !== undefined && timeoutMs > 2 ** 31 - 1) {
    throw new InvalidArgumentError(`Expected \`timeout\` to be at most ${2 ** 31 - 1} ms, got ${timeoutMs}`);
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new InvalidArgumentError(`Expected \`signal\` to be an AbortSignal, got ${show(options.signal)}`);
  }
  if (options.refresh$ !== undefined && typeof options.refresh$?.subscribe !== 'function') {
    throw new InvalidArgumentError(`Expected \`refresh$\` to be an Observable, got ${show(options.refresh$)}`);
  }
  const scheduler = options.scheduler;
  if (scheduler !== undefined && (typeof scheduler?.schedule !== 'function' || typeof scheduler.now !== 'function')) {
    throw new InvalidArgumentError(`Expected \`scheduler\` to be an rxjs SchedulerLike, got ${show(scheduler)}`);
  }
  if (options.onRelease !== undefined && typeof options.onRelease !== 'function') {
    throw new InvalidArgumentError(`Expected \`onRelease\` to be a function, got ${show(options.onRelease)}`);
  }
  if (options.releaseAfter !== undefined && typeof options.releaseAfter?.then !== 'function') {
    throw new InvalidArgumentError(`Expected \`releaseAfter\` to be a promise, got ${show(options.releaseAfter)}`);
  }
  return {
    key: keyName,
    prefix: `${keyName}/`,
    id,
    ttlSeconds,
    refreshIntervalMs,
    // timeout 0 would expire before the first round trip; it means "don't wait", as flock -w 0 does.
    wait: (options.wait ?? true) && timeoutMs !== 0,
    timeoutMs,
    signal: options.signal,
    limit,
    onRelease: options.onRelease,
    releaseAfter: options.releaseAfter,
    refresh$: options.refresh$,
    scheduler: options.scheduler,
  };
}

/** @throws InvalidArgumentError unless `key` is a non-empty string. */
export function validateKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidArgumentError(`Expected \`key\` to be a non-empty string, got ${show(key)}`);
  }
  return key;
}

/** @throws InvalidArgumentError unless `ttl` is a whole number of seconds in 1..MAX_TTL_SECONDS. */
export function validateTtl(ttl: unknown): number {
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1) {
    throw new InvalidArgumentError(`Expected \`ttl\` to be a whole number of seconds >= 1, got ${show(ttl)}`);
  }
  if (ttl > MAX_TTL_SECONDS) {
    throw new InvalidArgumentError(
      `Expected \`ttl\` to be at most ${MAX_TTL_SECONDS} seconds (the longest timer Node can set), got ${ttl}`,
    );
  }
  return ttl;
}

/** @throws InvalidArgumentError unless `refreshInterval` is a number of ms > 0 and below the TTL. */
export function validateRefreshInterval(refreshInterval: unknown, ttlSeconds: number): number {
  if (typeof refreshInterval !== 'number' || !Number.isFinite(refreshInterval) || refreshInterval <= 0) {
    throw new InvalidArgumentError(
      `Expected \`refreshInterval\` to be a number of milliseconds > 0, got ${show(refreshInterval)}`,
    );
  }
  if (refreshInterval >= ttlSeconds * 1000) {
    throw new InvalidArgumentError(
      `Expected \`refreshInterval\` to be below the TTL (${ttlSeconds * 1000} ms), got ${refreshInterval}`,
    );
  }
  return refreshInterval;
}

/** @throws InvalidArgumentError unless `limit` is a whole number >= 1 (a safe integer). */
export function validateLimit(limit: unknown): number {
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
    throw new InvalidArgumentError(`Expected \`limit\` to be a whole number >= 1, got ${show(limit)}`);
  }
  return limit;
}

/** @throws InvalidArgumentError unless `id` is a non-empty string. */
export function validateId(id: unknown): string {
  if (typeof id !== 'string' || id.length === 0) {
    throw new InvalidArgumentError(`Expected \`id\` to be a non-empty string, got ${show(id)}`);
  }
  return id;
}

/**
 * How long before the lease's server-side expiry we declare the lock lost: a quarter of the TTL, but
 * never so much that the deadline falls before the next keepalive can be answered.
 */
export function lossMarginMs(ttlSeconds: number, refreshIntervalMs: number): number {
  const ttlMs = ttlSeconds * 1000;
  return Math.min(ttlMs / 4, (ttlMs - refreshIntervalMs) / 2);
}

/** Renders a bad value for an error message: strings quoted, objects by their type. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'function') return 'a function';
  return Array.isArray(value) ? 'an array' : `an object (${Object.prototype.toString.call(value)})`;
}

/**
 * @param name how the caller names the argument in its signature (`client` for lock$, `etcd` for the facade)
 * @throws InvalidArgumentError unless `client` looks like an etcd3 `Etcd3`
 */
export function assertClient(client: unknown, name = 'client'): asserts client is Etcd3 {
  const candidate = client as Partial<Etcd3> | null | undefined;
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.kv?.txn !== 'function' ||
    typeof candidate.leaseClient?.leaseGrant !== 'function' ||
    typeof candidate.watch !== 'function'
  ) {
    throw new InvalidArgumentError(`Expected \`${name}\` to be an etcd3 Etcd3 client, got ${show(client)}`);
  }
}
