import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadCore, readCodeCache, writeCodeCache } from '../../scripts/build-cli/load-core.js';

describe("etcdlocker's core loader and its code cache (scripts/build-cli/load-core.ts)", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'etcdlocker-load-core-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A core of `name`: CommonJS that exports its file name and whether its `this` was module.exports, as in Node. */
  function core(name: string): string {
    const file = path.join(dir, `${name}.cjs`);
    writeFileSync(
      file,
      "'use strict';\nconst { join } = require('node:path');\n" +
        'const thisIsExports = this === module.exports;\n' +
        'module.exports = { name: join(__dirname, __filename.slice(__dirname.length + 1)), thisIsExports };\n',
    );
    return file;
  }

  it('loads a core with its cache, with a damaged cache, and with none, the same each time', () => {
    const cached = core('cached');
    writeCodeCache(cached);
    assert.ok(readCodeCache(cached)!.length > 0, 'the cache is written and read back');

    const damaged = core('damaged');
    writeFileSync(`${damaged}.cache`, Buffer.from('not a V8 code cache'));
    assert.ok(readCodeCache(damaged), 'a damaged cache is handed to V8, which rejects it');

    const none = core('none');
    assert.equal(readCodeCache(none), undefined);

    for (const file of [cached, damaged, none]) {
      assert.deepEqual(loadCore(file), { name: file, thisIsExports: true }, file);
      assert.equal(loadCore(file), loadCore(file), 'loaded once');
    }
  });

  it('does not use a cache older than its core (the core edited in place), and does use one of the same time', () => {
    const edited = core('edited');
    writeCodeCache(edited);
    // Times set through the same call on both files: a time read back from one (nanoseconds on disk, milliseconds
    // in a Date) and written to the other can round past it, and made this flaky (failed one CI run of three).
    const installed = new Date('1985-10-26T08:15:00Z'); // as npm installs them: every file with the same time
    utimesSync(`${edited}.cache`, installed, installed);
    utimesSync(edited, installed, new Date(installed.getTime() + 1000));
    assert.equal(readCodeCache(edited), undefined);
    utimesSync(edited, installed, installed);
    assert.ok(readCodeCache(edited));
  });
});
