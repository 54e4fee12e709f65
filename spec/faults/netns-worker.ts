/**
 * The child process of an isolated worker (netns-partition.ts): one library worker ({@link startWorker}) run
 * inside a network namespace, so that its traffic to etcd can be cut at the link. It talks to the test over the
 * IPC channel, which no partition touches:
 *
 * - in: `{ type: 'hold', mode }`, `{ type: 'stop' }`;
 * - out: `{ type: 'event', event }` for each HolderEvent (timed in this process on the clock the test shares),
 *   `{ type: 'status', ... }` when its state, errors or ignored losses change, `{ type: 'stopped' }` once released.
 *
 * Its settings come as JSON in the `NETNS_WORKER` environment variable ({@link IsolatedWorkerConfig}).
 */
import type { HolderEvent } from '../support/checker.js';
import {
  type ClientKind,
  type HoldMode,
  makeClient,
  startWorker,
  type Worker,
  type WorkerOptions,
} from './support-workers.js';

/** What the child is told: where etcd and the fence are as seen from its namespace, and the worker's settings. */
export type IsolatedWorkerConfig = Pick<WorkerOptions, 'name' | 'key' | 'ttl' | 'fenceUrl'> & {
  /** Its {@link WorkerOptions.logFile}: the namespace has a network of its own, not a file system. */
  logFile: string;
  endpoints: string[];
  clientKind: ClientKind;
  ignoreLoss: boolean;
};

export type ToChild = { type: 'hold'; mode: HoldMode } | { type: 'stop' };
export type FromChild =
  | { type: 'event'; event: HolderEvent }
  | { type: 'status'; lastState: string; errors: Array<[string, number]>; ignoredLosses: number }
  | { type: 'stopped' };

function main(): void {
  const send = (message: FromChild) =>
    new Promise<void>((resolve) => {
      if (process.connected && process.send) process.send(message, () => resolve());
      else resolve();
    });
  const config = JSON.parse(process.env['NETNS_WORKER'] ?? '') as IsolatedWorkerConfig;
  const client = makeClient(config.clientKind, config.endpoints);
  const status = () =>
    void send({
      type: 'status',
      lastState: worker.lastState,
      errors: [...worker.errors],
      ignoredLosses: worker.ignoredLosses,
    });
  // The worker reports its first state before startWorker returns: relay changes from then on, and that state.
  let started = false;
  const worker: Worker = startWorker({
    name: config.name,
    client,
    key: config.key,
    ttl: config.ttl,
    fenceUrl: config.fenceUrl,
    ignoreLoss: config.ignoreLoss,
    logFile: config.logFile,
    record: (event) => void send({ type: 'event', event }),
    onChange: () => {
      if (started) status();
    },
  });
  started = true;
  status();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await worker.stop();
    client.close();
    await send({ type: 'stopped' });
    // etcd3 leaves a watch reconnect timer behind a closed client (up to 30 s): do not wait for it.
    process.disconnect?.();
    process.exit(0);
  };
  process.on('message', (message: ToChild) => {
    if (message.type === 'hold') worker.hold(message.mode);
    else void stop();
  });
  // The test is gone (it crashed, or was killed): release and go too.
  process.on('disconnect', () => void stop());
}

main();
