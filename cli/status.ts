/**
 * `etcdlocker --status -k key [--json]`: who holds the lock and who waits, read from etcd without taking anything
 * (no key, no lease), as a table or as JSON on stdout.
 */
import { holders, type LockContender } from '../lib/holders.js';
import { hidePasswordFromProcessTitle, type StatusConfig } from './args.js';
import { connectionHint, createClient, describeConnection } from './client.js';
import { ExitCode } from './exit-codes.js';
import type { Log } from './log.js';

/** Prints the lock's holder and queue; 0 when etcd answered (free or held), 1 when it could not be read. */
export async function status(config: StatusConfig, log: Log, write = (text: string) => process.stdout.write(text)) {
  hidePasswordFromProcessTitle(config);
  const client = createClient(config.endpoints, config);
  try {
    log.event({ event: 'reading', etcd: describeConnection(config) });
    const queue = await holders(client, config.key);
    write(config.json ? statusJson(config.key, queue) : statusTable(config.key, queue));
    return 0;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    log.error(`cannot read the lock ${JSON.stringify(config.key)} from ${config.endpoints.join(',')}: ${reason}`);
    const hint = connectionHint(err, config);
    if (hint) log.error(hint);
    return ExitCode.acquireFailed;
  } finally {
    client.close();
  }
}

/**
 * The status as JSON: `{ key, holder, waiting }`, `holder` null when the lock is free, `waiting` in the order the
 * waiters will get the lock; each contender as `holders()` gives it, with `ttl` null for a key on no lease.
 */
export function statusJson(key: string, queue: readonly LockContender[]): string {
  const [holder, ...waiting] = queue.map((contender) => ({
    ...contender,
    ttl: Number.isFinite(contender.ttl) ? contender.ttl : null,
  }));
  return `${JSON.stringify({ key, holder: holder ?? null, waiting }, null, 2)}\n`;
}

/**
 * The status for people: one line that sums it up, then one row per contender, the holder first.
 *
 *     /jobs/reindex: held by indexer-a (fencing token 1041), 1 waiting
 *     POSITION  ID         FENCING TOKEN  LEASE             TTL LEFT
 *     holder    indexer-a  1041           694d7a1e0c3b5f12  52 s
 *     1         indexer-b  1043           694d7a1e0c3b5f2a  58 s
 */
export function statusTable(key: string, queue: readonly LockContender[]): string {
  const [holder] = queue;
  if (!holder) return `${key}: free\n`;
  const waiting = queue.length - 1;
  const summary = `${key}: held by ${display(holder.id)} (fencing token ${holder.fencingToken}), ${waiting} waiting`;
  const rows = [
    ['POSITION', 'ID', 'FENCING TOKEN', 'LEASE', 'TTL LEFT'],
    ...queue.map((contender, position) => [
      position === 0 ? 'holder' : String(position),
      display(contender.id),
      contender.fencingToken,
      contender.leaseId,
      Number.isFinite(contender.ttl) ? `${contender.ttl} s` : 'never expires (no lease)',
    ]),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const lines = rows.map((row) =>
    row
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join('  ')
      .trimEnd(),
  );
  return `${summary}\n${lines.join('\n')}\n`;
}

/** An id as it can be read in a table: quoted when empty (etcdctl lock stores none) or holding blanks or controls. */
function display(id: string): string {
  return /^[^\s\p{C}"]+$/u.test(id) ? id : JSON.stringify(id);
}
