/**
 * Loads etcdlocker's core bundle (dist/cli/etcdlocker-core.cjs: the lock, etcd3, gRPC, protobufjs and rxjs) with a
 * V8 code cache, so that V8 deserializes its compiled functions instead of parsing and compiling 1.8 MB of
 * JavaScript on every start. Bundled into dist/cli/etcdlocker.cjs by scripts/build-cli.ts, which also writes the
 * cache (etcdlocker-core.cjs.cache) with {@link writeCodeCache}.
 *
 * The cache only fits the V8 that wrote it, with the same flags. V8 checks that itself and rejects a cache that does
 * not fit (another Node.js version, a different V8 flag, a damaged file): then the source is compiled as usual, only
 * slower. V8 tells a cache of other source only by its length, so a cache older than the core (the core edited in
 * place, say while debugging) is not used either; npm gives both files the same time. A missing or unreadable
 * cache is the same as none, and nothing is ever written at run time.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Script } from 'node:vm';

/**
 * Node's CommonJS wrapper, its head on the file's first line so that stack traces keep the file's line numbers. The
 * cache is of the wrapped text: whatever compiles the core with it (bench/startup.ts too) must wrap it so.
 */
export const CORE_WRAPPER = ['(function (exports, require, module, __filename, __dirname) {', '\n})'] as const;
const wrap = (source: string) => `${CORE_WRAPPER[0]}${source}${CORE_WRAPPER[1]}`;

type Wrapper = (exports: unknown, require: NodeJS.Require, module: { exports: unknown }, ...paths: string[]) => void;

function compile(file: string, cachedData: Buffer | undefined): { script: Script; exports: unknown } {
  const script = new Script(wrap(readFileSync(file, 'utf8')), { filename: file, ...(cachedData && { cachedData }) });
  const module = { exports: {} as unknown };
  // `this` is module.exports, as under Node's own loader.
  (script.runInThisContext() as Wrapper).call(
    module.exports,
    module.exports,
    createRequire(file),
    module,
    file,
    path.dirname(file),
  );
  return { script, exports: module.exports };
}

/** The cache of `file`: the same name with `.cache` added. */
const cacheOf = (file: string) => `${file}.cache`;

/**
 * The cache of `file` if there is one written after `file` was (or at the same time), else undefined.
 *
 * @example
 * readCodeCache('dist/cli/etcdlocker-core.cjs'); // the bytes of dist/cli/etcdlocker-core.cjs.cache, or undefined
 */
export function readCodeCache(file: string): Buffer | undefined {
  try {
    if (statSync(cacheOf(file)).mtimeMs < statSync(file).mtimeMs) return undefined;
    return readFileSync(cacheOf(file));
  } catch {
    return undefined; // no cache (a build without one, a file removed, no permission): compile from the source
  }
}

const loaded = new Map<string, unknown>();

/**
 * The exports of the core bundle `file`, loading it on the first call (with its code cache, when it has a fresh one).
 *
 * @example
 * const { run } = loadCore(path.join(__dirname, 'etcdlocker-core.cjs')) as typeof import('../../cli/run.js');
 */
export function loadCore(file: string): unknown {
  if (!loaded.has(file)) loaded.set(file, compile(file, readCodeCache(file)).exports);
  return loaded.get(file);
}

/**
 * Writes the code cache of `file` after loading it, so that the cache holds every function its modules ran while
 * loading, not only the top level.
 *
 * @example
 * writeCodeCache('dist/cli/etcdlocker-core.cjs'); // writes dist/cli/etcdlocker-core.cjs.cache
 */
export function writeCodeCache(file: string): void {
  writeFileSync(cacheOf(file), compile(file, undefined).script.createCachedData());
}

/**
 * Whether V8 takes the cache that {@link writeCodeCache} wrote. Ask in another process than the one that wrote it:
 * there V8 finds the script in its own compilation cache and never looks at the file.
 *
 * @example
 * codeCacheAccepted('dist/cli/etcdlocker-core.cjs'); // false on another Node.js version than the build's
 */
export function codeCacheAccepted(file: string): boolean {
  const script = new Script(wrap(readFileSync(file, 'utf8')), {
    filename: file,
    cachedData: readFileSync(cacheOf(file)),
  });
  return !script.cachedDataRejected;
}
