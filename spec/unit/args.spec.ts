import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { type Config, parseArgs, parseEndpoints, redactedArgv, type StatusConfig, UsageError } from '../../cli/args.js';
import { makeCertificates, type TestCertificates } from '../support/tls.js';

function config(argv: string[], env: NodeJS.ProcessEnv = {}): Config {
  const invocation = parseArgs(argv, env);
  assert.equal(invocation.kind, 'run');
  return (invocation as { config: Config }).config;
}

function usageError(argv: string[], env: NodeJS.ProcessEnv, pattern: RegExp) {
  assert.throws(
    () => parseArgs(argv, env),
    (err: unknown) => err instanceof UsageError && pattern.test(err.message),
    `${argv.join(' ')} ${JSON.stringify(env)} should fail with ${String(pattern)}`,
  );
}

describe('etcdlocker arguments', () => {
  it('--limit / -l / ETCD_LOCK_LIMIT: a semaphore of n holders, 1 by default; anything but 1..999999 is refused', () => {
    assert.equal(config(['-k', 'k', 'true']).limit, 1);
    assert.equal(config(['-l', '3', '-k', 'k', 'true']).limit, 3);
    assert.equal(config(['--limit', '2', '-k', 'k', 'true']).limit, 2);
    assert.equal(config(['-k', 'k', 'true'], { ETCD_LOCK_LIMIT: '4' }).limit, 4);
    assert.equal(config(['-l', '5', '-k', 'k', 'true'], { ETCD_LOCK_LIMIT: '4' }).limit, 5, 'the flag wins');
    for (const bad of ['0', '-1', '1.5', 'two', '1000000']) {
      usageError(
        [`--limit=${bad}`, '-k', 'k', 'true'],
        {},
        new RegExp(`-l/--limit must be a whole number .* got ${bad}`),
      );
    }
    usageError(['-k', 'k', 'true'], { ETCD_LOCK_LIMIT: '0' }, /ETCD_LOCK_LIMIT must be a whole number/);
    usageError(['--status', '-l', '2', '-k', 'k'], {}, /-l\/--limit/);
  });

  it('--log-json / ETCD_LOCK_LOG_JSON: off by default, a boolean variable like ETCD_CHILD_IS_NODE; refused with --status', () => {
    assert.equal(config(['-k', 'k', 'true']).logJson, false);
    assert.equal(config(['--log-json', '-k', 'k', 'true']).logJson, true);
    assert.equal(config(['-k', 'k', 'true'], { ETCD_LOCK_LOG_JSON: 'yes' }).logJson, true);
    assert.equal(config(['-k', 'k', 'true'], { ETCD_LOCK_LOG_JSON: '0' }).logJson, false);
    assert.equal(
      config(['--log-json', '-k', 'k', 'true'], { ETCD_LOCK_LOG_JSON: 'no' }).logJson,
      true,
      'the flag wins',
    );
    usageError(
      ['-k', 'k', 'true'],
      { ETCD_LOCK_LOG_JSON: 'maybe' },
      /ETCD_LOCK_LOG_JSON must be 1\/true\/yes or 0\/false\/no, got "maybe"/,
    );
    usageError(['--status', '--log-json', '-k', 'k'], {}, /--status takes no --log-json/);
    // --status ignores the run's variables, this one too.
    assert.equal(parseArgs(['--status', '-k', 'k'], { ETCD_LOCK_LOG_JSON: 'maybe' }).kind, 'status');
  });

  it('fills in the 1.x defaults: localhost:2379, host name, TTL 60, refresh TTL/2, wait forever', () => {
    const c = config(['-k', '/jobs/a', 'true']);
    assert.deepEqual(c.endpoints, ['http://localhost:2379']);
    assert.equal(c.key, '/jobs/a');
    assert.equal(c.id, hostname());
    assert.equal(c.ttlSeconds, 60);
    assert.equal(c.refreshIntervalMs, 30_000);
    assert.equal(c.waitMs, undefined);
    assert.equal(c.killTimeoutMs, undefined);
    assert.equal(c.node, false);
    assert.equal(c.verbose, false);
    assert.equal(c.command, 'true');
    assert.deepEqual(c.args, []);
  });

  it('reads ETCD_LOCK_* from the environment, and flags win over it', () => {
    const env = {
      ETCD_LOCK_HOST: 'etcd1:2379,etcd2:2379',
      ETCD_LOCK_ID: 'env-id',
      ETCD_LOCK_KEY: '/env/key',
      ETCD_LOCK_TTL: '20',
      ETCD_LOCK_REFRESH: '5',
      ETCD_CHILD_IS_NODE: '1',
    };
    const fromEnv = config(['job.js'], env);
    assert.deepEqual(fromEnv.endpoints, ['http://etcd1:2379', 'http://etcd2:2379']);
    assert.equal(fromEnv.id, 'env-id');
    assert.equal(fromEnv.key, '/env/key');
    assert.equal(fromEnv.ttlSeconds, 20);
    assert.equal(fromEnv.refreshIntervalMs, 5000);
    assert.equal(fromEnv.node, true);
    const fromFlags = config(['-e', 'other:1', '-i', 'flag-id', '-k', '/flag', '-t', '9', '-r', '0.5', 'x'], env);
    assert.deepEqual(fromFlags.endpoints, ['http://other:1']);
    assert.equal(fromFlags.id, 'flag-id');
    assert.equal(fromFlags.key, '/flag');
    assert.equal(fromFlags.ttlSeconds, 9);
    assert.equal(fromFlags.refreshIntervalMs, 500);
  });

  it("stops at the command, so the command's own flags pass through, with or without --", () => {
    const plain = config(['-k', 'k', 'ls', '-la', '--color', '-k', 'not-ours']);
    assert.equal(plain.command, 'ls');
    assert.deepEqual(plain.args, ['-la', '--color', '-k', 'not-ours']);
    const dashed = config(['-k', 'k', '-v', '--', '-weird-command', '-h']);
    assert.equal(dashed.command, '-weird-command');
    assert.deepEqual(dashed.args, ['-h']);
    assert.equal(dashed.verbose, true);
  });

  it('takes -w and --kill-timeout in seconds, fractions allowed; -w 0 means try once', () => {
    const c = config(['-k', 'k', '-w', '1.5', '--kill-timeout', '0.25', 'true']);
    assert.equal(c.waitMs, 1500);
    assert.equal(c.killTimeoutMs, 250);
    assert.equal(config(['-k', 'k', '-w', '0', 'true']).waitMs, 0);
  });

  it('answers --help and --version before looking at anything else', () => {
    assert.equal(parseArgs(['--help'], {}).kind, 'help');
    assert.equal(parseArgs(['-h', '-t', 'nonsense'], {}).kind, 'help');
    assert.equal(parseArgs(['--version'], {}).kind, 'version');
  });

  const bad: Array<[string, string[], NodeJS.ProcessEnv, RegExp]> = [
    ['an unknown flag', ['--frobnicate', '-k', 'k', 'true'], {}, /unknown or unexpected option: --frobnicate/],
    ['a missing key', ['true'], {}, /missing the lock key: pass -k\/--key or set ETCD_LOCK_KEY/],
    ['a blank key', ['-k', ' ', 'true'], {}, /-k\/--key must not be blank/],
    ['a missing command', ['-k', 'k'], {}, /missing the command/],
    ['a flag without its value', ['-k'], {}, /option requires argument: -k/],
    ['TTL 0', ['-t', '0', '-k', 'k', 'true'], {}, /-t\/--ttl must be a whole number of seconds .*got 0/],
    ['a fractional TTL', ['-t', '1.5', '-k', 'k', 'true'], {}, /-t\/--ttl .*got 1\.5/],
    ['a negative TTL', ['--ttl=-5', '-k', 'k', 'true'], {}, /-t\/--ttl .*got -5/],
    ['a negative-looking TTL after -t', ['-t', '-5', '-k', 'k', 'true'], {}, /option requires argument: -t/],
    ['a huge TTL', ['-t', '99999999999', '-k', 'k', 'true'], {}, /-t\/--ttl .*got 99999999999/],
    [
      'a TTL from the environment that is not a number',
      ['-k', 'k', 'true'],
      { ETCD_LOCK_TTL: 'ten' },
      /ETCD_LOCK_TTL .*got ten/,
    ],
    [
      'refresh equal to the TTL',
      ['-t', '10', '-r', '10', '-k', 'k', 'true'],
      {},
      /-r\/--refresh must be above 0 and below the TTL \(10 s\), got 10/,
    ],
    ['refresh 0', ['-r', '0', '-k', 'k', 'true'], {}, /-r\/--refresh must be above 0/],
    [
      'refresh that is not a number',
      ['-r', 'soon', '-k', 'k', 'true'],
      {},
      /-r\/--refresh must be a number of seconds/,
    ],
    ['a negative wait', ['--wait=-1', '-k', 'k', 'true'], {}, /-w\/--wait must be a number of seconds >= 0, got "-1"/],
    ['a kill timeout that is not a number', ['--kill-timeout', 'x', '-k', 'k', 'true'], {}, /--kill-timeout must be/],
    ['a malformed endpoint', ['-e', 'a:b:c', '-k', 'k', 'true'], {}, /-e\/--etcd has a malformed endpoint: "a:b:c"/],
    [
      'an endpoint from the environment with a path',
      ['-k', 'k', 'true'],
      { ETCD_LOCK_HOST: 'http://h:1/v2' },
      /ETCD_LOCK_HOST: endpoint "http:\/\/h:1\/v2"/,
    ],
    [
      'a bad ETCD_CHILD_IS_NODE',
      ['-k', 'k', 'true'],
      { ETCD_CHILD_IS_NODE: 'maybe' },
      /ETCD_CHILD_IS_NODE must be 1\/true\/yes or 0\/false\/no, got "maybe"/,
    ],
  ];
  for (const [what, argv, env, pattern] of bad) {
    it(`rejects ${what}, naming it`, () => usageError(argv, env, pattern));
  }

  it('ignores an empty environment variable, as if unset', () => {
    const c = config(['-k', 'k', 'true'], { ETCD_LOCK_TTL: '', ETCD_LOCK_HOST: '', ETCD_CHILD_IS_NODE: '' });
    assert.equal(c.ttlSeconds, 60);
    assert.deepEqual(c.endpoints, ['http://localhost:2379']);
    assert.equal(c.node, false);
  });
});

describe('etcd endpoints', () => {
  const good: Array<[string, string[]]> = [
    ['localhost:2379', ['http://localhost:2379']],
    ['127.0.0.1', ['http://127.0.0.1:2379']],
    ['http://a:80', ['http://a:80']],
    ['https://h:443,https://g:1', ['https://h:443', 'https://g:1']],
    ['[::1]:2379', ['http://[::1]:2379']],
    [' a:1 , b:2 ', ['http://a:1', 'http://b:2']],
  ];
  for (const [input, expected] of good) {
    it(`reads ${JSON.stringify(input)}`, () => assert.deepEqual(parseEndpoints(input, '-e'), expected));
  }
  const malformed: Array<[string, RegExp]> = [
    ['h:', /needs a port/],
    ['h:0', /needs a port/],
    ['h:70000', /malformed|needs a port/],
    ['ftp://x:1', /must use http:\/\/ or https:\/\//],
    ['x:1,,y:2', /empty endpoint/],
    ['http://x:1,https://y:2', /mixes http:\/\/ and https:\/\//],
    ['user@h:1', /with no user, path or query/],
  ];
  for (const [input, pattern] of malformed) {
    it(`rejects ${JSON.stringify(input)}`, () =>
      assert.throws(
        () => parseEndpoints(input, '-e'),
        (err: unknown) => err instanceof UsageError && pattern.test(err.message),
      ));
  }
});

describe('TLS and user arguments', () => {
  // Real PEM files (openssl, a few hundred ms): the arguments are read and checked, not just passed on.
  let certs: TestCertificates;
  before(async () => {
    certs = await makeCertificates();
    writeFileSync(`${certs.dir}/password`, 's3cret:with colon\r\n');
    writeFileSync(`${certs.dir}/empty-password`, '\n');
    writeFileSync(`${certs.dir}/not-pem.txt`, 'hello\n');
    mkdirSync(`${certs.dir}/a-directory`);
  });
  after(() => certs?.remove());
  const file = (name: string) => `${certs.dir}/${name}`;

  it('reads --cacert, --cert and --cert-key, and host:port endpoints then mean https://', () => {
    const c = config([
      ...['-e', 'a:1,https://b:2', '--cacert', certs.caFile],
      ...['--cert', certs.clientCertFile, '--cert-key', certs.clientKeyFile, '-k', 'k', 'true'],
    ]);
    assert.deepEqual(c.endpoints, ['https://a:1', 'https://b:2']);
    assert.equal(c.tls?.ca?.file, certs.caFile);
    assert.deepEqual(c.tls?.ca?.pem, readFileSync(certs.caFile));
    assert.equal(c.tls?.client?.cert.file, certs.clientCertFile);
    assert.deepEqual(c.tls?.client?.key.pem, readFileSync(certs.clientKeyFile));
    assert.equal(c.auth, undefined);
    // A CA alone (no client certificate), the default endpoint:
    const caOnly = config(['--cacert', certs.caFile, '-k', 'k', 'true']);
    assert.deepEqual(caOnly.endpoints, ['https://localhost:2379']);
    assert.equal(caOnly.tls?.client, undefined);
    // No TLS flag: no TLS, unless an endpoint says https:// (etcd3 then trusts Node.js's usual roots).
    assert.equal(config(['-k', 'k', 'true']).tls, undefined);
    assert.deepEqual(config(['-e', 'https://h:1', '-k', 'k', 'true']).endpoints, ['https://h:1']);
  });

  it('takes ETCD_LOCK_CACERT, ETCD_LOCK_CERT, ETCD_LOCK_CERT_KEY; a flag wins over its variable', () => {
    const env = {
      ETCD_LOCK_CACERT: certs.otherCaFile,
      ETCD_LOCK_CERT: certs.clientCertFile,
      ETCD_LOCK_CERT_KEY: certs.clientKeyFile,
    };
    const fromEnv = config(['-k', 'k', 'true'], env);
    assert.equal(fromEnv.tls?.ca?.file, certs.otherCaFile);
    assert.equal(fromEnv.tls?.client?.cert.file, certs.clientCertFile);
    assert.equal(config(['--cacert', certs.caFile, '-k', 'k', 'true'], env).tls?.ca?.file, certs.caFile);
  });

  it('reads --user name:password (the password may hold colons) and ETCD_LOCK_USER', () => {
    assert.deepEqual(config(['--user', 'alice:pa:ss', '-k', 'k', 'true']).auth, {
      username: 'alice',
      password: 'pa:ss',
      passwordInArgv: true,
    });
    assert.deepEqual(config(['-k', 'k', 'true'], { ETCD_LOCK_USER: 'bob:pw' }).auth, {
      username: 'bob',
      password: 'pw',
      passwordInArgv: false,
    });
    assert.equal(config(['-k', 'k', 'true'], { ETCD_LOCK_PASSWORD: 'unused' }).auth, undefined);
  });

  it('finds the password after the colon, then in --password-file, ETCD_LOCK_PASSWORD_FILE, ETCD_LOCK_PASSWORD', () => {
    const password = (argv: string[], env: NodeJS.ProcessEnv) =>
      config([...argv, '-k', 'k', 'true'], env).auth?.password;
    const env = { ETCD_LOCK_PASSWORD: 'from-env', ETCD_LOCK_PASSWORD_FILE: file('password') };
    assert.equal(password(['--user', 'alice'], { ETCD_LOCK_PASSWORD: 'from-env' }), 'from-env');
    assert.equal(password(['--user', 'alice'], env), 's3cret:with colon', 'the file, less its trailing newline');
    assert.equal(password(['--user', 'alice', '--password-file', file('password')], {}), 's3cret:with colon');
    assert.equal(password(['--user', 'alice:inline'], env), 'inline');
    // A flag wins over the environment: --password-file over a password in ETCD_LOCK_USER.
    assert.equal(password(['--password-file', file('password')], { ETCD_LOCK_USER: 'alice:env' }), 's3cret:with colon');
    assert.equal(password([], { ETCD_LOCK_USER: 'alice:env', ETCD_LOCK_PASSWORD: 'other' }), 'env');
  });

  it('--status takes the same TLS and user flags', () => {
    const invocation = parseArgs(
      ['--status', '-k', 'k', '--cacert', certs.caFile, '--user', 'alice', '-e', '10.0.0.1:2379'],
      { ETCD_LOCK_PASSWORD: 'pw' },
    );
    assert.equal(invocation.kind, 'status');
    const status = (invocation as { config: StatusConfig }).config;
    assert.deepEqual(status.endpoints, ['https://10.0.0.1:2379']);
    assert.equal(status.tls?.ca?.file, certs.caFile);
    assert.deepEqual(status.auth, { username: 'alice', password: 'pw', passwordInArgv: false });
  });

  const bad: Array<[string, () => string[], () => NodeJS.ProcessEnv, () => RegExp]> = [
    [
      'a missing --cacert file',
      () => ['--cacert', file('nope.pem')],
      () => ({}),
      () => new RegExp(`^--cacert: cannot read ${file('nope\\.pem')} \\(no such file\\)$`),
    ],
    [
      'a directory as ETCD_LOCK_CACERT',
      () => [],
      () => ({ ETCD_LOCK_CACERT: file('a-directory') }),
      () => /^ETCD_LOCK_CACERT: cannot read .*a-directory \(it is a directory\)$/,
    ],
    [
      'a CA file that is not PEM',
      () => ['--cacert', file('not-pem.txt')],
      () => ({}),
      () => /not-pem\.txt is not a PEM file/,
    ],
    [
      'a key where the CA should be',
      () => ['--cacert', certs.caFile.replace(/\.pem$/, '.key')],
      () => ({}),
      () => /^--cacert: .*ca\.key holds no certificate in PEM$/,
    ],
    [
      '--cert without --cert-key',
      () => ['--cert', certs.clientCertFile],
      () => ({}),
      () => /^--cert .*client\.pem needs its private key: pass --cert-key or set ETCD_LOCK_CERT_KEY$/,
    ],
    [
      'ETCD_LOCK_CERT_KEY without a certificate',
      () => [],
      () => ({ ETCD_LOCK_CERT_KEY: certs.clientKeyFile }),
      () => /^ETCD_LOCK_CERT_KEY .*client\.key needs its certificate: pass --cert or set ETCD_LOCK_CERT$/,
    ],
    [
      'a certificate as --cert-key',
      () => ['--cert', certs.clientCertFile, '--cert-key', certs.clientCertFile],
      () => ({}),
      () => /^--cert-key: .*client\.pem holds no private key in PEM$/,
    ],
    [
      "a key that is not the certificate's",
      () => ['--cert', certs.clientCertFile, '--cert-key', certs.serverKeyFile],
      () => ({}),
      () => /^--cert-key: .*server\.key is not the key of the certificate in .*client\.pem \(--cert\)$/,
    ],
    [
      'an http:// endpoint with TLS files',
      () => ['-e', 'http://h:1', '--cacert', certs.caFile],
      () => ({}),
      () => /^-e\/--etcd: endpoint "http:\/\/h:1" is plain http, but --cacert asks for TLS/,
    ],
    [
      'a user without a password',
      () => ['--user', 'alice'],
      () => ({}),
      () => /^--user alice has no password: write alice:password, pass --password-file or set ETCD_LOCK_PASSWORD/,
    ],
    ['an empty user name', () => ['--user', ':pw-in-message?'], () => ({}), () => /^--user has an empty user name$/],
    [
      'an empty password after the colon',
      () => [],
      () => ({ ETCD_LOCK_USER: 'alice:' }),
      () => /^ETCD_LOCK_USER: the password after "alice:" is empty$/,
    ],
    [
      'a password both in --user and in --password-file',
      () => ['--user', 'alice:pw-in-message?', '--password-file', file('password')],
      () => ({}),
      () => /^--user gives a password and so does --password-file: keep one$/,
    ],
    [
      '--password-file without a user',
      () => ['--password-file', file('password')],
      () => ({}),
      () => /^--password-file goes with a user: pass --user or set ETCD_LOCK_USER$/,
    ],
    [
      'a missing password file',
      () => ['--user', 'alice', '--password-file', file('nope')],
      () => ({}),
      () => /^--password-file: cannot read .*nope \(no such file\)$/,
    ],
    [
      'an empty password file',
      () => ['--user', 'alice'],
      () => ({ ETCD_LOCK_PASSWORD_FILE: file('empty-password') }),
      () => /^ETCD_LOCK_PASSWORD_FILE: .*empty-password holds an empty password$/,
    ],
  ];
  for (const [what, argv, env, pattern] of bad) {
    it(`rejects ${what}, naming the flag or variable and the file, never the password`, () => {
      const all = [...argv(), '-k', 'k', 'true'];
      assert.throws(
        () => parseArgs(all, env()),
        (err: unknown) => err instanceof UsageError && pattern().test(err.message) && !err.message.includes('pw-in'),
        `${all.join(' ')} should fail with ${String(pattern())}`,
      );
    });
  }

  it('redacts the password of --user for the process title', () => {
    assert.deepEqual(redactedArgv(['-k', 'k', '--user', 'alice:s3:cret', '--user=bob:x', 'cmd', '--user', 'carol']), [
      '-k',
      'k',
      '--user',
      'alice:***',
      '--user=bob:***',
      'cmd',
      '--user',
      'carol',
    ]);
  });
});
