import { InvalidArgumentError } from './errors.js';
import { type ResolvedLockOptions, resolveLockOptions, show } from './options.js';

/** Options of {@link campaign$}. Times as for `lock$`: `ttl` in seconds, `refreshInterval` in milliseconds. */
export interface CampaignOptions {
  /** Our proposal, stored as the value of our key (`etcdctl elect`'s proposal). Default: the host name. */
  id?: string;
  /** Lease time-to-live in whole seconds. Default 60. */
  ttl?: number;
  /** Milliseconds between lease keepalives. Default `ttl * 1000 / 2`; must be below `ttl * 1000`. */
  refreshInterval?: number;
  /**
   * Called once when the campaign ends (resign, unsubscribe, error or loss), with a promise that settles when our
   * key and lease are gone from etcd. It never rejects.
   */
  onRelease?: (released: Promise<void>) => void;
}

const CAMPAIGN_OPTIONS = new Set(['id', 'ttl', 'refreshInterval', 'onRelease']);

/** @throws InvalidArgumentError unless `name` is a non-empty string. */
export function validateElectionName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidArgumentError(`Expected \`name\` to be a non-empty string, got ${show(name)}`);
  }
  return name;
}

/**
 * Validates a campaign's name and options before any network call; a campaign is a lock contender whose value is
 * its proposal, so the lock's own validation does the rest.
 * @throws InvalidArgumentError naming the value that was wrong
 */
export function resolveCampaignOptions(name: unknown, options: CampaignOptions | undefined): ResolvedLockOptions {
  validateElectionName(name);
  if (typeof options === 'object' && options !== null) {
    for (const option of Object.keys(options)) {
      // Lock options that mean nothing here (`wait`, `timeout`, ...) are refused rather than silently ignored.
      if (!CAMPAIGN_OPTIONS.has(option)) throw new InvalidArgumentError(`Unknown option \`${option}\``);
    }
  }
  return resolveLockOptions(name, options);
}

/** @throws InvalidArgumentError unless `value` is a non-empty string. */
export function validateProposal(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidArgumentError(`Expected \`value\` to be a non-empty string, got ${show(value)}`);
  }
  return value;
}
