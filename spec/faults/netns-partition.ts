/**
 * A real network partition for one library worker: the worker runs in a child process inside a network namespace
 * of its own, joined to this one by two veth links, one to etcd and one to the fence. Cutting the etcd link
 * (`ip link set <host end> down`) drops the worker's packets to and from etcd silently, as a pulled cable would:
 * no RST, no refusal, its calls simply go unanswered. The fence link stays up, so the cut-off worker can still
 * reach the resource the lock protects, which is the case fencing is for.
 *
 * The etcd members and the fence listen on 127.0.0.1 of this namespace, which the child cannot reach, so small TCP
 * forwarders listen on the host ends of the links and pass bytes through.
 *
 * Needs Linux, root and `ip` (iproute2) with `ip netns`; {@link netnsUnavailable} says why not, for `skip`.
 * Everything it creates is named `etcd-lock-<hex>` / `ek<hex>h` / `fk<hex>h` and removed on stop, or on exit if a
 * test dies first (only a SIGKILL of the test process leaves them behind).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { HolderEvent } from '../support/checker.js';
import type { FromChild, IsolatedWorkerConfig, ToChild } from './netns-worker.js';
import { type HoldMode, waitFor, type Worker } from './support-workers.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHILD = path.join(ROOT, 'spec/faults/netns-worker.ts');
const STOP_TIMEOUT_MS = 20_000;
const execFileAsync = promisify(execFile);

async function ip(...args: string[]): Promise<string> {
  try {
    return (await execFileAsync('ip', args, { timeout: 10_000 })).stdout;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`ip ${args.join(' ')} failed${stderr ? `: ${stderr}` : ''}`, { cause: err });
  }
}

/** Best effort, synchronous: for cleanup, and for exit hooks where nothing asynchronous runs. */
function ipSync(...args: string[]): string | undefined {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
    return undefined;
  } catch (err) {
    return (err as { stderr?: Buffer }).stderr?.toString().trim() || String(err);
  }
}

let unavailable: { reason: string | undefined } | undefined;

/**
 * Why a partition through network namespaces cannot run on this machine, or undefined when it can: it needs
 * Linux, root, and `ip netns add` and veth links to work (a container may refuse them). Tried once, then cached.
 *
 * @example
 * it('a worker cut off from etcd', { skip: netnsUnavailable() ?? false }, async () => { ... });
 */
export function netnsUnavailable(): string | undefined {
  unavailable ??= { reason: probe() };
  return unavailable.reason;
}

function probe(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add, ip link add)';
  const id = randomBytes(3).toString('hex');
  const ns = `etcd-lock-probe-${id}`;
  const failed = ipSync('netns', 'add', ns);
  if (failed !== undefined) return `ip netns add does not work here: ${failed}`;
  try {
    const noVeth = ipSync('link', 'add', `pk${id}h`, 'type', 'veth', 'peer', 'name', `pk${id}n`, 'netns', ns);
    if (noVeth !== undefined) return `ip link add ... type veth does not work here: ${noVeth}`;
    ipSync('link', 'del', `pk${id}h`);
    return undefined;
  } finally {
    ipSync('netns', 'del', ns);
  }
}

/** A TCP forwarder listening on `host` (an address of this namespace the child can reach), to `target`. */
async function startForwarder(host: string, target: string): Promise<{ endpoint: string; close(): Promise<void> }> {
  const separator = target.lastIndexOf(':');
  const upstreamAt = { host: target.slice(0, separator), port: Number(target.slice(separator + 1)) };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const upstream = net.connect(upstreamAt);
    for (const [one, other] of [
      [socket, upstream],
      [upstream, socket],
    ] as const) {
      sockets.add(one);
      one.pipe(other);
      one.on('error', () => other.destroy());
      one.on('close', () => {
        sockets.delete(one);
        other.destroy();
      });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  return {
    endpoint: `${host}:${(server.address() as net.AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** A /24-sized prefix `10.x.y.` that no address or route of this machine uses yet. */
async function freeSubnet(): Promise<string> {
  const inUse = (await ip('-4', '-o', 'addr', 'show')) + (await ip('-4', 'route', 'show', 'table', 'all'));
  for (let attempt = 0; attempt < 100; attempt++) {
    const prefix = `10.${randomInt(200, 250)}.${randomInt(0, 256)}.`;
    if (!inUse.includes(prefix)) return prefix;
  }
  throw new Error('no free 10.x.y.0/24 found for the veth links');
}

/** A worker in its own network namespace, whose link to etcd can be cut. */
export interface IsolatedWorker extends Worker {
  /** The namespace's name (`ip netns exec <namespace> ...` to look inside while a test runs). */
  readonly namespace: string;
  /** Cuts the link to etcd: every packet between the worker and etcd is dropped, silently, until {@link heal}. */
  partition(): Promise<void>;
  /** Brings the link back up; TCP retransmits then get through and the worker's connections carry on. */
  heal(): Promise<void>;
}

/** The child's settings, with the endpoints and fence as seen from here (`127.0.0.1`), and where its events go. */
export type IsolatedWorkerOptions = Omit<IsolatedWorkerConfig, 'ignoreLoss'> & {
  ignoreLoss?: boolean;
  /** Receives each event the child logs (timed in the child, on the clock every process here shares). */
  record: (event: HolderEvent) => void;
};

/**
 * Creates the namespace and its links, forwarders to etcd and the fence, and starts the worker in it; resolves
 * once the child runs. Stop it with {@link IsolatedWorker.stop}, which also removes the namespace.
 *
 * @example
 * const worker = await startIsolatedWorker({ name: 'iso', endpoints: cluster.endpoints, fenceUrl: fence.url, ... });
 * await worker.partition(); // the worker is cut off from etcd; its local deadline must end its hold
 * await worker.heal();
 * await worker.stop();
 */
export async function startIsolatedWorker(options: IsolatedWorkerOptions): Promise<IsolatedWorker> {
  const id = randomBytes(3).toString('hex');
  const namespace = `etcd-lock-${id}`;
  const etcdLink = { host: `ek${id}h`, inside: `ek${id}n` };
  const fenceLink = { host: `fk${id}h`, inside: `fk${id}n` };
  const forwarders: Array<Awaited<ReturnType<typeof startForwarder>>> = [];
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const removeSync = () => {
    if (child?.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    // Deleting one end of a veth deletes the other; the namespace goes once nothing runs in it.
    ipSync('link', 'del', etcdLink.host);
    ipSync('link', 'del', fenceLink.host);
    ipSync('netns', 'del', namespace);
  };
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const onSignal = (signal: NodeJS.Signals) => {
    removeSync();
    // As spec/support/etcd.ts does: re-raise when no other listener will, so the signal still ends the process.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  process.on('exit', removeSync);
  for (const signal of signals) process.once(signal, onSignal);
  const unhook = () => {
    process.off('exit', removeSync);
    for (const signal of signals) process.off(signal, onSignal);
  };

  const removeAll = async () => {
    for (const forwarder of forwarders) await forwarder.close();
    removeSync();
    unhook();
  };

  let status: Extract<FromChild, { type: 'status' }> = {
    type: 'status',
    lastState: 'starting',
    errors: [],
    ignoredLosses: 0,
  };
  let stopped = false;
  try {
    const subnet = await freeSubnet();
    const hostAddress = { etcd: `${subnet}1`, fence: `${subnet}5` };
    await ip('netns', 'add', namespace);
    const links = [
      { ...etcdLink, hostAddress: hostAddress.etcd, insideAddress: `${subnet}2` },
      { ...fenceLink, hostAddress: hostAddress.fence, insideAddress: `${subnet}6` },
    ];
    for (const link of links) {
      await ip('link', 'add', link.host, 'type', 'veth', 'peer', 'name', link.inside, 'netns', namespace);
      await ip('addr', 'add', `${link.hostAddress}/30`, 'dev', link.host);
      await ip('link', 'set', link.host, 'up');
      await ip('-n', namespace, 'addr', 'add', `${link.insideAddress}/30`, 'dev', link.inside);
      await ip('-n', namespace, 'link', 'set', link.inside, 'up');
    }
    await ip('-n', namespace, 'link', 'set', 'lo', 'up');

    for (const endpoint of options.endpoints) forwarders.push(await startForwarder(hostAddress.etcd, endpoint));
    const fenceForwarder = await startForwarder(hostAddress.fence, new URL(options.fenceUrl).host);
    forwarders.push(fenceForwarder);

    const config: IsolatedWorkerConfig = {
      name: options.name,
      endpoints: forwarders.slice(0, options.endpoints.length).map((f) => f.endpoint),
      fenceUrl: `http://${fenceForwarder.endpoint}`,
      key: options.key,
      ttl: options.ttl,
      logFile: options.logFile,
      clientKind: options.clientKind,
      ignoreLoss: options.ignoreLoss ?? false,
    };
    // `ip netns exec` enters the namespace and execs node: the child's PID is node's, and the IPC channel
    // (fd 3 and NODE_CHANNEL_FD) goes through untouched.
    const spawned = spawn('ip', ['netns', 'exec', namespace, process.execPath, '--import', 'tsx', CHILD], {
      cwd: ROOT,
      env: { ...process.env, NETNS_WORKER: JSON.stringify(config) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child = spawned;
    exited = new Promise((resolve) => {
      spawned.once('exit', () => resolve());
      spawned.once('error', () => resolve()); // could not spawn `ip`: no 'exit' comes
    });
    spawned.on('message', (message: FromChild) => {
      if (message.type === 'event') options.record(message.event);
      else if (message.type === 'status') status = message;
      else if (message.type === 'stopped') stopped = true;
    });
    // The first status comes with the first state, `acquiring`: the child is up and contending.
    const started = await Promise.race([
      waitFor(() => status.lastState !== 'starting', 30_000),
      exited.then(() => false),
    ]);
    if (!started) throw new Error(`the isolated worker ${options.name} did not start`);
  } catch (err) {
    await removeAll();
    throw err;
  }

  const send = (message: ToChild) => {
    if (child?.connected) child.send(message);
  };
  let stopping: Promise<void> | undefined;

  return {
    name: options.name,
    namespace,
    get errors() {
      return new Map(status.errors);
    },
    get lastState() {
      return status.lastState;
    },
    get ignoredLosses() {
      return status.ignoredLosses;
    },
    hold: (mode: HoldMode) => send({ type: 'hold', mode }),
    partition: async () => {
      await ip('link', 'set', etcdLink.host, 'down');
    },
    heal: async () => {
      await ip('link', 'set', etcdLink.host, 'up');
    },
    stop: () =>
      (stopping ??= (async () => {
        try {
          // Let it release: a partitioned worker could not reach etcd to revoke its lease.
          await ip('link', 'set', etcdLink.host, 'up');
          send({ type: 'stop' });
          const timer = setTimeout(() => child?.kill('SIGKILL'), STOP_TIMEOUT_MS);
          await exited;
          clearTimeout(timer);
          if (!stopped) throw new Error(`the isolated worker ${options.name} exited without releasing`);
        } finally {
          await removeAll();
        }
      })()),
  };
}
