/** What every lock under test looks like to the benchmark: one contender, its own client, one key. */

export interface Contender {
  /** Resolves once the lock is held, with a function that releases it and resolves once etcd has seen that. */
  acquire(): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface OpenOptions {
  endpoints: string[];
  key: string;
  /** Distinct per contender: what the lock stores as the holder. */
  id: string;
  /** A held lock failed later (lost, or an error with no caller left to tell). */
  onLateError: (err: unknown) => void;
}

export interface LockKind {
  /** The row label. */
  name: string;
  /** A short label for the chart's legend. */
  short: string;
  open(options: OpenOptions): Promise<Contender>;
}

/** Every lock's lease TTL here: long enough that no keepalive falls inside a short run. */
export const TTL_SECONDS = 60;
