/**
 * The etcd3 client etcdlocker uses, with the library's fault handling for locks (lib/fault-handling.ts): etcd3's
 * defaults would let a network blip or one refused request hold back keepalives past the loss deadline.
 *
 * TLS files and a user, when given, go to etcd3 as they are (`credentials`, `auth`): the fault handling is the same.
 */
import { Etcd3 } from 'etcd3';
import { lockFaultHandling } from '../lib/fault-handling.js';
import type { Connection } from './args.js';

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
    faultHandling: lockFaultHandling(endpoints),
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
