/**
 * Secure connections against real etcd servers: one that speaks only TLS and asks every client for a certificate
 * signed by the test CA (`--client-cert-auth`), and one with authentication enabled, where user alice may read and
 * write only under this file's prefix. etcdlocker (the built binary) and the library over a configured `Etcd3`.
 *
 * Every failure case checks the exit code, a message that says what to fix, and that nothing was left in etcd.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import { lock$ } from '../../lib/lock-stream.js';
import type { HeldState } from '../../lib/state.js';
import { withLock } from '../../lib/with-lock.js';
import {
  type FakeEtcd,
  runLocker,
  startFakeEtcd,
  startLocker,
  tempDir,
  waitForFile,
  writeScript,
} from '../support/cli.js';
import { etcdctl, type EtcdNode, startEtcd, uniquePrefix } from '../support/etcd.js';
import { record } from '../support/recorder.js';
import { makeCertificates, type TestCertificates } from '../support/tls.js';

/** The keys under `prefix` and every lease, as seen by a client allowed to see them all. */
async function leftovers(client: Etcd3, prefix: string): Promise<{ keys: string[]; leases: string[] }> {
  const keys = await client.getAll().prefix(prefix).keys();
  const { leases } = await client.leaseClient.leaseLeases();
  return { keys, leases: leases.map((lease) => String(lease.ID)) };
}

/** What `sh -c` prints for the tests below: the child saw the lock's variables. */
const PRINT_GRANT = ['--', 'sh', '-c', 'echo "rev=$ETCD_LOCK_REV holder=$ETCD_LOCK_HOLDER_KEY"'];

/**
 * A command that writes its `ETCD_LOCK_REV` to `<dir>/held`, then waits until `<dir>/go` exists, or until `dir` is
 * gone: removing the directory ends it even when a failed test has killed its etcdlocker.
 */
function holdScript(dir: ReturnType<typeof tempDir>): string {
  return writeScript(
    dir.file('hold.sh'),
    'echo "$ETCD_LOCK_REV" > "$1/held"\nwhile [ ! -e "$1/go" ] && [ -d "$1" ]; do sleep 0.05; done',
  );
}

function assertGranted(stdout: string, key: string): void {
  assert.match(stdout, new RegExp(`^rev=\\d+ holder=${key}/[0-9a-f]+\\n$`));
}

describe('etcd over TLS with client certificates', () => {
  let certs: TestCertificates;
  let node: EtcdNode;
  let admin: Etcd3;
  const prefix = uniquePrefix('tls');
  const read = (file: string) => readFileSync(file);
  const tlsFlags = () => [
    ...['--cacert', certs.caFile, '--cert', certs.clientCertFile, '--cert-key', certs.clientKeyFile],
  ];

  before(async () => {
    certs = await makeCertificates();
    node = await startEtcd({ clientTls: certs });
    admin = new Etcd3({
      hosts: node.clientUrl,
      credentials: {
        rootCertificate: read(certs.caFile),
        certChain: read(certs.clientCertFile),
        privateKey: read(certs.clientKeyFile),
      },
    });
  });
  after(async () => {
    admin?.close();
    await node?.stop();
    await certs?.remove();
  });

  it('etcdlocker takes the lock and runs the command over TLS (--cacert, --cert, --cert-key), then releases', async () => {
    const key = `${prefix}/flags`;
    const r = await runLocker(['-v', '-e', node.endpoint, ...tlsFlags(), '-k', key, ...PRINT_GRANT]);
    assert.equal(r.code, 0, r.stderr);
    assertGranted(r.stdout, key);
    assert.ok(
      r.stderr.includes(
        `connecting to https://${node.endpoint} (TLS: CA ${certs.caFile}, client certificate ${certs.clientCertFile})`,
      ),
      r.stderr,
    );
    assert.doesNotMatch(r.stderr, /DeprecationWarning/, 'no Node.js warning in the output');
    assert.deepEqual(await leftovers(admin, prefix), { keys: [], leases: [] });
  });

  it('takes the same files from ETCD_LOCK_CACERT, ETCD_LOCK_CERT and ETCD_LOCK_CERT_KEY, for --status too', async () => {
    const key = `${prefix}/env`;
    const env = {
      ETCD_LOCK_HOST: node.endpoint,
      ETCD_LOCK_CACERT: certs.caFile,
      ETCD_LOCK_CERT: certs.clientCertFile,
      ETCD_LOCK_CERT_KEY: certs.clientKeyFile,
    };
    const r = await runLocker(['-k', key, ...PRINT_GRANT], env);
    assert.equal(r.code, 0, r.stderr);
    assertGranted(r.stdout, key);

    const holder = record((onRelease) => lock$(admin, key, { id: 'tls-holder', ttl: 30, onRelease }));
    try {
      const held = (await holder.next('held')) as HeldState;
      const status = await runLocker(['--status', '-k', key], env);
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, new RegExp(`^${key}: held by tls-holder \\(fencing token ${held.fencingToken}\\)`));
    } finally {
      await holder.release();
    }
    assert.deepEqual(await leftovers(admin, prefix), { keys: [], leases: [] });
  });

  it('a CA that did not sign etcd\'s certificate: exit 1, "not signed by a CA in --cacert <file>", nothing left', async () => {
    const key = `${prefix}/wrong-ca`;
    const flags = ['--cacert', certs.otherCaFile, '--cert', certs.clientCertFile, '--cert-key', certs.clientKeyFile];
    const r = await runLocker(['-e', node.endpoint, ...flags, '-k', key, 'true']);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`could not acquire "${key}" (etcd: https://${node.endpoint})`), r.stderr);
    assert.ok(r.stderr.includes(`etcd's certificate is not signed by a CA in --cacert ${certs.otherCaFile}`), r.stderr);
    assert.equal(r.stdout, '', 'the command never ran');
    assert.deepEqual(await leftovers(admin, prefix), { keys: [], leases: [] });
  });

  it('no client certificate: exit 1, "etcd asks for a client certificate", nothing left', async () => {
    const key = `${prefix}/no-client-cert`;
    const r = await runLocker(['-e', node.endpoint, '--cacert', certs.caFile, '-k', key, 'true']);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`could not acquire "${key}" (etcd: https://${node.endpoint})`), r.stderr);
    assert.ok(r.stderr.includes('etcd asks for a client certificate: pass --cert and --cert-key'), r.stderr);
    assert.deepEqual(await leftovers(admin, prefix), { keys: [], leases: [] });
  });

  it('the library: lock$ on an Etcd3 given `credentials` and an https:// host holds the lock and releases it', async () => {
    const key = `${prefix}/library`;
    const client = new Etcd3({
      hosts: `https://${node.endpoint}`,
      credentials: {
        rootCertificate: read(certs.caFile),
        certChain: read(certs.clientCertFile),
        privateKey: read(certs.clientKeyFile),
      },
    });
    try {
      const contender = record((onRelease) => lock$(client, key, { id: 'tls-library', ttl: 10, onRelease }));
      const held = (await contender.next('held')) as HeldState;
      const { kvs } = await admin.get(held.holderKey).exec();
      assert.equal(kvs[0]?.value.toString(), 'tls-library');
      assert.equal(String(kvs[0]?.create_revision), held.fencingToken);
      await contender.release();
    } finally {
      client.close();
    }
    assert.deepEqual(await leftovers(admin, prefix), { keys: [], leases: [] });
  });
});

describe('etcd with authentication enabled', () => {
  let node: EtcdNode;
  let root: Etcd3;
  const prefix = uniquePrefix('auth');
  // Random, so that finding it anywhere in an output cannot be a coincidence.
  const password = `pw-${randomBytes(8).toString('hex')}`;
  const rootPassword = `root-${randomBytes(8).toString('hex')}`;

  before(async () => {
    // Tokens that expire after a second (the default is 5 minutes), so that the tests below outlive a few.
    node = await startEtcd({ extraArgs: ['--auth-token-ttl', '1'] });
    for (const args of [
      ['user', 'add', `root:${rootPassword}`, '--interactive=false'],
      ['role', 'add', 'root'],
      ['user', 'grant-role', 'root', 'root'],
      ['role', 'add', 'locker'],
      ['role', 'grant-permission', 'locker', 'readwrite', `${prefix}/`, '--prefix=true'],
      ['user', 'add', `alice:${password}`, '--interactive=false'],
      ['user', 'grant-role', 'alice', 'locker'],
      ['auth', 'enable'],
    ]) {
      const result = await etcdctl([node.endpoint], args);
      assert.equal(result.code, 0, `etcdctl ${args[0]} ${args[1]}: ${result.stderr}`);
    }
    root = new Etcd3({ hosts: node.endpoint, auth: { username: 'root', password: rootPassword } });
  });
  after(async () => {
    root?.close();
    await node?.stop();
  });

  it('etcdlocker --user alice:password takes the lock and runs the command; the password is in no output and not in the process title', async () => {
    const key = `${prefix}/argv`;
    const dir = tempDir('auth');
    try {
      const flags = ['-v', '-e', node.endpoint, '--user', `alice:${password}`, '-k', key];
      const locker = startLocker([...flags, holdScript(dir), dir.dir]);
      try {
        assert.match(await waitForFile(dir.file('held'), 30_000), /^\d+\n$/);
        const cmdline = readFileSync(`/proc/${locker.pid}/cmdline`, 'latin1');
        assert.ok(!cmdline.includes(password), `the password shows in /proc/<pid>/cmdline: ${cmdline}`);
        assert.match(cmdline, /^etcdlocker .*--user alice:\*\*\*/);
        writeFileSync(dir.file('go'), '');
        const r = await locker.result();
        assert.equal(r.code, 0, r.stderr);
        assert.ok(r.stderr.includes(`connecting to http://${node.endpoint} (etcd user alice)`), r.stderr);
        assert.ok(!r.stderr.includes(password), 'the password shows in the -v output');
      } finally {
        locker.kill();
      }
    } finally {
      dir.remove();
    }
    assert.deepEqual(await leftovers(root, prefix), { keys: [], leases: [] });
  });

  it('takes the password from ETCD_LOCK_PASSWORD, from --password-file, and the user from ETCD_LOCK_USER', async () => {
    const key = `${prefix}/sources`;
    const dir = tempDir('auth');
    try {
      writeFileSync(dir.file('password'), `${password}\n`);
      const runs = [
        await runLocker(['-e', node.endpoint, '--user', 'alice', '-k', key, ...PRINT_GRANT], {
          ETCD_LOCK_PASSWORD: password,
        }),
        await runLocker(['-e', node.endpoint, '--password-file', dir.file('password'), '-k', key, ...PRINT_GRANT], {
          ETCD_LOCK_USER: 'alice',
        }),
        await runLocker(['--status', '-e', node.endpoint, '-k', key], { ETCD_LOCK_USER: `alice:${password}` }),
      ];
      for (const r of runs) {
        assert.equal(r.code, 0, r.stderr);
        assert.ok(!r.stderr.includes(password));
      }
      assertGranted(runs[0]!.stdout, key);
      assertGranted(runs[1]!.stdout, key);
      assert.equal(runs[2]!.stdout, `${key}: free\n`);
    } finally {
      dir.remove();
    }
    assert.deepEqual(await leftovers(root, prefix), { keys: [], leases: [] });
  });

  it('outlives its auth token: a holder and a waiter behind it, both as alice, run in turn after the tokens expired', async () => {
    const key = `${prefix}/token-expiry`;
    const dir = tempDir('auth');
    try {
      // Keepalives every second; the TTL leaves a loss margin of 5 s, so that a loaded machine cannot lose the lock.
      const flags = ['-v', '-e', node.endpoint, '--user', `alice:${password}`, '-t', '20', '-r', '1', '-k', key];
      const holder = startLocker([...flags, holdScript(dir), dir.dir]);
      let waiter: ReturnType<typeof startLocker> | undefined;
      try {
        const holderToken = BigInt(await waitForFile(dir.file('held'), 30_000));
        waiter = startLocker([...flags, ...PRINT_GRANT]);
        await waiter.waitForStderr(/waiting behind/, 30_000);
        // Past the 1 s token TTL, with keepalives meanwhile; the release and the waiter's reads then need new tokens.
        await sleep(2_500);
        writeFileSync(dir.file('go'), '');
        const [held, waited] = await Promise.all([holder.result(), waiter.result()]);
        assert.equal(held.code, 0, held.stderr);
        assert.equal(waited.code, 0, waited.stderr);
        assertGranted(waited.stdout, key);
        assert.ok(BigInt(/rev=(\d+)/.exec(waited.stdout)![1]!) > holderToken, 'the waiter came second');
      } finally {
        holder.kill();
        waiter?.kill();
      }
    } finally {
      dir.remove();
    }
    assert.deepEqual(await leftovers(root, prefix), { keys: [], leases: [] });
  });

  it('a wrong password: exit 1, "etcd refused user alice", the password in no output, nothing left', async () => {
    const key = `${prefix}/wrong-password`;
    const wrong = `wrong-${randomBytes(8).toString('hex')}`;
    for (const args of [
      ['-v', '-e', node.endpoint, '--user', `alice:${wrong}`, '-k', key, 'true'],
      ['-v', '--status', '-e', node.endpoint, '--user', `alice:${wrong}`, '-k', key],
    ]) {
      const r = await runLocker(args);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /authentication failed, invalid user ID or password/);
      assert.ok(r.stderr.includes('etcd refused user alice with the password given'), r.stderr);
      assert.ok(!r.stderr.includes(wrong), `the password shows on stderr: ${r.stderr}`);
      assert.equal(r.stdout, '');
    }
    assert.deepEqual(await leftovers(root, prefix), { keys: [], leases: [] });
  });

  it('the library: withLock on an Etcd3 given `auth` runs the work under the lock, as alice', async () => {
    const key = `${prefix}/library`;
    const client = new Etcd3({ hosts: node.endpoint, auth: { username: 'alice', password } });
    try {
      const seen = await withLock(
        client,
        key,
        async ({ fencingToken }) => {
          const { kvs } = await root.getAll().prefix(`${key}/`).exec();
          return { fencingToken, kvs: kvs.map((kv) => [kv.value.toString(), String(kv.create_revision)]) };
        },
        { id: 'alice-library', ttl: 10 },
      );
      assert.deepEqual(seen.kvs, [['alice-library', seen.fencingToken]]);
      // The role is what limits alice: outside the prefix she may not even read.
      await assert.rejects(client.get('/outside-the-prefix').string(), /permission denied/);
    } finally {
      client.close();
    }
    assert.deepEqual(await leftovers(root, prefix), { keys: [], leases: [] });
  });
});

describe('TLS and user flags: usage errors before any connection', () => {
  // A listener standing in for etcd: a usage error must be reported before anything connects to it.
  let fake: FakeEtcd;
  let certs: TestCertificates;
  before(async () => {
    fake = await startFakeEtcd();
    certs = await makeCertificates();
  });
  after(async () => {
    fake.close();
    await certs?.remove();
  });

  const cases: Array<[string, () => string[], () => NodeJS.ProcessEnv, () => RegExp]> = [
    [
      'a --cacert file that does not exist',
      () => ['--cacert', `${certs.dir}/nope.pem`],
      () => ({}),
      () => new RegExp(`--cacert: cannot read ${certs.dir}/nope\\.pem \\(no such file\\)`),
    ],
    [
      '--cert without --cert-key',
      () => ['--cert', certs.clientCertFile],
      () => ({}),
      () => new RegExp(`--cert ${certs.clientCertFile} needs its private key: pass --cert-key`),
    ],
    [
      'an unreadable ETCD_LOCK_CERT_KEY (a directory)',
      () => ['--cert', certs.clientCertFile],
      () => ({ ETCD_LOCK_CERT_KEY: certs.dir }),
      () => new RegExp(`ETCD_LOCK_CERT_KEY: cannot read ${certs.dir} \\(it is a directory\\)`),
    ],
    [
      "a key that is not the certificate's",
      () => ['--cert', certs.clientCertFile, '--cert-key', certs.serverKeyFile],
      () => ({}),
      () => new RegExp(`--cert-key: ${certs.serverKeyFile} is not the key of the certificate in`),
    ],
    [
      'a user without a password',
      () => ['--user', 'alice'],
      () => ({}),
      () => /--user alice has no password: .* \(etcdlocker never prompts\)/,
    ],
    [
      'a --password-file that does not exist',
      () => ['--user', 'alice', '--password-file', `${certs.dir}/no-password`],
      () => ({}),
      () => new RegExp(`--password-file: cannot read ${certs.dir}/no-password \\(no such file\\)`),
    ],
  ];
  for (const [what, args, env, pattern] of cases) {
    it(`${what}: exit 64, naming the flag and the file, no connection`, async () => {
      const before = fake.connections();
      const r = await runLocker(['-e', fake.endpoint, ...args(), '-k', 'k', 'true'], env());
      assert.equal(r.code, 64, r.stderr);
      assert.match(r.stderr, pattern());
      assert.match(r.stderr, /usage: etcdlocker \[options\] \[--\] command/);
      assert.equal(fake.connections(), before, 'nothing connected to etcd');
    });
  }
});
