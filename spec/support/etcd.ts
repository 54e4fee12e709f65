/**
 * Real etcd processes for integration tests: single nodes and clusters on free loopback ports, each with its own
 * temporary data dir, plus etcdctl helpers to look at what a test left behind.
 *
 * Other etcd servers may be running on the same machine, so nothing here assumes a port, and nothing here ever
 * signals a process it did not start (only by the PID of its own child).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';

const ETCD_BIN = process.env['ETCD_BIN'] || 'etcd';
const ETCDCTL_BIN = process.env['ETCDCTL_BIN'] || 'etcdctl';
const HEALTH_TIMEOUT_MS = 15_000;
const LEADER_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
const LOG_LINES = 200;
const PORT_ATTEMPTS = 3;

/** One etcd process started by {@link startEtcd} or {@link startCluster}. */
export interface EtcdNode {
  /** The member name (`--name`). */
  readonly name: string;
  /** `127.0.0.1:<client port>`, the form etcd3's `hosts` and etcdctl's `--endpoints` take. */
  readonly endpoint: string;
  /** `http://127.0.0.1:<client port>`, or `https://` when started with {@link StartEtcdOptions.clientTls}. */
  readonly clientUrl: string;
  /** `http://127.0.0.1:<peer port>`. */
  readonly peerUrl: string;
  /** The PID of the current (or last) etcd process; it changes on {@link restart}. */
  readonly pid: number;
  readonly dataDir: string;
  /** SIGTERM, SIGKILL after 5 s, wait for exit, then remove the data dir if this module created it. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit, keeping the data dir so {@link restart} brings the member back: a crash. */
  kill(): Promise<void>;
  /** SIGSTOP: the process stays up and its sockets open, but nothing answers (a hung server). */
  pause(): void;
  /** SIGCONT after {@link pause}. */
  resume(): void;
  /** Start again with the same name, ports and data dir (stopping gracefully first if still running). */
  restart(): Promise<void>;
  /** The last ~200 lines etcd wrote to stdout and stderr. */
  logs(): string;
}

/** A cluster started by {@link startCluster}. */
export interface EtcdCluster {
  readonly members: EtcdNode[];
  /** Every member's `127.0.0.1:<client port>`. */
  readonly endpoints: string[];
  /** The member that is leader now, polling up to 10 s while an election runs. */
  leader(): Promise<EtcdNode>;
  /** Stops every member (see {@link EtcdNode.stop}), one after another. Idempotent. */
  stop(): Promise<void>;
}

export interface StartEtcdOptions {
  /** `--name`; default `etcd-<n>`. */
  name?: string;
  /** Use this data dir (kept on stop) instead of a fresh temporary one (removed on stop). */
  dataDir?: string;
  /** Appended after the defaults; a repeated flag overrides the default (`['--log-level', 'warn']`). */
  extraArgs?: string[];
  /**
   * Serve clients over TLS only, and only to clients with a certificate from `caFile` (etcd's `--cert-file`,
   * `--key-file`, `--trusted-ca-file`, `--client-cert-auth`): the client URL is `https://`. The health check
   * shows `clientCertFile`. `endpoint` stays `127.0.0.1:<port>`: give etcd3 `credentials` to speak TLS.
   */
  clientTls?: EtcdClientTls;
}

/** The PEM files for {@link StartEtcdOptions.clientTls} (what `makeCertificates()` in tls.ts makes). */
export interface EtcdClientTls {
  readonly caFile: string;
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
}

// --- keeping children from outliving the test process ---------------------------------------------------------

const liveChildren = new Set<ChildProcess>();
const ownedDataDirs = new Set<string>();
let exitHooksInstalled = false;

function killEverythingSync(): void {
  for (const child of liveChildren) {
    if (child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  for (const dir of ownedDataDirs) rmSync(dir, { recursive: true, force: true });
}

/**
 * 'exit' covers normal ends and crashes (uncaught errors, process.exit). A fatal signal skips 'exit', and the
 * test runner ends a timed-out file with SIGTERM, so those are caught, cleaned up, and re-raised when nobody else
 * listens. Only a SIGKILL of the test process itself can orphan an etcd.
 */
function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', killEverythingSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killEverythingSync();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

/** A started etcd should not keep the test process alive by itself: the exit hook kills it if a test forgets. */
function setRef(child: ChildProcess, ref: boolean): void {
  // With stdio 'pipe', stdout and stderr are net.Sockets (typed as plain Readables).
  for (const handle of [child, child.stdout as net.Socket | null, child.stderr as net.Socket | null]) {
    if (ref) handle?.ref();
    else handle?.unref();
  }
}

// --- ports ---------------------------------------------------------------------------------------------------

/**
 * `count` distinct free loopback ports. All listeners stay open until every port is known, so the kernel cannot
 * hand out the same port twice; another process can still take one before etcd binds it, hence the retries.
 */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const server = net.createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => (server.address() as net.AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

class EtcdStartError extends Error {
  override readonly name = 'EtcdStartError';
  constructor(
    message: string,
    readonly addressInUse: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

// --- one process ---------------------------------------------------------------------------------------------

interface MemberSpec {
  name: string;
  clientPort: number;
  peerPort: number;
  clientTls?: EtcdClientTls | undefined;
}

class EtcdProcess implements EtcdNode {
  readonly endpoint: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  #child: ChildProcess | undefined;
  #lastPid = -1;
  #exited: Promise<void> = Promise.resolve();
  #running = false;
  #lines: string[] = [];
  #stopped: Promise<void> | undefined;
  readonly #clientTls: EtcdClientTls | undefined;

  constructor(
    readonly name: string,
    readonly dataDir: string,
    private readonly ownsDataDir: boolean,
    private readonly args: readonly string[],
    spec: MemberSpec,
  ) {
    this.endpoint = `127.0.0.1:${spec.clientPort}`;
    this.clientUrl = `${spec.clientTls ? 'https' : 'http'}://${this.endpoint}`;
    this.#clientTls = spec.clientTls;
    this.peerUrl = `http://127.0.0.1:${spec.peerPort}`;
  }

  get pid(): number {
    return this.#lastPid;
  }

  logs(): string {
    return this.#lines.join('\n');
  }

  /** Spawn and wait until `/health` says true; on failure the process is killed and the error carries the logs. */
  async start(): Promise<void> {
    installExitHooks();
    const child = spawn(ETCD_BIN, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    this.#running = true;
    this.#lastPid = child.pid ?? -1;
    liveChildren.add(child);
    let spawnError: Error | undefined;
    this.#exited = new Promise((resolve) => {
      const done = (): void => {
        this.#running = false;
        liveChildren.delete(child);
        resolve();
      };
      child.once('exit', done);
      child.once('error', (error) => {
        spawnError = error; // e.g. ENOENT: 'exit' never comes
        done();
      });
    });
    for (const stream of [child.stdout, child.stderr]) this.#capture(stream);

    try {
      await this.#waitHealthy(() => spawnError);
    } catch (error) {
      await this.kill();
      const logs = this.logs();
      throw new EtcdStartError(
        `etcd ${this.name} (${this.clientUrl}) did not start: ${(error as Error).message}` +
          (logs ? `\n--- etcd output ---\n${logs}` : ''),
        /address already in use/.test(logs),
        { cause: error },
      );
    }
    setRef(child, false);
  }

  #capture(stream: NodeJS.ReadableStream | null): void {
    if (!stream) return;
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      this.#lines.push(...lines);
      if (this.#lines.length > LOG_LINES) this.#lines.splice(0, this.#lines.length - LOG_LINES);
    });
    stream.on('end', () => {
      if (partial) this.#lines.push(partial);
      partial = '';
    });
  }

  async #waitHealthy(spawnError: () => Error | undefined): Promise<void> {
    const deadline = Date.now() + HEALTH_TIMEOUT_MS;
    let lastProblem = 'no answer yet';
    while (Date.now() < deadline) {
      const error = spawnError();
      if (error) {
        throw new Error(`cannot run ${ETCD_BIN} (set ETCD_BIN or run node scripts/ensure-etcd.mjs)`, {
          cause: error,
        });
      }
      if (!this.#running) {
        const child = this.#child;
        throw new Error(`etcd exited with ${child?.exitCode ?? child?.signalCode} while starting`);
      }
      try {
        const body = await this.#health();
        if ((JSON.parse(body) as { health?: unknown }).health === 'true') return;
        lastProblem = `/health said ${body}`;
      } catch (error) {
        lastProblem = String((error as Error).cause ?? error);
      }
      await sleep(25);
    }
    throw new Error(`not healthy after ${HEALTH_TIMEOUT_MS} ms (${lastProblem})`);
  }

  /** The body of `/health`; over TLS with the test CA and client certificate (fetch takes neither). */
  async #health(): Promise<string> {
    const tls = this.#clientTls;
    if (!tls) return (await fetch(`${this.clientUrl}/health`, { signal: AbortSignal.timeout(1_000) })).text();
    const [ca, cert, key] = [tls.caFile, tls.clientCertFile, tls.clientKeyFile].map((file) => readFileSync(file));
    return new Promise((resolve, reject) => {
      https
        .get(`${this.clientUrl}/health`, { ca, cert, key, timeout: 1_000 }, (response) => {
          let body = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => (body += chunk));
          response.on('end', () => resolve(body));
          response.on('error', reject);
        })
        .on('timeout', function (this: { destroy(error: Error): void }) {
          this.destroy(new Error('no answer within 1 s'));
        })
        .on('error', reject);
    });
  }

  /** SIGTERM (and SIGCONT, since a paused etcd acts on it only once continued), SIGKILL after 5 s. */
  async #terminate(): Promise<void> {
    const child = this.#child;
    if (!child || !this.#running) return;
    setRef(child, true);
    child.kill('SIGTERM');
    child.kill('SIGCONT');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    try {
      await this.#exited;
    } finally {
      clearTimeout(timer);
    }
  }

  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      await this.#terminate();
      if (this.ownsDataDir) {
        await rm(this.dataDir, { recursive: true, force: true });
        ownedDataDirs.delete(this.dataDir);
      }
    })();
    return this.#stopped;
  }

  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || !this.#running) return;
    setRef(child, true);
    child.kill('SIGKILL');
    await this.#exited;
  }

  pause(): void {
    if (this.#running) this.#child?.kill('SIGSTOP');
  }

  resume(): void {
    if (this.#running) this.#child?.kill('SIGCONT');
  }

  async restart(): Promise<void> {
    if (this.#stopped) throw new Error(`etcd ${this.name} was stopped (its data dir is gone); start a new one`);
    await this.#terminate();
    // etcd 3.4 ignores --initial-cluster* once the data dir holds a member, so the first run's args still fit.
    await this.start();
  }
}

let nodeCounter = 0;

async function makeDataDir(given: string | undefined): Promise<{ dataDir: string; owned: boolean }> {
  if (given !== undefined) return { dataDir: given, owned: false };
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'etcd-lock-test-'));
  ownedDataDirs.add(dataDir);
  return { dataDir, owned: true };
}

function memberArgs(spec: MemberSpec, dataDir: string, initialCluster: string, clusterArgs: string[]): string[] {
  const tls = spec.clientTls;
  const clientUrl = `${tls ? 'https' : 'http'}://127.0.0.1:${spec.clientPort}`;
  const peerUrl = `http://127.0.0.1:${spec.peerPort}`;
  return [
    ...['--name', spec.name, '--data-dir', dataDir],
    ...['--listen-client-urls', clientUrl, '--advertise-client-urls', clientUrl],
    ...['--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl],
    ...['--initial-cluster', initialCluster, ...clusterArgs],
    // Elections in ~100 ms instead of ~1 s, so a single node is up in ~150 ms and a failover test is quick.
    ...['--heartbeat-interval', '10', '--election-timeout', '100'],
    // etcd 3.4's default capnslog logger ignores --log-level for raft's INFO lines; zap honours it.
    ...['--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'error'],
    ...(tls
      ? ['--cert-file', tls.serverCertFile, '--key-file', tls.serverKeyFile, '--trusted-ca-file', tls.caFile]
      : []),
    ...(tls ? ['--client-cert-auth'] : []),
  ];
}

/** Retries `attempt` when etcd lost a race for one of its freshly picked ports. */
async function withPortRetries<T>(attempt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof EtcdStartError && error.addressInUse) || tries >= PORT_ATTEMPTS) throw error;
    }
  }
}

/**
 * Starts a single-member etcd on free loopback ports with a temporary data dir, resolving once it is healthy.
 *
 * @example
 * const etcd = await startEtcd();
 * after(() => etcd.stop());
 * const client = new Etcd3({ hosts: etcd.endpoint });
 */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdNode> {
  const name = options.name ?? `etcd-${++nodeCounter}`;
  return withPortRetries(async () => {
    const [clientPort = 0, peerPort = 0] = await freePorts(2);
    const spec = { name, clientPort, peerPort, clientTls: options.clientTls };
    const { dataDir, owned } = await makeDataDir(options.dataDir);
    const args = [
      ...memberArgs(spec, dataDir, `${name}=http://127.0.0.1:${peerPort}`, ['--initial-cluster-state', 'new']),
      ...(options.extraArgs ?? []),
    ];
    const node = new EtcdProcess(name, dataDir, owned, args, spec);
    try {
      await node.start();
    } catch (error) {
      await node.stop();
      throw error;
    }
    return node;
  });
}

/**
 * Starts a `size`-member cluster on free loopback ports, members started concurrently, resolving once every
 * member is healthy (which needs a leader).
 *
 * @example
 * const cluster = await startCluster(3);
 * after(() => cluster.stop());
 * await (await cluster.leader()).kill();   // fail over
 */
export async function startCluster(size = 3): Promise<EtcdCluster> {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`Expected \`size\` >= 1, got ${size}`);
  const prefix = `member-${++nodeCounter}`;
  return withPortRetries(async () => {
    const ports = await freePorts(size * 2);
    const specs = Array.from({ length: size }, (_, i) => ({
      name: `${prefix}-${i}`,
      clientPort: ports[2 * i] ?? 0,
      peerPort: ports[2 * i + 1] ?? 0,
    }));
    const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peerPort}`).join(',');
    const token = `etcd-lock-test-${randomBytes(6).toString('hex')}`;
    const clusterArgs = ['--initial-cluster-token', token, '--initial-cluster-state', 'new'];
    const members = await Promise.all(
      specs.map(async (spec) => {
        const { dataDir } = await makeDataDir(undefined);
        return new EtcdProcess(spec.name, dataDir, true, memberArgs(spec, dataDir, initialCluster, clusterArgs), spec);
      }),
    );
    const cluster = new Cluster(members);
    const results = await Promise.allSettled(members.map((member) => member.start()));
    const failure = results.find((result) => result.status === 'rejected');
    if (failure) {
      await cluster.stop();
      throw failure.reason;
    }
    return cluster;
  });
}

interface MemberStatus {
  memberId: string;
  leader: string;
  raftTerm: bigint;
}

/** `/v3/maintenance/status` on etcd's gRPC gateway; uint64s come back as decimal strings. */
async function memberStatus(node: EtcdNode): Promise<MemberStatus | undefined> {
  try {
    const response = await fetch(`${node.clientUrl}/v3/maintenance/status`, {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json' },
      signal: AbortSignal.timeout(500),
    });
    const body = (await response.json()) as { header?: { member_id?: string }; leader?: string; raftTerm?: string };
    if (!body.header?.member_id || !body.leader) return undefined;
    return { memberId: body.header.member_id, leader: body.leader, raftTerm: BigInt(body.raftTerm ?? 0) };
  } catch {
    return undefined; // killed, paused or partitioned: not a leader we can use
  }
}

class Cluster implements EtcdCluster {
  readonly endpoints: string[];
  #stopped: Promise<void> | undefined;

  constructor(readonly members: EtcdNode[]) {
    this.endpoints = members.map((member) => member.endpoint);
  }

  async leader(): Promise<EtcdNode> {
    const deadline = Date.now() + LEADER_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const statuses = await Promise.all(this.members.map(memberStatus));
      // Trust a member only about itself: a follower may still name a leader that has just died.
      let best: { node: EtcdNode; term: bigint } | undefined;
      statuses.forEach((status, i) => {
        const node = this.members[i];
        if (node && status && status.leader === status.memberId && (!best || status.raftTerm > best.term)) {
          best = { node, term: status.raftTerm };
        }
      });
      if (best) return best.node;
      await sleep(50);
    }
    throw new Error(`no leader among ${this.endpoints.join(', ')} after ${LEADER_TIMEOUT_MS} ms`);
  }

  /**
   * One member at a time: a leader given SIGTERM hands leadership to a live peer first (etcd 3.4's
   * TransferLeadership), and if the peers are stopping at the same moment it hangs until our 5 s SIGKILL.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      for (const member of this.members) await member.stop();
    })();
    return this.#stopped;
  }
}

// --- bring your own cluster -----------------------------------------------------------------------------------

/**
 * The endpoints in `ETCD_ENDPOINTS` (comma-separated `host:port`s) when the user brings their own cluster.
 *
 * @example
 * // ETCD_ENDPOINTS=10.0.0.1:2379,10.0.0.2:2379 npm test
 * etcdEndpointsFromEnv(); // ['10.0.0.1:2379', '10.0.0.2:2379']
 */
export function etcdEndpointsFromEnv(): string[] | undefined {
  const endpoints = (process.env['ETCD_ENDPOINTS'] ?? '')
    .split(',')
    .map((endpoint) => endpoint.trim())
    .filter((endpoint) => endpoint !== '');
  return endpoints.length > 0 ? endpoints : undefined;
}

/**
 * An etcd for a test file: the user's cluster from `ETCD_ENDPOINTS` (stop does nothing), else a fresh node.
 * Tests that kill, pause or restart etcd need `node` and should skip when it is absent.
 *
 * @example
 * const etcd = await useEtcd();
 * after(() => etcd.stop());
 * const client = new Etcd3({ hosts: etcd.endpoints });
 */
export async function useEtcd(): Promise<{ endpoints: string[]; node?: EtcdNode; stop(): Promise<void> }> {
  const endpoints = etcdEndpointsFromEnv();
  if (endpoints) return { endpoints, stop: async () => {} };
  const node = await startEtcd();
  return { endpoints: [node.endpoint], node, stop: () => node.stop() };
}

/** What {@link etcdForSuite} gives a test file: read the fields inside tests and hooks, once `before` has run. */
export interface SuiteEtcd {
  readonly endpoints: string[];
  /** The node this file started, or undefined on the user's cluster (`ETCD_ENDPOINTS`). */
  readonly node: EtcdNode | undefined;
  /** An etcd3 client on {@link endpoints}, closed after the suite. */
  readonly client: Etcd3;
}

/**
 * Call inside a `describe`: registers `before` and `after` hooks that start an etcd ({@link useEtcd}) and an etcd3
 * client on it, then close and stop them.
 *
 * @example
 * describe('my lock', () => {
 *   const etcd = etcdForSuite();
 *   it('...', async () => { await etcd.client.put('/k').value('v'); });
 * });
 */
export function etcdForSuite(): SuiteEtcd {
  let etcd: Awaited<ReturnType<typeof useEtcd>> | undefined;
  let client: Etcd3 | undefined;
  before(async () => {
    etcd = await useEtcd();
    client = new Etcd3({ hosts: etcd.endpoints });
  });
  after(async () => {
    client?.close();
    await etcd?.stop();
  });
  const started = () => {
    if (!etcd || !client) throw new Error('etcdForSuite: read the fields inside a test or hook, after before()');
    return { etcd, client };
  };
  return {
    get endpoints() {
      return started().etcd.endpoints;
    },
    get node() {
      return started().etcd.node;
    },
    get client() {
      return started().client;
    },
  };
}

let prefixCounter = 0;

/**
 * A key prefix no other test (or test process, or run against a shared cluster) uses:
 * `/etcd-lock-test/<label>/<pid>-<n>-<random hex>`. Tests clean up under their own prefix only.
 *
 * @example
 * const key = `${uniquePrefix('mutex')}/lock`;
 */
export function uniquePrefix(label: string): string {
  return `/etcd-lock-test/${label}/${process.pid}-${++prefixCounter}-${randomBytes(4).toString('hex')}`;
}

// --- etcdctl ----------------------------------------------------------------------------------------------------

export interface EtcdctlResult {
  /** The exit code, or 128 + signal number when etcdctl was killed (e.g. by the timeout). */
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `etcdctl --endpoints=<endpoints> <args>` with ETCDCTL_API=3. Resolves with the exit code rather than
 * rejecting on failure, so tests can assert failures too; it is killed after `timeoutMs` (default 15 s).
 *
 * @example
 * const { code, stdout } = await etcdctl(etcd.endpoints, ['get', key, '--print-value-only']);
 */
export async function etcdctl(
  endpoints: readonly string[],
  args: readonly string[],
  options: { timeoutMs?: number } = {},
): Promise<EtcdctlResult> {
  const child = spawn(ETCDCTL_BIN, [`--endpoints=${endpoints.join(',')}`, ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 15_000);
  try {
    const code = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (exitCode, signal) => {
        resolve(exitCode ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0));
      });
    });
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

async function etcdctlOk(endpoints: readonly string[], args: readonly string[]): Promise<string> {
  const result = await etcdctl(endpoints, args);
  if (result.code !== 0) {
    throw new Error(`etcdctl ${args.join(' ')} exited with ${result.code}: ${result.stderr.trim()}`);
  }
  return result.stdout;
}

/**
 * Every key under `prefix`, in key order; `[]` means a test left nothing behind.
 *
 * @example
 * assert.deepEqual(await listKeys(etcd.endpoints, prefix), []);
 */
export async function listKeys(endpoints: readonly string[], prefix: string): Promise<string[]> {
  // JSON because keys may hold newlines; keys come base64-encoded.
  const stdout = await etcdctlOk(endpoints, ['get', prefix, '--prefix', '--keys-only', '-w', 'json']);
  const body = JSON.parse(stdout) as { kvs?: Array<{ key: string }> };
  return (body.kvs ?? []).map((kv) => Buffer.from(kv.key, 'base64').toString('utf8'));
}

/**
 * Every lease the cluster holds, as decimal strings (the form etcd3's `lease.grant()` returns).
 * On a cluster shared with other tests, compare against your own lease IDs rather than expecting `[]`.
 *
 * @example
 * assert.deepEqual(await listLeases(etcd.endpoints), []);
 */
export async function listLeases(endpoints: readonly string[]): Promise<string[]> {
  // Not `-w json`: it prints the int64 IDs as bare JSON numbers, which JSON.parse rounds. The table is hex.
  const stdout = await etcdctlOk(endpoints, ['lease', 'list']);
  return stdout
    .split('\n')
    .slice(1) // "found N leases"
    .map((line) => line.trim())
    .filter((line) => /^[0-9a-f]+$/i.test(line))
    .map((hex) => BigInt(`0x${hex}`).toString());
}
