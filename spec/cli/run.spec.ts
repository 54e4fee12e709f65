import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { isAlive, runLocker, startLocker, tempDir, waitForFile, writeScript } from '../support/cli.js';
import { etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { until } from '../support/poll.js';

const NODE = process.execPath;

describe('etcdlocker runs a command while holding the lock (the built binary, real etcd)', () => {
  const etcd = etcdForSuite();
  const tmp = tempDir('run');
  after(() => tmp.remove());

  const endpoint = () => etcd.endpoints.join(',');

  async function assertNothingLeft(key: string, leasesBefore: string[]) {
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), [], 'no key is left under the lock');
    const leftover = (await listLeases(etcd.endpoints)).filter((lease) => !leasesBefore.includes(lease));
    assert.deepEqual(leftover, [], 'no lease is left');
  }

  it("passes the command's exit code through, and has released the lock by the time it exits", async () => {
    const key = `${uniquePrefix('cli')}/exit`;
    const leases = await listLeases(etcd.endpoints);
    const zero = await runLocker(['-e', endpoint(), '-k', key, '-t', '5', '--', 'true']);
    assert.equal(zero.code, 0, zero.stderr);
    assert.equal(zero.stderr, '', 'quiet without -v');
    await assertNothingLeft(key, leases);
    const seven = await runLocker(['-e', endpoint(), '-k', key, '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.equal(seven.code, 7);
    assert.equal(seven.stdout, 'out\n', "the command's stdout passes through");
    assert.equal(seven.stderr, 'err\n');
    await assertNothingLeft(key, leases);
  });

  it('whoever reads its output goes away (`etcdlocker -v ... | head`): the command runs to its end, then the release', async () => {
    const key = `${uniquePrefix('cli')}/output-closed`;
    const leases = await listLeases(etcd.endpoints);
    const finished = tmp.file('output-closed-finished');
    // -v with a 2 s TTL logs a refresh every second: writes to the closed pipe while the command runs. Before the
    // fix, the first one ended etcdlocker (EPIPE), leaving the command running and the lock to its lease's TTL.
    const script = "setTimeout(() => require('fs').writeFileSync(process.argv[1], 'done'), 3000)";
    const locker = startLocker(['-e', endpoint(), '-v', '--ttl', '2', '-k', key, '--', NODE, '-e', script, finished]);
    await locker.waitForStderr(/holding /);
    locker.process.stderr?.destroy(); // the reader goes away, as `| head` does once it has its lines

    const result = await locker.result();
    assert.equal(result.code, 0, "the exit code is the command's");
    assert.equal(readFileSync(finished, 'utf8'), 'done', 'the command ran to its end');
    await assertNothingLeft(key, leases);
  });

  it('gives the command ETCD_LOCK_REV (the key create revision), ETCD_LOCK_KEY, ETCD_LOCK_ID, ETCD_LOCK_HOLDER_KEY', async () => {
    const key = `${uniquePrefix('cli')}/env`;
    const envFile = tmp.file('env.json');
    const goFile = tmp.file('env.go');
    const code = `
      const fs = require('fs');
      const { ETCD_LOCK_REV, ETCD_LOCK_KEY, ETCD_LOCK_ID, ETCD_LOCK_HOLDER_KEY } = process.env;
      fs.writeFileSync(${JSON.stringify(envFile)}, JSON.stringify({ ETCD_LOCK_REV, ETCD_LOCK_KEY, ETCD_LOCK_ID, ETCD_LOCK_HOLDER_KEY }));
      const t = setInterval(() => { if (fs.existsSync(${JSON.stringify(goFile)})) { clearInterval(t); } }, 10);`;
    const locker = startLocker(['-e', endpoint(), '-k', key, '-i', 'env-tester', '--', NODE, '-e', code]);
    const env = JSON.parse(await waitForFile(envFile)) as Record<string, string>;
    const held = await etcd.client.getAll().prefix(`${key}/`).exec();
    writeFileSync(goFile, 'go');
    assert.equal((await locker.result()).code, 0);
    assert.equal(held.kvs.length, 1);
    assert.equal(env['ETCD_LOCK_REV'], held.kvs[0]?.create_revision, 'the fencing token is the create revision');
    assert.equal(env['ETCD_LOCK_KEY'], key);
    assert.equal(env['ETCD_LOCK_ID'], 'env-tester');
    assert.equal(env['ETCD_LOCK_HOLDER_KEY'], held.kvs[0]?.key.toString(), 'its own key in etcd');
    assert.equal(held.kvs[0]?.value.toString(), 'env-tester');
  });

  it('never lets the commands of three etcdlockers overlap, and grants rising tokens in order', async () => {
    const key = `${uniquePrefix('cli')}/serial`;
    const logs = [0, 1, 2].map((i) => tmp.file(`serial-${i}.log`));
    const child = (log: string) => `
      const fs = require('fs');
      const now = () => performance.timeOrigin + performance.now();
      const start = now();
      setTimeout(() => fs.writeFileSync(${JSON.stringify(log)},
        JSON.stringify({ start, end: now(), rev: process.env.ETCD_LOCK_REV })), 150);`;
    const results = await Promise.all(
      logs.map((log, i) =>
        runLocker(['-e', endpoint(), '-k', key, '-i', `w${i}`, '-t', '5', '--', NODE, '-e', child(log)]),
      ),
    );
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const runs = logs
      .map((log) => JSON.parse(readFileSync(log, 'utf8')) as { start: number; end: number; rev: string })
      .sort((a, b) => a.start - b.start);
    for (let i = 1; i < runs.length; i++) {
      const [prev, next] = [runs[i - 1]!, runs[i]!];
      assert.ok(prev.end <= next.start, `run ${i - 1} ended (${prev.end}) before run ${i} started (${next.start})`);
      assert.ok(BigInt(next.rev) > BigInt(prev.rev), `tokens rise in grant order: ${prev.rev} < ${next.rev}`);
    }
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
  });

  it('-w 0 on a held lock exits 1 at once (busy, naming the holder) and leaves no key of its own', async () => {
    const key = `${uniquePrefix('cli')}/busy`;
    const goFile = tmp.file('busy.go');
    const holder = startLocker([
      '-v',
      '-e',
      endpoint(),
      '-k',
      key,
      '-i',
      'the-holder',
      '--',
      'sh',
      '-c',
      waitFor(goFile),
    ]);
    await holder.waitForStderr(/running sh/);
    const r = await runLocker(['-e', endpoint(), '-k', key, '-w', '0', '--', 'true']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /ETCDLOCK_BUSY/);
    assert.match(r.stderr, /the-holder/);
    assert.equal((await listKeys(etcd.endpoints, `${key}/`)).length, 1, "only the holder's key");
    writeFileSync(goFile, 'go');
    assert.equal((await holder.result()).code, 0);
  });

  it('--limit 2: two commands hold the semaphore at once, the third waits for a slot', async () => {
    const key = `${uniquePrefix('cli')}/limit`;
    const leasesBefore = await listLeases(etcd.endpoints);
    const dir = tmp.file('limit');
    mkdirSync(dir);
    const goFile = `${dir}/go`;
    writeScript(`${dir}/job.sh`, `touch "${dir}/started.$$"\n${waitFor(goFile)}`);
    const started = () => readdirSync(dir).filter((name) => name.startsWith('started.')).length;
    const lockers = ['a', 'b', 'c'].map((id) =>
      startLocker(['-e', endpoint(), '-k', key, '-i', id, '-l', '2', '--', `${dir}/job.sh`]),
    );
    await until(() => started() === 2, 'two commands running');
    while ((await listKeys(etcd.endpoints, `${key}/`)).length < 3) await sleep(20); // the third is queued
    await sleep(500);
    assert.equal(started(), 2, 'the third waits while both slots are taken');
    writeFileSync(goFile, 'go');
    for (const locker of lockers) assert.equal((await locker.result()).code, 0);
    assert.equal(started(), 3, 'the third ran once a slot was free');
    await assertNothingLeft(key, leasesBefore);
  });

  it('-w gives up after that long with exit 1 (timeout) and removes its queued key', async () => {
    const key = `${uniquePrefix('cli')}/timeout`;
    const goFile = tmp.file('timeout.go');
    const holder = startLocker(['-v', '-e', endpoint(), '-k', key, '--', 'sh', '-c', waitFor(goFile)]);
    await holder.waitForStderr(/running sh/);
    const r = await runLocker(['-e', endpoint(), '-k', key, '-w', '0.5', '--', 'true']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /ETCDLOCK_TIMEOUT/);
    assert.equal((await listKeys(etcd.endpoints, `${key}/`)).length, 1, "only the holder's key");
    writeFileSync(goFile, 'go');
    assert.equal((await holder.result()).code, 0);
  });

  it('an unreachable etcd: exit 1 naming the problem', async () => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    server.close();
    await once(server, 'close');
    const r = await runLocker(['-e', `127.0.0.1:${port}`, '-k', '/nowhere', '--', 'true']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /could not acquire "\/nowhere".*ETCDLOCK_UNAVAILABLE/);
  });

  it('works through a list of endpoints when one of them is dead', async () => {
    const key = `${uniquePrefix('cli')}/endpoints`;
    for (let i = 0; i < 5; i++) {
      const r = await runLocker(['-e', `127.0.0.1:1,${endpoint()}`, '-k', key, '-t', '5', '--', 'true']);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), []);
  });

  it('a command that fails to start after the lock is taken: exit 3, nothing left behind', async () => {
    const key = `${uniquePrefix('cli')}/nospawn`;
    const leases = await listLeases(etcd.endpoints);
    // Executable, so the early check passes, but its interpreter does not exist: spawn fails with ENOENT.
    const script = tmp.file('bad-interpreter');
    writeFileSync(script, '#!/no/such/interpreter\n', { mode: 0o755 });
    const r = await runLocker(['-e', endpoint(), '-k', key, '--', script]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /could not start/);
    await assertNothingLeft(key, leases);
  });

  it('-v reports connecting, waiting behind whom, the token, and the command exit', async () => {
    const key = `${uniquePrefix('cli')}/verbose`;
    const goFile = tmp.file('verbose.go');
    const holder = startLocker(['-v', '-e', endpoint(), '-k', key, '-i', 'first', '--', 'sh', '-c', waitFor(goFile)]);
    await holder.waitForStderr(/running sh/);
    const second = startLocker(['-v', '-e', endpoint(), '-k', key, '-i', 'second', '--', 'true']);
    await second.waitForStderr(/waiting behind first/);
    writeFileSync(goFile, 'go');
    const r = await second.result();
    assert.equal(r.code, 0);
    assert.match(r.stderr, /connecting to http:\/\/127\.0\.0\.1:\d+/);
    assert.match(r.stderr, /holding \S+ with fencing token \d+/);
    assert.match(r.stderr, /the command exited with code 0/);
    assert.match(r.stderr, /released the lock/);
    await holder.result();
  });

  it('a child in its own process group: a background job it leaves is not killed on a normal exit', async () => {
    // Documented behaviour: only a loss, an IPC failure or a second signal kills the whole group.
    const key = `${uniquePrefix('cli')}/bg`;
    const pidFile = tmp.file('bg.pid');
    const script = writeScript(tmp.file('bg.sh'), `sleep 30 >/dev/null 2>&1 & echo $! > ${pidFile}`);
    const r = await runLocker(['-e', endpoint(), '-k', key, '--', script]);
    assert.equal(r.code, 0, r.stderr);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(isAlive(pid), 'the background job still runs');
    process.kill(pid, 'SIGKILL');
  });
});

/** A shell loop that ends once `file` exists. */
function waitFor(file: string): string {
  return `while [ ! -e ${file} ]; do sleep 0.02; done`;
}
