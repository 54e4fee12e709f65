import type { Etcd3, ITxnRequest, ITxnResponse } from 'etcd3';

/** Sub-transactions per transaction: etcd 3.4's default `--max-txn-ops` is 128 per level. */
const MAX_PER_TXN = 64;
/**
 * Transactions in flight at once. etcd refuses new proposals ("too many requests") once it has 5,000 committed
 * but not yet applied: 10,000 lock() calls sent as 10,000 requests at once would meet that.
 */
const MAX_IN_FLIGHT = 4;

type TxnOptions = Parameters<Etcd3['kv']['txn']>[1];

interface Pending {
  request: ITxnRequest;
  deadline: number | undefined;
  writes: string[];
  resolve: (res: ITxnResponse) => void;
  reject: (err: unknown) => void;
}

/**
 * Sends the transactions of a locker's locks together: those asked for while others are on their way are sent
 * as the sub-transactions (etcd's nested `request_txn`) of one transaction, up to {@link MAX_PER_TXN}, with at
 * most {@link MAX_IN_FLIGHT} transactions in flight. A lone transaction is sent as it is.
 *
 * Why: each lock costs at least one transaction (enqueue), and etcd, with the gRPC and Raft work around each
 * request, handles a few thousand requests a second; 10,000 locks in separate requests take seconds, in nested
 * batches a fraction of one (see docs/locker.md for the figures).
 *
 * Why it keeps every lock's semantics: etcd evaluates all the compares of a transaction, nested ones included,
 * against the state before it, and runs the operations in order; every sub-transaction of one batch concerns
 * another lock (another key range), except that two writes of one key never share a batch (etcd would refuse
 * the batch: "duplicate key given in txn request"). All of a batch happens at one revision, which is the
 * header revision each sub-transaction's caller receives, the create revision of the keys it put: what a
 * separate transaction would have returned. If the batch fails, each of its callers gets the error.
 */
export class TxnBatcher {
  readonly #client: Etcd3;
  #queue: Pending[] = [];
  /** Where the queue starts: taking from the front by index, not shift(), keeps 10,000 queued calls O(n). */
  #head = 0;
  #inFlight = 0;
  #scheduled = false;

  constructor(client: Etcd3) {
    this.#client = client;
  }

  txn(request: ITxnRequest, options?: TxnOptions): Promise<ITxnResponse> {
    return new Promise<ITxnResponse>((resolve, reject) => {
      const deadline = options?.deadline === undefined ? undefined : Number(options.deadline);
      this.#queue.push({ request, deadline, writes: writtenKeys(request), resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        // Everything asked for in the same run of the event loop goes out together.
        queueMicrotask(() => {
          this.#scheduled = false;
          this.#flush();
        });
      }
    });
  }

  #flush(): void {
    while (this.#inFlight < MAX_IN_FLIGHT && this.#head < this.#queue.length) this.#send(this.#take());
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    }
  }

  /** The next batch: up to MAX_PER_TXN from the front of the queue, stopping before a second write of a key. */
  #take(): Pending[] {
    const batch: Pending[] = [];
    const written = new Set<string>();
    while (batch.length < MAX_PER_TXN && this.#head < this.#queue.length) {
      const next = this.#queue[this.#head]!;
      if (next.writes.some((key) => written.has(key))) break;
      for (const key of next.writes) written.add(key);
      batch.push(next);
      this.#head++;
    }
    return batch;
  }

  #send(batch: Pending[]): void {
    this.#inFlight++;
    const deadlines = batch.map((p) => p.deadline).filter((d): d is number => d !== undefined);
    const options = deadlines.length > 0 ? { deadline: Math.min(...deadlines) } : undefined;
    const request: ITxnRequest =
      batch.length === 1
        ? batch[0]!.request
        : { compare: [], success: batch.map((p) => ({ request_txn: p.request })), failure: [] };
    void this.#client.kv
      .txn(request, options)
      .then(
        (res) => {
          if (batch.length === 1) {
            batch[0]!.resolve(res);
            return;
          }
          batch.forEach((p, i) => {
            const sub = res.responses[i]?.response_txn;
            // etcd leaves a nested response's header empty: the batch's is theirs (one revision for all).
            if (sub) p.resolve({ ...sub, header: res.header });
            else p.reject(new Error(`etcd returned no response for sub-transaction ${i}`));
          });
        },
        (err: unknown) => {
          for (const p of batch) p.reject(err);
        },
      )
      .finally(() => {
        // Free the slot, and send what queued meanwhile.
        this.#inFlight--;
        this.#flush();
      });
  }
}

/** The keys a transaction may write (puts, and single-key deletes), in either branch. */
function writtenKeys(request: ITxnRequest): string[] {
  const keys: string[] = [];
  for (const op of [...(request.success ?? []), ...(request.failure ?? [])]) {
    const key = op.request_put?.key ?? op.request_delete_range?.key;
    if (key !== undefined) keys.push(key.toString('latin1'));
  }
  return keys;
}
