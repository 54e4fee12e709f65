import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ROOT, tempDir } from '../support/cli.js';
import { etcdForSuite, listKeys, uniquePrefix } from '../support/etcd.js';

const run = promisify(execFile);

/**
 * Issue 7, the package: what `npm pack` ships, and that the built package loads by its name from an ES module and
 * from CommonJS (Node.js 20.19+ `require` of ES modules). Runs on the build, as a user's project would.
 */
describe('the package as a user gets it (the build)', () => {
  const tmp = tempDir('package');
  after(() => tmp.remove());
  // A project whose node_modules/etcd-lock is this package.
  mkdirSync(path.join(tmp.dir, 'node_modules'));
  symlinkSync(ROOT, path.join(tmp.dir, 'node_modules', 'etcd-lock'));

  it('npm pack ships the built library and CLI, types, README and LICENSE, and no sources or tests', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
    const [pack] = JSON.parse(stdout) as Array<{ files: Array<{ path: string; mode: number }> }>;
    const files = pack!.files.map((file) => file.path);
    for (const needed of ['README.md', 'LICENSE', 'package.json', 'dist/lib/index.js', 'dist/lib/index.d.ts']) {
      assert.ok(files.includes(needed), `ships ${needed}`);
    }
    const cli = pack!.files.find((file) => file.path === 'dist/cli/etcdlocker.cjs');
    assert.ok(cli, 'ships the CLI');
    assert.ok((cli.mode & 0o111) !== 0, 'the CLI is executable');
    for (const part of ['dist/cli/etcdlocker-core.cjs', 'dist/cli/etcdlocker-core.cjs.cache']) {
      assert.ok(files.includes(part), `ships ${part}, the CLI's bundled lock and its code cache`);
    }
    const stray = files.filter((file) => !/^(dist\/(lib|cli)\/|README\.md$|LICENSE$|package\.json$)/.test(file));
    assert.deepEqual(stray, [], 'nothing else: no sources, specs, bench or docs sources');
  });

  it('import and require by the package name give the same API', async () => {
    const names = (code: string, type: 'module' | 'commonjs') =>
      run(process.execPath, [`--input-type=${type}`, '-e', code], { cwd: tmp.dir }).then((r) => r.stdout.trim());
    const fromImport = await names(
      "import * as m from 'etcd-lock'; console.log(Object.keys(m).sort().join(' '))",
      'module',
    );
    const fromRequire = await names("console.log(Object.keys(require('etcd-lock')).sort().join(' '))", 'commonjs');
    assert.equal(fromRequire, fromImport);
    for (const name of ['lock$', 'Lock', 'withLock', 'whileHeld', 'createLocker', 'campaign$', 'holders']) {
      assert.ok(fromImport.split(' ').includes(name), `exports ${name}`);
    }
  });

  it('a CommonJS TypeScript project (module nodenext) gets the types through require', async () => {
    writeFileSync(
      path.join(tmp.dir, 'consumer.cts'),
      [
        "import etcdLock = require('etcd-lock');",
        'const held: boolean = etcdLock.isHeld(undefined);',
        'export const api = [typeof etcdLock.lock$, typeof etcdLock.withLock, held];',
      ].join('\n'),
    );
    const compilerOptions = { module: 'nodenext', strict: true, noEmit: true, skipLibCheck: true, types: [] };
    writeFileSync(path.join(tmp.dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['consumer.cts'] }));
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    await run(process.execPath, [tsc, '-p', tmp.dir]); // rejects, with the compiler's errors, if types do not resolve
  });

  it('the CLI starts with its shebang, by the bin name', async () => {
    const { stdout } = await run(path.join(ROOT, 'dist/cli/etcdlocker.cjs'), ['--version']);
    assert.match(stdout, /^etcdlocker \d+\.\d+\.\d+/);
  });
});

/**
 * Issue 5: the CLI is a bundle (scripts/build-cli.ts). Installed from the packed tarball, as npm lays it out and links
 * its bin, with none of its dependencies beside it, it must still take a lock: nothing it runs may come from
 * node_modules, and the core and its code cache must be in the tarball.
 */
describe('the CLI as npm installs it from the tarball (the build)', () => {
  const etcd = etcdForSuite();
  const tmp = tempDir('installed');
  after(() => tmp.remove());
  const bin = path.join(tmp.dir, 'project', 'node_modules', '.bin', 'etcdlocker');

  it('unpacks with no node_modules of its own and runs by its bin link: --version, --help, a lock, --status', async () => {
    const { stdout: packed } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp.dir], {
      cwd: ROOT,
    });
    const [{ filename }] = JSON.parse(packed) as [{ filename: string }];
    const modules = path.join(tmp.dir, 'project', 'node_modules');
    mkdirSync(path.join(modules, 'etcd-lock'), { recursive: true });
    await run('tar', [
      '-xzf',
      path.join(tmp.dir, filename),
      '-C',
      path.join(modules, 'etcd-lock'),
      '--strip-components=1',
    ]);
    assert.ok(!existsSync(path.join(modules, 'etcd-lock', 'node_modules')), 'no dependencies installed');
    mkdirSync(path.join(modules, '.bin'));
    const { bin: bins } = JSON.parse(readFileSync(path.join(modules, 'etcd-lock', 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
    };
    symlinkSync(path.join('..', 'etcd-lock', bins['etcdlocker']!), bin);

    assert.match((await run(bin, ['--version'])).stdout, /^etcdlocker \d+\.\d+\.\d+/);
    assert.match((await run(bin, ['--help'])).stdout, /^usage: etcdlocker/m);

    const key = `${uniquePrefix('installed')}/lock`;
    const endpoint = etcd.endpoints.join(',');
    const locked = await run(bin, ['-e', endpoint, '-k', key, '--', 'sh', '-c', 'echo "$ETCD_LOCK_HOLDER_KEY"']);
    assert.match(locked.stdout, new RegExp(`^${key}/[0-9a-f]+\n$`), 'the command ran holding the lock');
    assert.deepEqual(await listKeys(etcd.endpoints, `${key}/`), [], 'and released it');
    assert.match((await run(bin, ['--status', '-e', endpoint, '-k', key])).stdout, /: free\n$/);
  });
});
