/**
 * Part 1, the floor: raw etcd round trips with the same client the locks use. A lock cannot be faster than
 * the requests it must make: acquire + release is at least one txn and one delete.
 */
import { once } from 'node:events';
import type { Etcd3 } from 'etcd3';
import { deleteKey, grantLease, KeepAliveSender, putIfAbsent, putKey, revokeLease } from './raw.js';
import { latencyPlan, sampleInterleaved, type Subject } from './sampler.js';
import { summarize, type Summary } from './stats.js';

export interface FloorRow {
  name: string;
  latency: Summary;
}

export const FLOOR_TXN_DELETE = 'txn + delete';

export async function measureFloor(clients: [Etcd3, Etcd3], prefix: string, scale: number): Promise<FloorRow[]> {
  const [client, other] = clients;
  const leaseId = await grantLease(client, 3600); // no keepalives here: long enough for any run
  const keepalive = await KeepAliveSender.open(client);
  const key = `${prefix}/floor`;
  const watched = `${prefix}/watched`;
  const watcher = await other.watch().key(watched).create();
  let n = 0;
  try {
    const subjects: Subject[] = [
      {
        name: 'txn (put if absent, on a lease)',
        op: async () => {
          const start = performance.now();
          await putIfAbsent(client, key, 'floor', leaseId);
          const ms = performance.now() - start;
          await deleteKey(client, key);
          return ms;
        },
      },
      {
        name: 'delete',
        op: async () => {
          await putIfAbsent(client, key, 'floor', leaseId);
          const start = performance.now();
          await deleteKey(client, key);
          return performance.now() - start;
        },
      },
      {
        name: FLOOR_TXN_DELETE,
        op: async () => {
          await putIfAbsent(client, key, 'floor', leaseId);
          await deleteKey(client, key);
        },
      },
      {
        name: 'lease keepalive (open stream)',
        op: async () => {
          await keepalive.once(leaseId);
        },
      },
      {
        name: 'put -> watch event at another client',
        op: async () => {
          const event = once(watcher, 'put');
          await putKey(client, watched, String(++n));
          await event;
        },
      },
    ];
    const samples = await sampleInterleaved(subjects, latencyPlan(scale));
    return subjects.map((subject) => ({ name: subject.name, latency: summarize(samples.get(subject.name)!) }));
  } finally {
    keepalive.close();
    await watcher.cancel();
    await deleteKey(client, watched);
    await revokeLease(client, leaseId).catch(() => undefined);
  }
}
