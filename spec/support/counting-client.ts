import { Etcd3 } from 'etcd3';

/** An etcd3 client of its own that counts the transactions sent through it (close it yourself). */
export function countingClient(hosts: string[]): { client: Etcd3; txns: () => number } {
  const client = new Etcd3({ hosts });
  let count = 0;
  const txn = client.kv.txn.bind(client.kv);
  client.kv.txn = (...args: Parameters<typeof txn>) => {
    count++;
    return txn(...args);
  };
  return { client, txns: () => count };
}
