/** Raw etcd requests through the etcd3 client's generated RPC clients: what every lock here is built from. */
import type { Etcd3, IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';

const DEADLINE_MS = 10_000;
const options = () => ({ deadline: Date.now() + DEADLINE_MS });

export async function grantLease(client: Etcd3, ttlSeconds: number): Promise<string> {
  const res = await client.leaseClient.leaseGrant({ TTL: ttlSeconds }, options());
  return res.ID;
}

export async function revokeLease(client: Etcd3, leaseId: string): Promise<void> {
  await client.leaseClient.leaseRevoke({ ID: leaseId }, options());
}

/** The write half of acquiring: put `key` on `leaseId` if it does not exist (etcd's lock does the same). */
export async function putIfAbsent(client: Etcd3, key: string, value: string, leaseId: string): Promise<boolean> {
  const keyBuffer = Buffer.from(key);
  const res = await client.kv.txn(
    {
      compare: [{ key: keyBuffer, target: 'Create', result: 'Equal', create_revision: 0 }],
      success: [{ request_put: { key: keyBuffer, value: Buffer.from(value), lease: leaseId } }],
      failure: [],
    },
    options(),
  );
  return res.succeeded;
}

export async function deleteKey(client: Etcd3, key: string): Promise<void> {
  await client.kv.deleteRange({ key: Buffer.from(key) }, options());
}

export async function putKey(client: Etcd3, key: string, value: string): Promise<void> {
  await client.kv.put({ key: Buffer.from(key), value: Buffer.from(value) }, options());
}

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

/** One LeaseKeepAlive stream; `once()` sends one keepalive and resolves with etcd's answer. */
export class KeepAliveSender {
  private waiting: ((res: ILeaseKeepAliveResponse) => void)[] = [];

  private constructor(private readonly stream: KeepAliveStream) {
    stream.on('data', (res) => this.waiting.shift()?.(res));
  }

  static async open(client: Etcd3): Promise<KeepAliveSender> {
    return new KeepAliveSender(await client.leaseClient.leaseKeepAlive());
  }

  once(leaseId: string): Promise<ILeaseKeepAliveResponse> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.stream.write({ ID: leaseId });
    });
  }

  close(): void {
    this.stream.cancel();
  }
}
