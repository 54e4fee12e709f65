import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { filter, firstValueFrom, lastValueFrom } from 'rxjs';
import { isLockError } from '../../lib/errors.js';
import { Lock } from '../../lib/facade.js';
import { lock$ } from '../../lib/lock-stream.js';
import type { LockOptions } from '../../lib/options.js';
import { isHeld } from '../../lib/state.js';
import { type LockerProcess, startLocker, tempDir, writeScript } from '../support/cli.js';
import { etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { startProxy, type TcpProxy } from '../support/proxy.js';

/**
 * Issue 4, "bad input, once more, as a table": every bad input the core and CLI issues name, against a real etcd,
 * each with the error code (library) or exit code (CLI) it must give, a message naming what was wrong, and proof
 * that nothing was left in etcd: no key under the lock, and no lease that was not there before the case ran.
 *
 * Where the lock must be busy, `held` (a key under the suite's prefix) is held by another contender for the whole
 * suite; its key and lease are the only ones allowed to stay.
 */

/** What every case can use: a lock someone else holds, a dead endpoint and a black-holed one. */
interface Context {
  client: Etcd3;
  endpoints: string[];
  /** A lock held by someone else all along. */
  held: string;
  /** A fresh key nobody holds. */
  free: string;
  /** `127.0.0.1:<port>` where nothing listens: connections are refused. */
  refused: string;
  /** A proxy to etcd that never forwards a byte: connections hang. */
  blackHole: string;
  /** A temporary directory for scripts. */
  dir: string;
  /** What each lock$ of the current case reported through `onRelease`: awaited before looking at etcd. */
  releases: Promise<void>[];
}

interface LibraryCase {
  what: string;
  /** Must throw, or return a promise that rejects, with a LockError of `code` and a message matching `message`. */
  act(ctx: Context): unknown;
  code: string;
  message: RegExp;
}

interface CliCase {
  what: string;
  args(ctx: Context): string[];
  env?: NodeJS.ProcessEnv;
  /** Runs while etcdlocker does (a fault from outside), before its exit is awaited. */
  during?(ctx: Context, locker: LockerProcess): Promise<void>;
  exit: number;
  stderr: RegExp;
}

/** Subscribes `lock$` and waits for the first held state (or the error). */
const acquire = (ctx: Context, key: string, options?: LockOptions, client = ctx.client) =>
  firstValueFrom(
    lock$(client, key, { ...options, onRelease: (released) => ctx.releases.push(released) }).pipe(filter(isHeld)),
  );

/** A client of its own on `endpoint`, closed after `body`. */
async function withClient<T>(endpoint: string, body: (client: Etcd3) => Promise<T>): Promise<T> {
  const client = new Etcd3({ hosts: endpoint, dialTimeout: 1000 });
  try {
    return await body(client);
  } finally {
    client.close();
  }
}

const libraryCases: LibraryCase[] = [
  { what: 'an empty key', act: (c) => acquire(c, ''), code: 'ETCDLOCK_INVALID_ARGUMENT', message: /`key`/ },
  {
    what: 'a key that is not a string',
    act: (c) => acquire(c, 42 as unknown as string),
    code: 'ETCDLOCK_INVALID_ARGUMENT',
    message: /`key`.*42/,
  },
  {
    what: 'a client that is not an Etcd3',
    act: (c) => firstValueFrom(lock$({} as Etcd3, c.free)),
    code: 'ETCDLOCK_INVALID_ARGUMENT',
    message: /`client`/,
  },
  ...[0, -5, 1.5, Number.NaN, 10 ** 9].map((ttl) => ({
    what: `ttl ${ttl}`,
    act: (c: Context) => acquire(c, c.free, { ttl }),
    code: 'ETCDLOCK_INVALID_ARGUMENT',
    message: /`ttl`/,
  })),
  {
    what: 'a refreshInterval not below the TTL',
    act: (c) => acquire(c, c.free, { ttl: 2, refreshInterval: 2000 }),
    code: 'ETCDLOCK_INVALID_ARGUMENT',
    message: /`refreshInterval`/,
  },
  {
    what: 'a negative timeout',
    act: (c) => acquire(c, c.free, { timeout: -1 }),
    code: 'ETCDLOCK_INVALID_ARGUMENT',
    message: /`timeout`/,
  },
  {
    what: 'an unknown option',
    act: (c) => acquire(c, c.free, { tll: 5 } as LockOptions),
    code: 'ETCDLOCK_INVALID_ARGUMENT',
    message: /`tll`/,
  },
  {
    what: 'the facade without an id',
    act: (c) => new Lock(c.client, c.free, undefined as unknown as string, 5),
    code: 'ETCDLOCK_INVALID_ARGUMENT',
    message: /`id`/,
  },
  {
    what: 'the facade without a client',
    act: (c) => new Lock(undefined as unknown as Etcd3, c.free, 'me', 5),
    code: 'ETCDLOCK_INVALID_ARGUMENT',
    message: /`etcd`/,
  },
  {
    what: 'the facade: unlock() of a lock never taken',
    act: (c) => new Lock(c.client, c.free, 'me', 5).unlock(),
    code: 'ETCDLOCK_NOT_HELD',
    message: /not held/i,
  },
  {
    what: 'an endpoint that refuses connections',
    act: (c) => withClient(c.refused, (client) => acquire(c, c.free, { ttl: 5 }, client)),
    code: 'ETCDLOCK_UNAVAILABLE',
    message: /ECONNREFUSED|UNAVAILABLE/,
  },
  {
    what: 'a black-holed endpoint, with a timeout',
    act: (c) => withClient(c.blackHole, (client) => acquire(c, c.free, { ttl: 5, timeout: 500 }, client)),
    code: 'ETCDLOCK_TIMEOUT',
    message: /500 ms/,
  },
  {
    what: 'a held lock, trying once',
    act: (c) => acquire(c, c.held, { wait: false, ttl: 5 }),
    code: 'ETCDLOCK_BUSY',
    message: /held by "holder"/,
  },
  {
    what: 'a held lock, with a timeout',
    act: (c) => acquire(c, c.held, { timeout: 300, ttl: 5 }),
    code: 'ETCDLOCK_TIMEOUT',
    message: /300 ms/,
  },
];

const cliCases: CliCase[] = [
  { what: 'no key', args: () => ['true'], exit: 64, stderr: /missing the lock key/ },
  { what: 'an unknown flag', args: (c) => ['--nope', '-k', c.free, 'true'], exit: 64, stderr: /--nope/ },
  { what: 'no command', args: (c) => ['-k', c.free], exit: 64, stderr: /missing the command/ },
  { what: 'TTL 0', args: (c) => ['-t', '0', '-k', c.free, 'true'], exit: 64, stderr: /-t\/--ttl/ },
  { what: 'TTL "soon"', args: (c) => ['-t', 'soon', '-k', c.free, 'true'], exit: 64, stderr: /-t\/--ttl/ },
  {
    what: 'a bad TTL in ETCD_LOCK_TTL',
    args: (c) => ['-k', c.free, 'true'],
    env: { ETCD_LOCK_TTL: '-3' },
    exit: 64,
    stderr: /ETCD_LOCK_TTL/,
  },
  {
    what: 'a refresh not below the TTL',
    args: (c) => ['-t', '4', '-r', '4', '-k', c.free, 'true'],
    exit: 64,
    stderr: /below the TTL/,
  },
  { what: 'a negative wait', args: (c) => ['--wait=-1', '-k', c.free, 'true'], exit: 64, stderr: /-w\/--wait/ },
  {
    what: 'a malformed endpoint URL',
    args: (c) => ['-e', 'http://', '-k', c.free, 'true'],
    exit: 64,
    stderr: /malformed endpoint: "http:\/\/"/,
  },
  {
    what: 'an endpoint with a path',
    args: (c) => ['-e', `http://${c.endpoints[0]}/v3`, '-k', c.free, 'true'],
    exit: 64,
    stderr: /endpoint/,
  },
  {
    what: 'a command that does not exist',
    args: (c) => ['-k', c.free, '--', 'no-such-command-anywhere'],
    exit: 3,
    stderr: /command not found: no-such-command-anywhere/,
  },
  {
    what: 'a command that is not executable',
    args: (c) => {
      writeFileSync(`${c.dir}/not-executable.sh`, '#!/bin/sh\n', { mode: 0o644 });
      return ['-k', c.free, '--', `${c.dir}/not-executable.sh`];
    },
    exit: 3,
    stderr: /not an executable file/,
  },
  {
    what: '-n with a module that does not exist',
    args: (c) => ['-n', '-k', c.free, '--', `${c.dir}/missing.mjs`],
    exit: 3,
    stderr: /no such Node\.js module/,
  },
  {
    what: 'an endpoint that refuses connections',
    args: (c) => ['-e', c.refused, '-k', c.free, '--', 'true'],
    exit: 1,
    stderr: /could not acquire .*\(etcd: http:\/\/127\.0\.0\.1:\d+\).*ECONNREFUSED.*ETCDLOCK_UNAVAILABLE/,
  },
  {
    what: 'a black-holed endpoint (the lease grant times out)',
    args: (c) => ['-e', c.blackHole, '-k', c.free, '--', 'true'],
    exit: 1,
    stderr: /could not acquire .*DEADLINE_EXCEEDED.*ETCDLOCK_UNAVAILABLE/,
  },
  {
    what: 'a black-holed endpoint with -w 1 (it gives up at the timeout, not at the 10 s request limit)',
    args: (c) => ['-e', c.blackHole, '-w', '1', '-k', c.free, '--', 'true'],
    exit: 1,
    stderr: /could not acquire .*Timed out after 1000 ms.*ETCDLOCK_TIMEOUT/,
  },
  {
    what: 'a held lock with -w 0',
    args: (c) => ['-w', '0', '-k', c.held, '--', 'true'],
    exit: 1,
    stderr: /ETCDLOCK_BUSY/,
  },
  {
    what: 'a held lock with -w 0.3',
    args: (c) => ['-w', '0.3', '-k', c.held, '--', 'true'],
    exit: 1,
    stderr: /ETCDLOCK_TIMEOUT/,
  },
  {
    what: 'a command that ignores SIGTERM, when the lock is lost',
    args: (c) => [
      '-v',
      '-t',
      '4',
      '-k',
      c.free,
      '--',
      writeScript(`${c.dir}/stubborn.sh`, "trap '' TERM\nwhile :; do sleep 1; done"),
    ],
    // The lock is lost from outside once held: SIGTERM is ignored, SIGKILL ends it within the loss margin.
    during: async (c, locker) => {
      const [, holderKey = ''] = await locker.waitForStderr(/holding (\S+) with fencing token/);
      await c.client.delete().key(holderKey).exec();
    },
    exit: 2,
    stderr: /lost the lock \(deleted\)[^]*outlived SIGTERM[^]*killed by SIGKILL[^]*released the lock/,
  },
];

describe('bad input, as a table: the error it gives, and nothing left in etcd', () => {
  const etcd = etcdForSuite();
  const prefix = uniquePrefix('bad-input');
  const tmp = tempDir('bad-input');
  let ctx: Context;
  let holder: { unsubscribe(): void };
  let proxy: TcpProxy;
  let leasesBefore: Set<string>;
  let caseNumber = 0;

  before(async () => {
    proxy = await startProxy(etcd.endpoints[0]!);
    proxy.pause();
    // A port that was free a moment ago and has nothing listening now.
    const { createServer } = await import('node:net');
    const server = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));

    const held = `${prefix}/held`;
    await new Promise<void>((resolve, reject) => {
      const sub = lock$(etcd.client, held, { id: 'holder', ttl: 30 }).subscribe({
        next: (state) => isHeld(state) && resolve(),
        error: reject,
      });
      holder = sub;
    });
    ctx = {
      client: etcd.client,
      endpoints: etcd.endpoints,
      held,
      free: '',
      refused: `127.0.0.1:${port}`,
      blackHole: proxy.endpoint,
      dir: tmp.dir,
      releases: [],
    };
    leasesBefore = new Set(await listLeases(etcd.endpoints));
  });
  after(async () => {
    holder.unsubscribe();
    await proxy.close();
    tmp.remove();
  });

  /** Nothing under `ctx.free`, only the holder's key under the held lock, and no lease that was not there. */
  async function assertNothingLeft(what: string) {
    assert.deepEqual(await listKeys(etcd.endpoints, `${ctx.free}/`), [], `${what}: no key under the lock`);
    assert.equal((await listKeys(etcd.endpoints, `${ctx.held}/`)).length, 1, `${what}: only the holder's key`);
    // A lease from a grant etcd finished after the client gave up lives until its TTL; allow for it to go.
    const stray = (await listLeases(etcd.endpoints)).filter((id) => !leasesBefore.has(id));
    assert.deepEqual(stray, [], `${what}: no lease left`);
  }

  for (const c of libraryCases) {
    it(`lock$ / Lock: ${c.what} -> ${c.code}`, async () => {
      ctx.free = `${prefix}/lib-${++caseNumber}`;
      ctx.releases = [];
      const err = await new Promise((resolve) => resolve(c.act(ctx))).then(
        () => assert.fail('it should have failed'),
        (e: unknown) => e,
      );
      assert.ok(isLockError(err), `a LockError, got ${String(err)}`);
      assert.equal(err.code, c.code, err.message);
      assert.match(err.message, c.message);
      await Promise.all(ctx.releases);
      await assertNothingLeft(c.what);
    });
  }

  it('lock$: an aborted signal rejects with its reason, also while waiting', async () => {
    ctx.free = `${prefix}/lib-${++caseNumber}`;
    const reason = new Error('stop waiting');
    const signal = AbortSignal.abort(reason);
    const releases: Promise<void>[] = [];
    const onRelease = (released: Promise<void>) => releases.push(released);
    await assert.rejects(lastValueFrom(lock$(etcd.client, ctx.free, { ttl: 5, signal, onRelease })), reason);
    const later = new AbortController();
    const waiting = lastValueFrom(lock$(etcd.client, ctx.held, { ttl: 5, signal: later.signal, onRelease }));
    setTimeout(() => later.abort(reason), 200);
    await assert.rejects(waiting, reason);
    await Promise.all(releases);
    await assertNothingLeft('aborted');
  });

  for (const c of cliCases) {
    it(`etcdlocker: ${c.what} -> exit ${c.exit}`, async () => {
      ctx.free = `${prefix}/cli-${++caseNumber}`;
      const args = c.args(ctx);
      const locker = startLocker(args[0] === '-e' ? args : ['-e', etcd.endpoints.join(','), ...args], c.env);
      await c.during?.(ctx, locker);
      const r = await locker.result();
      assert.equal(r.code, c.exit, r.stderr);
      assert.match(r.stderr, c.stderr);
      await assertNothingLeft(c.what);
    });
  }
});
