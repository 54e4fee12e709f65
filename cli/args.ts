/**
 * etcdlocker's command line: flags, their environment defaults, validation and help. Loads neither etcd3
 * nor the lock itself, so `--help`, `--version` and usage errors answer at once.
 */
import { hostname } from 'node:os';
import arg from 'arg';
import { MAX_TTL_SECONDS } from '../lib/options.js';

/** Everything etcdlocker needs to run, validated. */
export interface Config {
  /** etcd3 `hosts`: `http://host:port` or `https://host:port`, one per endpoint. */
  endpoints: string[];
  key: string;
  id: string;
  ttlSeconds: number;
  refreshIntervalMs: number;
  /** `-n`: fork a Node.js child and ping it over IPC. */
  node: boolean;
  verbose: boolean;
  /** `-w`: give up acquiring after this long; 0 tries once; undefined waits as long as it takes. */
  waitMs: number | undefined;
  /** `--kill-timeout`: grace between SIGTERM and SIGKILL when the lock is lost; undefined = as long as the lease allows. */
  killTimeoutMs: number | undefined;
  command: string;
  args: string[];
}

/** `--status`: what etcdlocker needs to show who holds a lock. */
export interface StatusConfig {
  endpoints: string[];
  key: string;
  /** `--json`: JSON on stdout instead of a table. */
  json: boolean;
  verbose: boolean;
}

export type Invocation =
  { kind: 'run'; config: Config } | { kind: 'status'; config: StatusConfig } | { kind: 'help' } | { kind: 'version' };

/** A bad command line: etcdlocker prints the message and the usage line, and exits 64. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const USAGE = 'usage: etcdlocker [options] [--] command [args...]';
export const STATUS_USAGE = 'usage: etcdlocker --status -k key [-e endpoints] [--json]';
export const DEFAULT_ENDPOINT = 'localhost:2379';
export const DEFAULT_TTL_SECONDS = 60;

export const HELP = `${USAGE}
${STATUS_USAGE.replace('usage:', '      ')}

Acquires a distributed lock on etcd v3, runs the command while holding it, and releases it when the
command exits. If the lock is lost, the command's process group gets SIGTERM, then SIGKILL before the
lease could expire, and etcdlocker exits 2. Options stop at the command, so its own flags pass through;
"--" before the command is allowed.

Options (environment variable in brackets):
  -k, --key key            the lock to take (required) [ETCD_LOCK_KEY]
  -e, --etcd endpoints     etcd address: host:port, http(s)://host:port, or a comma-separated list;
                           default ${DEFAULT_ENDPOINT} [ETCD_LOCK_HOST]
  -i, --id value           holder id stored in the lock, default the host name [ETCD_LOCK_ID]
  -t, --ttl seconds        lease TTL, whole seconds, default ${DEFAULT_TTL_SECONDS} [ETCD_LOCK_TTL]
  -r, --refresh seconds    keepalive period, below the TTL, default TTL / 2 [ETCD_LOCK_REFRESH]
  -w, --wait seconds       give up acquiring after this long (exit 1); 0 tries once; default: wait
      --kill-timeout secs  grace between SIGTERM and SIGKILL when the lock is lost; default and
                           upper bound: what the lease allows
  -n, --node               the command is a Node.js module: fork it and ping it over IPC every refresh
                           period with {ping: x}; it must answer {pong: x} within the TTL, or it is
                           killed and etcdlocker exits 4 [ETCD_CHILD_IS_NODE]
  -v, --verbose            progress on stderr
      --status             show who holds the lock (-k) and who waits, with fencing tokens and lease
                           TTLs left, then exit 0 (1 if etcd cannot be read); takes no command, and
                           creates no key or lease
      --json               with --status: JSON on stdout instead of a table
  -h, --help               this help
      --version            print the version

The command's environment gets ETCD_LOCK_REV (the fencing token: the lock key's create revision),
ETCD_LOCK_KEY, ETCD_LOCK_ID and ETCD_LOCK_HOLDER_KEY (its own key in etcd, to fence writes with). SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to it; a second SIGINT
or SIGTERM kills it at once. A signal while waiting for the lock cancels the wait.

Exit codes: the command's own, or 128 + signal number when it (or etcdlocker) dies by a signal;
  1  acquiring failed (etcd unreachable, -w timed out, lock busy with -w 0)
  2  the lock was lost while the command ran
  3  the command could not be spawned or killed
  4  -n: the child's IPC ping failed
  64 bad usage

Example:
  ETCD_LOCK_HOST=etcd:2379 etcdlocker -k /jobs/nightly -t 30 -- ./nightly.sh --full
`;

const SPEC = {
  '--etcd': String,
  '--id': String,
  '--key': String,
  '--ttl': String,
  '--refresh': String,
  '--wait': String,
  '--kill-timeout': String,
  '--node': Boolean,
  '--verbose': Boolean,
  '--status': Boolean,
  '--json': Boolean,
  '--help': Boolean,
  '--version': Boolean,
  '-e': '--etcd',
  '-i': '--id',
  '-k': '--key',
  '-t': '--ttl',
  '-r': '--refresh',
  '-w': '--wait',
  '-n': '--node',
  '-v': '--verbose',
  '-h': '--help',
};

/**
 * Parses etcdlocker's arguments (without `node` and the script) with environment defaults.
 * @throws UsageError naming the flag or variable and the value that was wrong
 */
export function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv): Invocation {
  let parsed: arg.Result<typeof SPEC>;
  try {
    parsed = arg(SPEC, { argv: [...argv], stopAtPositional: true });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (parsed['--help']) return { kind: 'help' };
  if (parsed['--version']) return { kind: 'version' };

  const pick = (flag: keyof typeof SPEC & `--${string}`, short: string, envName: string) => {
    const fromFlag = parsed[flag];
    if (typeof fromFlag === 'string') return { value: fromFlag, source: `${short}/${flag}` };
    const fromEnv = env[envName];
    return fromEnv === undefined || fromEnv === '' ? undefined : { value: fromEnv, source: envName };
  };

  const key = pick('--key', '-k', 'ETCD_LOCK_KEY');
  if (!key) throw new UsageError('missing the lock key: pass -k/--key or set ETCD_LOCK_KEY');
  if (key.value.trim() === '') throw new UsageError(`${key.source} must not be blank`);
  if (parsed['--status']) return { kind: 'status', config: statusConfig(parsed, key.value, pick) };
  if (parsed['--json']) throw new UsageError('--json goes with --status');

  const id = pick('--id', '-i', 'ETCD_LOCK_ID');
  if (id && id.value.trim() === '') throw new UsageError(`${id.source} must not be blank`);

  const ttl = pick('--ttl', '-t', 'ETCD_LOCK_TTL');
  const ttlSeconds = ttl ? wholeSeconds(ttl.value, ttl.source) : DEFAULT_TTL_SECONDS;

  const refresh = pick('--refresh', '-r', 'ETCD_LOCK_REFRESH');
  const refreshIntervalMs = refresh ? seconds(refresh.value, refresh.source) * 1000 : (ttlSeconds * 1000) / 2;
  if (refresh && (refreshIntervalMs <= 0 || refreshIntervalMs >= ttlSeconds * 1000)) {
    throw new UsageError(`${refresh.source} must be above 0 and below the TTL (${ttlSeconds} s), got ${refresh.value}`);
  }

  const wait = parsed['--wait'];
  const waitMs = wait === undefined ? undefined : seconds(wait, '-w/--wait') * 1000;
  if (waitMs !== undefined && waitMs > 2 ** 31 - 1) throw new UsageError(`-w/--wait is too long, got ${wait}`);

  const killTimeout = parsed['--kill-timeout'];
  const killTimeoutMs = killTimeout === undefined ? undefined : seconds(killTimeout, '--kill-timeout') * 1000;

  const etcd = pick('--etcd', '-e', 'ETCD_LOCK_HOST');
  const endpoints = parseEndpoints(etcd?.value ?? DEFAULT_ENDPOINT, etcd?.source ?? 'the default endpoint');

  const [command, ...args] = parsed._;
  if (command === undefined || command === '') throw new UsageError('missing the command to run');

  return {
    kind: 'run',
    config: {
      endpoints,
      key: key.value,
      id: id?.value ?? hostname(),
      ttlSeconds,
      refreshIntervalMs,
      node: parsed['--node'] ?? truthy(env['ETCD_CHILD_IS_NODE'], 'ETCD_CHILD_IS_NODE'),
      verbose: parsed['--verbose'] ?? false,
      waitMs,
      killTimeoutMs,
      command,
      args,
    },
  };
}

/** The flags that only mean something when running a command: refused with --status rather than ignored. */
const RUN_ONLY_FLAGS = {
  '--id': '-i/--id',
  '--ttl': '-t/--ttl',
  '--refresh': '-r/--refresh',
  '--wait': '-w/--wait',
  '--kill-timeout': '--kill-timeout',
  '--node': '-n/--node',
} as const;

/** `--status`: the key and endpoints only; the environment's other defaults (ETCD_LOCK_TTL...) play no part. */
function statusConfig(
  parsed: arg.Result<typeof SPEC>,
  key: string,
  pick: (flag: '--etcd', short: string, envName: string) => { value: string; source: string } | undefined,
): StatusConfig {
  for (const [flag, name] of Object.entries(RUN_ONLY_FLAGS)) {
    if (parsed[flag as keyof typeof RUN_ONLY_FLAGS] !== undefined) {
      throw new UsageError(`--status takes no ${name}: it only reads who holds the lock`);
    }
  }
  const [command] = parsed._;
  if (command !== undefined) throw new UsageError(`--status takes no command, got ${JSON.stringify(command)}`);
  const etcd = pick('--etcd', '-e', 'ETCD_LOCK_HOST');
  return {
    endpoints: parseEndpoints(etcd?.value ?? DEFAULT_ENDPOINT, etcd?.source ?? 'the default endpoint'),
    key,
    json: parsed['--json'] ?? false,
    verbose: parsed['--verbose'] ?? false,
  };
}

/**
 * `host:port`, `host`, `[v6]:port`, `http://host:port` or `https://host:port`, comma-separated, to etcd3
 * hosts with an explicit scheme and port (2379 when left out).
 * @throws UsageError naming the endpoint that is malformed
 */
export function parseEndpoints(value: string, source: string): string[] {
  const entries = value.split(',').map((entry) => entry.trim());
  const endpoints = entries.map((entry) => {
    if (entry === '') throw new UsageError(`${source} has an empty endpoint: ${JSON.stringify(value)}`);
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(entry) ? entry : `http://${entry}`;
    let url: URL;
    try {
      url = new URL(withScheme);
    } catch {
      throw new UsageError(`${source} has a malformed endpoint: ${JSON.stringify(entry)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new UsageError(`${source}: endpoint ${JSON.stringify(entry)} must use http:// or https://`);
    }
    if (url.hostname === '' || url.username || url.password || url.search || url.hash || url.pathname !== '/') {
      throw new UsageError(
        `${source}: endpoint ${JSON.stringify(entry)} must be host:port, with no user, path or query`,
      );
    }
    // URL drops a port equal to the scheme's default (80, 443), so read the port from what was written.
    const authority = withScheme.slice(withScheme.indexOf('//') + 2).replace(/\/$/, '');
    const portText = /^(?:\[[^\]]*\]|[^:[\]]*)(?::(\d*))?$/.exec(authority);
    if (!portText) throw new UsageError(`${source} has a malformed endpoint: ${JSON.stringify(entry)}`);
    const port = portText[1] === undefined ? 2379 : Number(portText[1]);
    if (portText[1] === '' || !(port >= 1 && port <= 65535)) {
      throw new UsageError(`${source}: endpoint ${JSON.stringify(entry)} needs a port from 1 to 65535`);
    }
    return `${url.protocol}//${url.hostname}:${port}`;
  });
  const schemes = new Set(endpoints.map((endpoint) => endpoint.slice(0, endpoint.indexOf(':'))));
  if (schemes.size > 1) throw new UsageError(`${source} mixes http:// and https:// endpoints`);
  return endpoints;
}

function wholeSeconds(value: string, source: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > MAX_TTL_SECONDS) {
    throw new UsageError(`${source} must be a whole number of seconds from 1 to ${MAX_TTL_SECONDS}, got ${value}`);
  }
  return Number(value);
}

function seconds(value: string, source: string): number {
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(value)) {
    throw new UsageError(`${source} must be a number of seconds >= 0, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** `ETCD_CHILD_IS_NODE`: unset, empty, 0, false or no mean off; 1, true or yes mean on. */
function truthy(value: string | undefined, name: string): boolean {
  if (value === undefined) return false;
  const normalized = value.trim().toLowerCase();
  if (['', '0', 'false', 'no', 'off'].includes(normalized)) return false;
  if (['1', 'true', 'yes', 'on'].includes(normalized)) return true;
  throw new UsageError(`${name} must be 1/true/yes or 0/false/no, got ${JSON.stringify(value)}`);
}
