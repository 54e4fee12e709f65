/**
 * The etcd3 client etcdlocker uses, with fault handling sized for a lock.
 *
 * etcd3's defaults put a circuit breaker on each host that stays open for 5 s after 3 failures. With a
 * short TTL, a breaker left open after a network blip holds back keepalives past the loss deadline and
 * loses a healthy lock. The lock already bounds and retries its own calls, so here a host that just
 * failed is only skipped for a moment (the next endpoint is tried), and a failed call is retried once
 * per endpoint, at once.
 *
 * TLS files and a user, when given, go to etcd3 as they are (`credentials`, `auth`): the fault handling is the same.
 */
import { castGrpcError, Etcd3, GRPCCancelledError, type IOptions, isRecoverableError } from 'etcd3';
import type { Connection } from './args.js';

type FaultHandling = NonNullable<IOptions['faultHandling']>;
type Policy = ReturnType<NonNullable<FaultHandling['host']>>;
type Backoff = NonNullable<FaultHandling['watchBackoff']>;

/** The longest wait before a broken watch stream is opened again. */
const WATCH_BACKOFF_MAX_MS = 1000;

/**
 * 50 ms, doubling up to {@link WATCH_BACKOFF_MAX_MS}. etcd3's default waits up to 30 s: a waiter whose watch
 * broke could miss its turn that long, and the pending timer kept a finished process alive.
 */
function watchBackoff(durationMs = 50): Backoff {
  return { duration: durationMs, next: () => watchBackoff(Math.min(durationMs * 2, WATCH_BACKOFF_MAX_MS)) };
}
type Call = (context: { signal: AbortSignal }) => unknown;

/** How long a host that failed is passed over in favour of the others. */
export const HOST_COOL_DOWN_MS = 500;

function recoverable(err: unknown): boolean {
  return err instanceof Error && isRecoverableError(castGrpcError(err));
}

/**
 * A cockatiel-shaped policy (the interface etcd3 takes), without depending on cockatiel: etcd3 only
 * calls `execute`.
 */
function policy(execute: (call: Call, signal: AbortSignal) => Promise<unknown>): Policy {
  const noEvent = () => ({ dispose: () => undefined });
  return {
    onSuccess: noEvent,
    onFailure: noEvent,
    execute: (call: Call, signal?: AbortSignal) => execute(call, signal ?? new AbortController().signal),
  } as unknown as Policy;
}

/** A call not sent because its host failed a moment ago: never the error to report if a real one came first. */
class HostSkippedError extends Error {
  constructor() {
    super('skipped: this etcd endpoint failed a moment ago');
  }
}

/**
 * Whether a failure says the host is in trouble. A cancelled call does not: etcd3 reports the streams it (or we)
 * cancel as failures of their host (the last watch's stream when that watch goes, a keepalive stream we drop), and
 * skipping the host then failed the lease revoke that follows a loss four times over (760 ms, 6 runs of 8).
 */
function hostFailed(err: unknown): boolean {
  return recoverable(err) && !(castGrpcError(err as Error) instanceof GRPCCancelledError);
}

/** Skips the host for a moment after it failed; etcd3 then tries the next endpoint. */
export function hostPolicy(): Policy {
  let skipUntil = 0;
  return policy(async (call, signal) => {
    if (performance.now() < skipUntil) throw new HostSkippedError();
    try {
      return await call({ signal });
    } catch (err) {
      if (hostFailed(err)) skipUntil = performance.now() + HOST_COOL_DOWN_MS;
      throw err;
    }
  });
}

/**
 * Retries a call that failed recoverably, once per endpoint, so a dead endpoint is not the last word. When every
 * attempt fails, the last real failure is reported (say, a deadline exceeded), not a later skip of that host.
 */
function retryPolicy(attempts: number): Policy {
  return policy(async (call, signal) => {
    let lastFailure: unknown;
    for (let attempt = 1; ; attempt++) {
      try {
        return await call({ signal });
      } catch (err) {
        const skipped = err instanceof HostSkippedError;
        if (!skipped) lastFailure = err;
        if (attempt >= attempts || !(skipped || recoverable(err)) || signal.aborted) throw lastFailure ?? err;
      }
    }
  });
}

/**
 * An etcd3 client on `endpoints` with etcdlocker's fault handling, speaking TLS with `security.tls` (and to
 * `https://` endpoints) and logging in as `security.auth`.
 *
 * @example
 * const client = createClient(config.endpoints, config); // config from parseArgs()
 */
export function createClient(endpoints: string[], security: Pick<Connection, 'tls' | 'auth'> = {}): Etcd3 {
  const { tls, auth } = security;
  if (tls || endpoints.some((endpoint) => endpoint.startsWith('https:'))) {
    // grpc-js names the server it dials in TLS's SNI even when it is an IP address, and Node.js then prints
    // DEP0123 on stderr, once, in the middle of etcdlocker's output. Nothing a user can act on: keep it quiet.
    process.noDeprecation = true;
  }
  return new Etcd3({
    hosts: endpoints,
    dialTimeout: 3000,
    ...(tls && {
      credentials: {
        // etcd3 types it as required but hands it to grpc-js's createSsl, where none means Node.js's usual roots.
        rootCertificate: tls.ca?.pem as Buffer,
        ...(tls.client && { certChain: tls.client.cert.pem, privateKey: tls.client.key.pem }),
      },
    }),
    ...(auth && { auth: { username: auth.username, password: auth.password } }),
    faultHandling: {
      host: () => hostPolicy(),
      global: retryPolicy(endpoints.length + 1),
      watchBackoff: watchBackoff(),
    },
  });
}

/**
 * How etcdlocker connects, for `-v`: the endpoints, the TLS files and the user, never the password.
 *
 * @example
 * describeConnection(config); // 'https://10.0.0.1:2379 (TLS: CA ca.pem, client certificate me.pem; etcd user alice)'
 */
export function describeConnection(connection: Connection): string {
  const { tls, auth } = connection;
  const parts = [
    ...(tls ? [`TLS: CA ${tls.ca?.file ?? "Node.js's usual roots"}`] : []),
    ...(tls?.client ? [`client certificate ${tls.client.cert.file}`] : []),
  ];
  const security = [parts.join(', '), ...(auth ? [`etcd user ${auth.username}`] : [])].filter(Boolean).join('; ');
  return `${connection.endpoints.join(',')}${security ? ` (${security})` : ''}`;
}

/**
 * What to check when a connection failed for a reason of TLS or authentication, in words a user can act on; the
 * gRPC message alone ("14 UNAVAILABLE: No connection established...") names neither the flag nor the file.
 * Undefined when the failure is something else (etcd down, a timeout).
 *
 * @example
 * connectionHint(err, config); // "etcd's certificate is not signed by a CA in --cacert /tmp/other-ca.pem"
 */
export function connectionHint(err: unknown, config: Connection & { key: string }): string | undefined {
  const text = messages(err);
  const { tls, auth } = config;
  if (/unable to verify|self[- ]signed certificate|unable to get (local )?issuer|certificate has expired/i.test(text)) {
    return tls?.ca
      ? `etcd's certificate is not signed by a CA in --cacert ${tls.ca.file} (or it has expired)`
      : "etcd's certificate is not signed by a CA Node.js knows: pass --cacert with the CA that signed it";
  }
  if (/Hostname\/IP does not match|ERR_TLS_CERT_ALTNAME/i.test(text)) {
    return "etcd's certificate does not name the host in the endpoint (its subjectAltName)";
  }
  if (/alert (bad certificate|certificate required|unknown ca|certificate unknown)/i.test(text)) {
    return tls?.client
      ? `etcd refused the client certificate ${tls.client.cert.file}: it must be signed by a CA etcd trusts`
      : 'etcd asks for a client certificate: pass --cert and --cert-key';
  }
  if (/before secure TLS connection was established|wrong version number/i.test(text)) {
    return 'the endpoint does not speak TLS: is it an http:// endpoint?';
  }
  if (/authentication failed/i.test(text)) {
    return `etcd refused user ${auth?.username ?? '(none)'} with the password given`;
  }
  if (/user name is empty/i.test(text)) return 'etcd has authentication enabled: pass --user';
  if (/authentication is not enabled/i.test(text)) return 'etcd has authentication disabled: drop --user';
  if (/permission denied/i.test(text)) {
    const user = auth ? `etcd user ${auth.username}` : 'this client';
    return `${user} may not use the lock's keys: grant its role readwrite on the prefix ${config.key}/`;
  }
  return undefined;
}

/** The messages of an error and of its causes, joined. */
function messages(err: unknown): string {
  const seen: string[] = [];
  for (let current = err; current instanceof Error && seen.length < 10; current = current.cause) {
    seen.push(current.message);
  }
  return seen.join('\n');
}
