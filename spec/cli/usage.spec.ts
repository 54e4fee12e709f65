import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { writeFileSync } from 'node:fs';
import { type FakeEtcd, runLocker, startFakeEtcd, tempDir } from '../support/cli.js';

describe('etcdlocker usage (the built binary)', () => {
  let fake: FakeEtcd;
  before(async () => {
    fake = await startFakeEtcd();
  });
  after(() => fake.close());

  it('--help prints the usage, every flag and the exit codes on stdout, exit 0', async () => {
    const r = await runLocker(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^usage: etcdlocker \[options\] \[--\] command \[args\.\.\.\]/);
    for (const flag of ['--etcd', '--id', '--key', '--ttl', '--refresh', '--wait', '--kill-timeout', '--node']) {
      assert.ok(r.stdout.includes(flag), `help mentions ${flag}`);
    }
    for (const name of ['ETCD_LOCK_HOST', 'ETCD_LOCK_KEY', 'ETCD_LOCK_REV', 'ETCD_CHILD_IS_NODE']) {
      assert.ok(r.stdout.includes(name), `help mentions ${name}`);
    }
    assert.match(r.stdout, /64 +bad usage/);
    assert.equal(r.stderr, '');
  });

  it('--version prints the package version', async () => {
    const r = await runLocker(['--version']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^etcdlocker \d+\.\d+\.\d+/);
  });

  const cases: Array<[string, string[], NodeJS.ProcessEnv, RegExp]> = [
    ['an unknown flag', ['--bogus', '-k', 'k', 'true'], {}, /unknown or unexpected option: --bogus/],
    ['no key', ['true'], {}, /missing the lock key/],
    ['no command', ['-k', 'k'], {}, /missing the command to run/],
    ['a bad TTL', ['-t', '1.5', '-k', 'k', 'true'], {}, /-t\/--ttl must be a whole number of seconds/],
    ['a bad TTL in the environment', ['-k', 'k', 'true'], { ETCD_LOCK_TTL: '0' }, /ETCD_LOCK_TTL must be/],
    ['refresh not below the TTL', ['-t', '5', '-r', '7', '-k', 'k', 'true'], {}, /below the TTL \(5 s\), got 7/],
    ['a bad wait', ['-w', 'forever', '-k', 'k', 'true'], {}, /-w\/--wait must be a number of seconds/],
    ['a malformed endpoint', ['-e', 'http://x:1/path', '-k', 'k', 'true'], {}, /endpoint "http:\/\/x:1\/path"/],
  ];
  for (const [what, args, env, pattern] of cases) {
    it(`${what}: exit 64, the problem and the usage line on stderr, no connection`, async () => {
      const before = fake.connections();
      const r = await runLocker(args[0] === '-e' ? args : ['-e', fake.endpoint, ...args], env);
      assert.equal(r.code, 64, r.stderr);
      assert.match(r.stderr, pattern);
      assert.match(r.stderr, /usage: etcdlocker \[options\] \[--\] command/);
      assert.equal(r.stdout, '');
      assert.equal(fake.connections(), before, 'no connection was made');
    });
  }

  it('a command that does not exist: exit 3 before connecting to etcd', async () => {
    const before = fake.connections();
    const r = await runLocker(['-e', fake.endpoint, '-k', 'k', '--', 'surely-no-such-command-here', '--flag']);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /command not found: surely-no-such-command-here/);
    assert.equal(fake.connections(), before);
  });

  it('a file that is not executable: exit 3 before connecting', async () => {
    const tmp = tempDir('noexec');
    try {
      const file = tmp.file('script.sh');
      writeFileSync(file, '#!/bin/sh\nexit 0\n', { mode: 0o644 });
      const before = fake.connections();
      const r = await runLocker(['-e', fake.endpoint, '-k', 'k', '--', file]);
      assert.equal(r.code, 3, r.stderr);
      assert.ok(r.stderr.includes(`not an executable file: ${file}`), r.stderr);
      assert.equal(fake.connections(), before);
    } finally {
      tmp.remove();
    }
  });

  it('-n with a module that does not exist: exit 3 before connecting', async () => {
    const before = fake.connections();
    const r = await runLocker(['-e', fake.endpoint, '-n', '-k', 'k', '--', './no-such-module.js']);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /no such Node\.js module: \.\/no-such-module\.js/);
    assert.equal(fake.connections(), before);
  });
});
