/**
 * etcdlocker's command line: flags, their environment defaults, validation and help. Loads neither etcd3
 * nor the lock itself, so `--help`, `--version` and usage errors answer at once.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import arg from 'arg';
import { MAX_TTL_SECONDS } from '../lib/options.js';

/** How to reach etcd, the same for a run and for `--status`. */
export interface Connection {
  /** etcd3 `hosts`: `http://host:port` or `https://host:port`, one per endpoint. */
  endpoints: string[];
  /** `--cacert`, `--cert`, `--cert-key`: read and checked; TLS to every endpoint. */
  tls?: TlsFiles;
  /** `--user`: etcd's user and password authentication. */
  auth?: PasswordAuth;
}

/** A PEM file named on the command line (or in the environment), and what it holds. */
export interface PemFile {
  /** The path as given, for messages. */
  file: string;
  pem: Buffer;
}

export interface TlsFiles {
  /** `--cacert`: the CA certificates that may sign etcd's certificate; without it, Node.js's usual roots. */
  ca?: PemFile;
  /** `--cert` and `--cert-key`: our client certificate and its key, for etcd's `--client-cert-auth`. */
  client?: { cert: PemFile; key: PemFile };
}

export interface PasswordAuth {
  username: string;
  /** Never printed: not with `-v`, not in an error, not in the process title. */
  password: string;
  /** The password was written on the command line (`--user name:password`), so the process title must hide it. */
  passwordInArgv: boolean;
}

/** Everything etcdlocker needs to run, validated. */
export interface Config extends Connection {
  key: string;
  id: string;
  ttlSeconds: number;
  refreshIntervalMs: number;
  /** `-n`: fork a Node.js child and ping it over IPC. */
  node: boolean;
  verbose: boolean;
  /** `--log-json`: every event as a JSON line on stderr instead of `-v`'s text (see cli/log.ts). */
  logJson: boolean;
  /** `-w`: give up acquiring after this long; 0 tries once; undefined waits as long as it takes. */
  waitMs: number | undefined;
  /** `--kill-timeout`: grace between SIGTERM and SIGKILL when the lock is lost; undefined = as long as the lease allows. */
  killTimeoutMs: number | undefined;
  /** `--limit`: a semaphore of this many holders; 1 is a lock. */
  limit: number;
  command: string;
  args: string[];
}

/** `--status`: what etcdlocker needs to show who holds a lock. */
export interface StatusConfig extends Connection {
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
  -l, --limit n            a semaphore: up to n commands hold it at once, default 1; every
                           etcdlocker on the key must use the same n [ETCD_LOCK_LIMIT]
  -n, --node               the command is a Node.js module: fork it and ping it over IPC every refresh
                           period with {ping: x}; it must answer {pong: x} within the TTL, or it is
                           killed and etcdlocker exits 4 [ETCD_CHILD_IS_NODE]
      --cacert file        TLS: the CA certificates (PEM) that sign etcd's certificate; host:port
                           endpoints then mean https:// [ETCD_LOCK_CACERT]
      --cert file          TLS client certificate (PEM), with --cert-key [ETCD_LOCK_CERT]
      --cert-key file      the client certificate's private key (PEM, unencrypted) [ETCD_LOCK_CERT_KEY]
      --user name[:pass]   etcd user; the password after the colon, else from --password-file or
                           ETCD_LOCK_PASSWORD; never prompted for [ETCD_LOCK_USER]
      --password-file file read the password from this file (one trailing newline is dropped)
                           [ETCD_LOCK_PASSWORD_FILE]
  -v, --verbose            progress on stderr
      --log-json           every event (acquired, refreshed, lost, the command's start and end,
                           released, exit...) as one JSON object per line on stderr, errors too,
                           instead of -v's text; usage errors stay text [ETCD_LOCK_LOG_JSON]
      --status             show who holds the lock (-k) and who waits, with fencing tokens and lease
                           TTLs left, then exit 0 (1 if etcd cannot be read); takes no command, and
                           creates no key or lease
      --json               with --status: JSON on stdout instead of a table
  -h, --help               this help
      --version            print the version

The command's environment gets ETCD_LOCK_REV (the fencing token: the lock key's create revision),
ETCD_LOCK_KEY, ETCD_LOCK_ID and ETCD_LOCK_HOLDER_KEY (its own key in etcd, to fence writes with). SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to it; a second SIGINT
or SIGTERM kills it at once. A signal while waiting for the lock cancels the wait. Ctrl-Z (SIGTSTP) stops the
command with etcdlocker; continued, the command goes on only if etcd still has the lease, else it is killed (exit 2).

Exit codes: the command's own, or 128 + signal number when it (or etcdlocker) dies by a signal;
  1  acquiring failed (etcd unreachable, -w timed out, lock busy with -w 0)
  2  the lock was lost while the command ran
  3  the command could not be spawned or killed
  4  -n: the child's IPC ping failed
  64 bad usage
  70 etcdlocker failed unexpectedly (a bug): the command was stopped, the lock released

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
  '--limit': String,
  '--cacert': String,
  '--cert': String,
  '--cert-key': String,
  '--user': String,
  '--password-file': String,
  '--node': Boolean,
  '--verbose': Boolean,
  '--log-json': Boolean,
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
  '-l': '--limit',
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

  const pick: PickValue = (flag, short, envName) => {
    const fromFlag = parsed[flag];
    if (typeof fromFlag === 'string') return { value: fromFlag, source: short ? `${short}/${flag}` : flag };
    const fromEnv = env[envName];
    return fromEnv === undefined || fromEnv === '' ? undefined : { value: fromEnv, source: envName };
  };

  const key = pick('--key', '-k', 'ETCD_LOCK_KEY');
  if (!key) throw new UsageError('missing the lock key: pass -k/--key or set ETCD_LOCK_KEY');
  if (key.value.trim() === '') throw new UsageError(`${key.source} must not be blank`);
  if (parsed['--status']) return { kind: 'status', config: statusConfig(parsed, key.value, pick, env) };
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

  const limitValue = pick('--limit', '-l', 'ETCD_LOCK_LIMIT');
  if (limitValue && !/^[1-9]\d{0,5}$/.test(limitValue.value)) {
    throw new UsageError(`${limitValue.source} must be a whole number from 1 to 999999, got ${limitValue.value}`);
  }
  const limit = limitValue ? Number(limitValue.value) : 1;

  const connection = parseConnection(parsed, pick, env);

  const [command, ...args] = parsed._;
  if (command === undefined || command === '') throw new UsageError('missing the command to run');

  return {
    kind: 'run',
    config: {
      ...connection,
      key: key.value,
      id: id?.value ?? hostname(),
      ttlSeconds,
      refreshIntervalMs,
      node: parsed['--node'] ?? truthy(env['ETCD_CHILD_IS_NODE'], 'ETCD_CHILD_IS_NODE'),
      verbose: parsed['--verbose'] ?? false,
      logJson: parsed['--log-json'] ?? truthy(env['ETCD_LOCK_LOG_JSON'], 'ETCD_LOCK_LOG_JSON'),
      waitMs,
      killTimeoutMs,
      limit,
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
  '--limit': '-l/--limit',
  '--node': '-n/--node',
  '--log-json': '--log-json',
} as const;

type Flag = keyof typeof SPEC & `--${string}`;
/** A flag's value, else its environment variable's (unless empty), with where it came from for messages. */
type PickValue = (flag: Flag, short: string, envName: string) => { value: string; source: string } | undefined;

/**
 * `--status`: the key and how to reach etcd only; the environment's other defaults (ETCD_LOCK_TTL...) play no
 * part.
 */
function statusConfig(
  parsed: arg.Result<typeof SPEC>,
  key: string,
  pick: PickValue,
  env: NodeJS.ProcessEnv,
): StatusConfig {
  for (const [flag, name] of Object.entries(RUN_ONLY_FLAGS)) {
    if (parsed[flag as keyof typeof RUN_ONLY_FLAGS] !== undefined) {
      throw new UsageError(`--status takes no ${name}: it only reads who holds the lock`);
    }
  }
  const [command] = parsed._;
  if (command !== undefined) throw new UsageError(`--status takes no command, got ${JSON.stringify(command)}`);
  return {
    ...parseConnection(parsed, pick, env),
    key,
    json: parsed['--json'] ?? false,
    verbose: parsed['--verbose'] ?? false,
  };
}

/**
 * Endpoints, TLS files and user, read and checked before any connection: a missing or unreadable file, a client
 * certificate without its key, a user without a password are usage errors. With TLS files, `host:port` endpoints
 * mean `https://`, and an explicit `http://` one is refused (etcd3 would speak TLS to it all the same).
 */
function parseConnection(parsed: arg.Result<typeof SPEC>, pick: PickValue, env: NodeJS.ProcessEnv): Connection {
  const tls = parseTls(pick);
  const etcd = pick('--etcd', '-e', 'ETCD_LOCK_HOST');
  const source = etcd?.source ?? 'the default endpoint';
  const endpoints = parseEndpoints(etcd?.value ?? DEFAULT_ENDPOINT, source, tls ? 'https' : 'http');
  const plain = endpoints.find((endpoint) => endpoint.startsWith('http://'));
  if (tls && plain) {
    throw new UsageError(
      `${source}: endpoint ${JSON.stringify(plain)} is plain http, but ${tls.source} asks for TLS: ` +
        'write https:// or leave the scheme out',
    );
  }
  const auth = parseAuth(parsed, pick, env);
  return { endpoints, ...(tls && { tls: tls.files }), ...(auth && { auth }) };
}

function parseTls(pick: PickValue): { files: TlsFiles; source: string } | undefined {
  const caFile = pick('--cacert', '', 'ETCD_LOCK_CACERT');
  const certFile = pick('--cert', '', 'ETCD_LOCK_CERT');
  const keyFile = pick('--cert-key', '', 'ETCD_LOCK_CERT_KEY');
  if (certFile && !keyFile) {
    throw new UsageError(
      `${certFile.source} ${certFile.value} needs its private key: pass --cert-key or set ETCD_LOCK_CERT_KEY`,
    );
  }
  if (keyFile && !certFile) {
    throw new UsageError(`${keyFile.source} ${keyFile.value} needs its certificate: pass --cert or set ETCD_LOCK_CERT`);
  }
  const files: TlsFiles = {};
  if (caFile) files.ca = certificateFile(caFile.value, caFile.source);
  if (certFile && keyFile) {
    const cert = certificateFile(certFile.value, certFile.source);
    const key = readPem(keyFile.value, keyFile.source);
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey(key.pem);
    } catch (err) {
      const encrypted = (err as { code?: unknown }).code === 'ERR_MISSING_PASSPHRASE';
      throw new UsageError(
        `${keyFile.source}: ${keyFile.value} ` +
          (encrypted
            ? 'is encrypted: etcdlocker asks for no passphrase, give it an unencrypted key'
            : 'holds no private key in PEM'),
      );
    }
    if (!new X509Certificate(cert.pem).checkPrivateKey(privateKey)) {
      throw new UsageError(
        `${keyFile.source}: ${keyFile.value} is not the key of the certificate in ${certFile.value} (${certFile.source})`,
      );
    }
    files.client = { cert, key };
  }
  const source = caFile?.source ?? certFile?.source;
  return source === undefined ? undefined : { files, source };
}

const READ_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'it is a directory',
};

/** The whole file; a usage error naming the flag and the file when it cannot be read or is empty. */
function readFile(file: string, source: string): Buffer {
  let content: Buffer;
  try {
    content = readFileSync(file);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const why = READ_ERRORS[String(code)] ?? (err instanceof Error ? err.message : String(err));
    throw new UsageError(`${source}: cannot read ${file} (${why})`);
  }
  if (content.length === 0) throw new UsageError(`${source}: ${file} is empty`);
  return content;
}

function readPem(file: string, source: string): PemFile {
  const pem = readFile(file, source);
  if (!pem.includes('-----BEGIN ')) throw new UsageError(`${source}: ${file} is not a PEM file (no "-----BEGIN")`);
  return { file, pem };
}

/** A PEM file whose first certificate parses. */
function certificateFile(file: string, source: string): PemFile {
  const pemFile = readPem(file, source);
  try {
    new X509Certificate(pemFile.pem);
  } catch {
    throw new UsageError(`${source}: ${file} holds no certificate in PEM`);
  }
  return pemFile;
}

/**
 * `--user name[:password]`. The password comes from the first of: after the colon in `--user`, `--password-file`,
 * after the colon in `ETCD_LOCK_USER`, `ETCD_LOCK_PASSWORD_FILE`, `ETCD_LOCK_PASSWORD`. No prompt: a user without
 * a password is a usage error. No message here ever holds the password.
 */
function parseAuth(parsed: arg.Result<typeof SPEC>, pick: PickValue, env: NodeJS.ProcessEnv): PasswordAuth | undefined {
  const user = pick('--user', '', 'ETCD_LOCK_USER');
  const passwordFile = pick('--password-file', '', 'ETCD_LOCK_PASSWORD_FILE');
  if (!user) {
    if (parsed['--password-file'] !== undefined) {
      throw new UsageError('--password-file goes with a user: pass --user or set ETCD_LOCK_USER');
    }
    return undefined; // ETCD_LOCK_PASSWORD(_FILE) alone: nobody to log in as, so nothing to use it for
  }
  const colon = user.value.indexOf(':');
  const username = colon === -1 ? user.value : user.value.slice(0, colon);
  if (username.trim() === '') throw new UsageError(`${user.source} has an empty user name`);
  const fromCommandLine = user.source === '--user';
  if (colon !== -1 && (fromCommandLine || parsed['--password-file'] === undefined)) {
    // A flag wins over the environment: ETCD_LOCK_USER=name:password gives way to --password-file.
    if (colon === user.value.length - 1) {
      throw new UsageError(`${user.source}: the password after "${username}:" is empty`);
    }
    if (fromCommandLine && parsed['--password-file'] !== undefined) {
      throw new UsageError('--user gives a password and so does --password-file: keep one');
    }
    return { username, password: user.value.slice(colon + 1), passwordInArgv: fromCommandLine };
  }
  if (passwordFile) {
    const password = readFile(passwordFile.value, passwordFile.source)
      .toString('utf8')
      .replace(/\r?\n$/, '');
    if (password === '') throw new UsageError(`${passwordFile.source}: ${passwordFile.value} holds an empty password`);
    return { username, password, passwordInArgv: false };
  }
  const password = env['ETCD_LOCK_PASSWORD'];
  if (password === undefined || password === '') {
    throw new UsageError(
      `${user.source} ${username} has no password: write ${username}:password, pass --password-file or set ` +
        'ETCD_LOCK_PASSWORD (etcdlocker never prompts)',
    );
  }
  return { username, password, passwordInArgv: false };
}

/**
 * The command line with the password of `--user name:password` masked, wherever it appears: for the process title,
 * which `ps` shows to every user of the machine.
 *
 * @example
 * redactedArgv(['-k', 'k', '--user', 'alice:s3cret', 'true']); // ['-k', 'k', '--user', 'alice:***', 'true']
 */
export function redactedArgv(argv: readonly string[]): string[] {
  const mask = (value: string) => value.replace(/:.*/s, ':***');
  return argv.map((token, i) => {
    if (token.startsWith('--user=')) return `--user=${mask(token.slice('--user='.length))}`;
    return argv[i - 1] === '--user' ? mask(token) : token;
  });
}

/**
 * When the password was written on the command line, replaces the process title (what `ps` and
 * /proc/<pid>/cmdline show) with the command line less the password. Node.js overwrites the original argv memory
 * on Linux, so the password stays visible only from exec until this runs: `--password-file` or
 * `ETCD_LOCK_PASSWORD` avoid even that.
 */
export function hidePasswordFromProcessTitle(connection: Connection, argv = process.argv.slice(2)): void {
  if (connection.auth?.passwordInArgv) process.title = ['etcdlocker', ...redactedArgv(argv)].join(' ');
}

/**
 * `host:port`, `host`, `[v6]:port`, `http://host:port` or `https://host:port`, comma-separated, to etcd3
 * hosts with an explicit scheme (`defaultScheme` when left out) and port (2379 when left out).
 * @throws UsageError naming the endpoint that is malformed
 */
export function parseEndpoints(value: string, source: string, defaultScheme: 'http' | 'https' = 'http'): string[] {
  const entries = value.split(',').map((entry) => entry.trim());
  const endpoints = entries.map((entry) => {
    if (entry === '') throw new UsageError(`${source} has an empty endpoint: ${JSON.stringify(value)}`);
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(entry) ? entry : `${defaultScheme}://${entry}`;
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

/** A boolean variable (`ETCD_CHILD_IS_NODE`, `ETCD_LOCK_LOG_JSON`): unset, empty, 0, false or no mean off; 1, true or yes mean on. */
function truthy(value: string | undefined, name: string): boolean {
  if (value === undefined) return false;
  const normalized = value.trim().toLowerCase();
  if (['', '0', 'false', 'no', 'off'].includes(normalized)) return false;
  if (['1', 'true', 'yes', 'on'].includes(normalized)) return true;
  throw new UsageError(`${name} must be 1/true/yes or 0/false/no, got ${JSON.stringify(value)}`);
}
