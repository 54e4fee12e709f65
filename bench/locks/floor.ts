/**
 * The floor as a "lock" for the uncontended table: one txn (put if absent, on a long-lived lease) and one
 * delete. It does not wait or watch, so it is only a lock while nobody else wants the key.
 */
import { Etcd3 } from 'etcd3';
import { deleteKey, grantLease, putIfAbsent, revokeLease } from '../raw.js';
import type { Contender, LockKind } from './kind.js';

/** Long enough that no run outlives it: the floor sends no keepalives, and a TTL does not change a write's cost. */
const FLOOR_TTL_SECONDS = 3600;

export const floorTxnDelete: LockKind = {
  name: 'floor: one txn + one delete (no lock)',
  short: 'floor',
  open: async ({ endpoints, key, id }): Promise<Contender> => {
    const client = new Etcd3({ hosts: endpoints });
    const leaseId = await grantLease(client, FLOOR_TTL_SECONDS);
    const holderKey = `${key}/${id}`;
    return {
      acquire: async () => {
        if (!(await putIfAbsent(client, holderKey, id, leaseId))) throw new Error(`${holderKey} exists`);
        return () => deleteKey(client, holderKey);
      },
      close: async () => {
        await revokeLease(client, leaseId).catch(() => undefined);
        client.close();
      },
    };
  },
};
