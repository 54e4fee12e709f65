import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ROOT, tempDir } from '../support/cli.js';

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
    const cli = pack!.files.find((file) => file.path === 'dist/cli/etcdlocker.js');
    assert.ok(cli, 'ships the CLI');
    assert.ok((cli.mode & 0o111) !== 0, 'the CLI is executable');
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
    const { stdout } = await run(path.join(ROOT, 'dist/cli/etcdlocker.js'), ['--version']);
    assert.match(stdout, /^etcdlocker \d+\.\d+\.\d+/);
  });
});
