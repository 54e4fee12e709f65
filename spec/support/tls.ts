/**
 * Throwaway certificates for TLS tests, made with the `openssl` command line into a temporary directory: a CA, a
 * server certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1, which gRPC checks against the address it dials),
 * a client certificate signed by the same CA, and a second CA that signed none of them (to play the wrong CA).
 *
 * P-256 keys rather than RSA: generated in milliseconds, and both etcd (Go) and Node.js take them.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The PEM files {@link makeCertificates} wrote; every path is absolute. */
export interface TestCertificates {
  readonly dir: string;
  /** The CA that signed the server and client certificates. */
  readonly caFile: string;
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  /** A client certificate (CN `etcd-lock-test-client`), good for etcd's `--client-cert-auth`. */
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  /** A self-signed CA that signed nothing here: trusting only it must fail the handshake. */
  readonly otherCaFile: string;
  /** Removes the directory. Idempotent. */
  remove(): Promise<void>;
}

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  try {
    await run('openssl', [...args], { cwd, timeout: 30_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args.join(' ')} failed: ${stderr.trim() || String(error)}`, { cause: error });
  }
}

const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function selfSignedCa(dir: string, name: string, commonName: string): Promise<void> {
  await openssl(
    [
      ...['req', '-x509', ...NEW_KEY, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2'],
      ...['-subj', `/CN=${commonName}`],
      ...['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    ],
    dir,
  );
}

/** A key and a certificate for `commonName`, signed by `ca`, with the extensions in `extensions` (openssl syntax). */
async function signed(dir: string, name: string, commonName: string, extensions: string): Promise<void> {
  await openssl(
    ['req', ...NEW_KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${commonName}`],
    dir,
  );
  await writeFile(path.join(dir, `${name}.ext`), extensions);
  await openssl(
    [
      ...['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial'],
      ...['-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`],
    ],
    dir,
  );
}

/**
 * Makes a CA, a server certificate for 127.0.0.1, a client certificate and an unrelated CA in a fresh temporary
 * directory.
 *
 * @example
 * const certs = await makeCertificates();
 * after(() => certs.remove());
 * const node = await startEtcd({ clientTls: certs });
 */
export async function makeCertificates(): Promise<TestCertificates> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'etcd-lock-tls-'));
  try {
    await selfSignedCa(dir, 'ca', 'etcd-lock-test-ca');
    await selfSignedCa(dir, 'other-ca', 'etcd-lock-test-other-ca');
    // clientAuth too: etcd 3.4's gRPC gateway dials its own server with the server certificate.
    await signed(
      dir,
      'server',
      '127.0.0.1',
      'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n',
    );
    await signed(
      dir,
      'client',
      'etcd-lock-test-client',
      'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n',
    );
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const file = (name: string) => path.join(dir, name);
  return {
    dir,
    caFile: file('ca.pem'),
    serverCertFile: file('server.pem'),
    serverKeyFile: file('server.key'),
    clientCertFile: file('client.pem'),
    clientKeyFile: file('client.key'),
    otherCaFile: file('other-ca.pem'),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
