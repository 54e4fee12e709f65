/**
 * The floor for contended handoffs: K clients pass a baton round a ring. Contender i watches its own key; the
 * holder hands over with one put to the next contender's key. Each handoff is one write and one watch event,
 * the least any watch-based lock can do; it is FIFO and fair by construction.
 */
import { Etcd3, type Watcher } from 'etcd3';
import type { ContendedPlan, ContendedRow } from './contended.js';
import { timedOut } from './deadline.js';
import { HandoffLog } from './handoffs.js';
import { putKey } from './raw.js';

export const BATON_NAME = 'floor: baton (one put + one watch event per handoff)';

export async function runBaton(
  k: number,
  endpoints: string[],
  prefix: string,
  plan: ContendedPlan,
): Promise<ContendedRow> {
  const clients = Array.from({ length: k }, () => new Etcd3({ hosts: endpoints }));
  const watchers: Watcher[] = [];
  try {
    for (const [i, client] of clients.entries()) watchers.push(await client.watch().key(`${prefix}/${i}`).create());
    const start = performance.now();
    const log = new HandoffLog(k, start + plan.warmupMs, start + plan.warmupMs + plan.durationMs);
    const askedAt = Array.from({ length: k }, () => start);
    let failure: string | undefined;
    const finished = new Promise<void>((resolve) => {
      watchers.forEach((watcher, who) => {
        watcher.on('put', () => {
          log.acquired(who, askedAt[who]!);
          void log.increment().then(async () => {
            log.releasing();
            askedAt[who] = performance.now();
            if (!log.open) return resolve();
            const next = (who + 1) % k;
            await putKey(clients[who]!, `${prefix}/${next}`, String(performance.now())).catch((err: unknown) => {
              failure ??= String(err);
              resolve();
            });
          });
        });
      });
    });
    await putKey(clients[0]!, `${prefix}/0`, 'start');
    const stalled = await timedOut(finished, plan.warmupMs + plan.durationMs + plan.drainMs);
    return { name: BATON_NAME, short: 'floor (baton)', ...log.result(), lateErrors: 0, stalled, failure };
  } finally {
    await Promise.all(watchers.map((watcher) => watcher.cancel().catch(() => undefined)));
    for (const client of clients) client.close();
  }
}
