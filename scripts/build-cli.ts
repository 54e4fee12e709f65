/**
 * Builds the etcdlocker CLI into dist/cli/; `npm run build` runs it (with tsx) after tsc has built dist/lib.
 *
 * Why (issue 5): run from tsc's output, `etcdlocker -k k -- true` spent about 300 ms loading code before its first
 * request: rxjs's CommonJS build (Node.js resolves `rxjs` to it: the whole library, ~220 files), @grpc/grpc-js, and
 * etcd3, which parses its .proto text with @grpc/proto-loader and protobufjs each time it is loaded. bench/notes.md
 * has the breakdown. This script bundles cli/ and lib/ with esbuild into three files:
 *
 *   dist/cli/etcdlocker.cjs        the bin: cli/etcdlocker.ts with what --help, --version and a usage error need
 *                                  (args, arg, cross-spawn). CommonJS: an ES module would pay for an ES facade of
 *                                  each Node.js module it imports.
 *   dist/cli/etcdlocker-core.cjs   cli/run.ts and cli/status.ts with lib/, etcd3, gRPC, protobufjs and rxjs. The bin
 *                                  loads it (scripts/build-cli/load-core.ts) where cli/etcdlocker.ts imports
 *                                  ./run.js or ./status.js, so only for a run or --status.
 *   dist/cli/etcdlocker-core.cjs.cache   V8's code cache of the core, written by a Node.js that loaded it. Another
 *                                  Node.js version rejects it and compiles the source: slower, never wrong.
 *
 * In the core:
 * - etcd3's rpc.proto is parsed here, at build time, by etcd3's own @grpc/proto-loader (build-cli/etcd3-protos.ts),
 *   and ships as protobufjs's JSON with the message codecs protobufjs would generate at run time. The core's
 *   `@grpc/proto-loader`, for etcd3 only, is build-cli/proto-loader-stand-in.ts, which makes the same gRPC package
 *   definition of them with protobufjs's light build. grpc-js's own (lazy) uses of proto-loader are for channelz and
 *   ORCA, which etcdlocker never starts: there it is a stub that throws if ever called.
 * - rxjs comes from its ES2015 build, so that only the operators lib/ uses are bundled (rxjs has "sideEffects": false).
 *
 * The sources in cli/ and lib/ stay as they are and run as they are under tsx (`npx tsx cli/etcdlocker.ts ...`); only
 * this build bundles them. package.json's dependencies stay: dist/lib imports them, and npm still installs them with
 * their licenses (each bundle's header lists what it holds).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import {
  codecsSource,
  CONNECTION_POOL,
  knownSetup,
  readEtcd3Protos,
  resolveProtobufjs,
} from './build-cli/etcd3-protos.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT_DIR = path.join(ROOT, 'dist/cli');
const BIN = path.join(OUT_DIR, 'etcdlocker.cjs');
const CORE = path.join(OUT_DIR, 'etcdlocker-core.cjs');
const ENTRY = path.join(ROOT, 'cli/etcdlocker.ts');
const STAND_IN = path.join(ROOT, 'scripts/build-cli/proto-loader-stand-in.ts');
const LOAD_CORE = path.join(ROOT, 'scripts/build-cli/load-core.ts');

/** Modules made here, by name, for the plugin to load. */
const generated = new Map<string, string>();
const NAMESPACE = 'etcdlocker-build';
function generatedModule(name: string, contents: string): esbuild.OnResolveResult {
  generated.set(name, contents);
  return { path: name, namespace: NAMESPACE };
}

function etcdlockerPlugin(): esbuild.Plugin {
  return {
    name: 'etcdlocker',
    setup(build) {
      build.onResolve({ filter: /^@grpc\/proto-loader$/ }, ({ importer }) => {
        if (importer === CONNECTION_POOL) {
          return generatedModule(
            'etcd3-proto-loader',
            `import { createLoadSync } from ${JSON.stringify(STAND_IN)};\n` +
              "import codecs from 'etcd3-codecs';\n" +
              `export const loadSync = createLoadSync(${JSON.stringify(protos)}, codecs);\n`,
          );
        }
        if (importer.includes(`${path.sep}@grpc${path.sep}grpc-js${path.sep}`)) {
          return generatedModule(
            'no-proto-loader',
            'export function loadSync() {\n' +
              "  throw new Error('etcdlocker: gRPC channelz and ORCA are not in this bundle (no @grpc/proto-loader)');\n" +
              '}\n',
          );
        }
        throw new Error(`unexpected import of @grpc/proto-loader from ${importer}`);
      });
      build.onResolve({ filter: /^etcd3-codecs$/ }, () => generatedModule('etcd3-codecs', codecs));
      // The stand-in uses the protobufjs that etcd3's proto-loader uses, whatever npm hoisted.
      build.onResolve({ filter: /^protobufjs\/light\.js$/ }, () => ({ path: resolveProtobufjs('light.js') }));
      build.onResolve({ filter: /^rxjs$/ }, ({ resolveDir }) => {
        const pkgFile = createRequire(path.join(resolveDir, 'x.js')).resolve('rxjs/package.json');
        const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { exports?: { '.'?: { es2015?: string } } };
        const es2015 = pkg.exports?.['.']?.es2015;
        if (!es2015) throw new Error(`${pkgFile} has no "es2015" export any more`);
        return { path: path.join(path.dirname(pkgFile), es2015) };
      });
      // cli/etcdlocker.ts's lazy imports of ./run.js and ./status.js: the core, through the code-cache loader.
      build.onResolve({ filter: /^\.\/(run|status)\.js$/ }, ({ importer, kind }) => {
        if (importer !== ENTRY || kind !== 'dynamic-import') return undefined;
        return generatedModule(
          'etcdlocker-core',
          `import { loadCore } from ${JSON.stringify(LOAD_CORE)};\n` +
            `const core = loadCore(require('node:path').join(__dirname, ${JSON.stringify(path.basename(CORE))}));\n` +
            'export const run = core.run;\nexport const status = core.status;\n',
        );
      });
      build.onLoad({ filter: /.*/, namespace: NAMESPACE }, ({ path: name }) => ({
        contents: generated.get(name)!,
        resolveDir: ROOT,
        loader: 'js',
      }));
    },
  };
}

/** Which packages a bundle holds, with their versions and licenses, from esbuild's metafile. */
function bundledPackages(metafile: esbuild.Metafile): string[] {
  const packages = new Set<string>();
  for (const input of Object.keys(metafile.inputs)) {
    const match = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (!match) continue;
    const pkgFile = path.join(ROOT, input.slice(0, match.index + match[0].length), 'package.json');
    const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { name: string; version: string; license?: string };
    packages.add(`${pkg.name}@${pkg.version} (${pkg.license ?? 'see its package'})`);
  }
  return [...packages].sort();
}

const COMMON: esbuild.BuildOptions = {
  absWorkingDir: ROOT,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // cli/etcdlocker.ts finds package.json from its own URL; both bundles are CommonJS.
  define: { 'import.meta.url': '__etcdlockerFileUrl' },
  // Not minified: a stack trace from a user should still read. The code cache makes the size cost little.
  minify: false,
  logLevel: 'warning',
};

/** Bundles `options` with a header: what it is and which packages it holds (after the entry's shebang, kept). */
async function bundle(options: esbuild.BuildOptions, about: string): Promise<void> {
  const { metafile } = await esbuild.build({ ...options, metafile: true, write: false });
  const header = [
    `// ${about}`,
    '// Built by scripts/build-cli.ts from cli/ and lib/ of etcd-lock; do not edit. It bundles:',
    ...bundledPackages(metafile).map((name) => `//   ${name}`),
    // Strict mode for the whole file, as cli/ and lib/ are written for (ES modules are) and as the bundled
    // packages ran in the first, ES module, bundle. esbuild's own "use strict" would come after the line below.
    "'use strict';",
    "const __etcdlockerFileUrl = require('node:url').pathToFileURL(__filename).href;",
  ];
  await esbuild.build({ ...options, banner: { js: header.join('\n') } });
}

/** Runs `code` (an ES module that may import load-core.ts) in a fresh node: bundled, so without tsx's hooks. */
async function runInFreshNode(code: string): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'etcdlocker-build-'));
  try {
    const file = path.join(dir, 'task.mjs');
    await esbuild.build({
      ...COMMON,
      format: 'esm',
      define: {},
      stdin: { contents: code, resolveDir: ROOT },
      outfile: file,
    });
    const result = spawnSync(process.execPath, [file], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`${code}\nfailed: ${result.stderr}`);
    return result.stdout.trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const protos = readEtcd3Protos();
const setup = knownSetup();
if (setup !== true) {
  console.warn(
    `build-cli: protobufjs's Type#setup is not the one proto-loader-stand-in.ts repeats (sha256 ${setup}): ` +
      'the bundle generates message codecs at run time, as protobufjs does. Compare setupFrom with it, then update ' +
      'KNOWN_SETUP_SHA256 in scripts/build-cli/etcd3-protos.ts.',
  );
}
const codecs = setup === true ? codecsSource(protos.root) : 'module.exports = {};\n';

rmSync(OUT_DIR, { recursive: true, force: true });
await bundle(
  {
    ...COMMON,
    stdin: {
      contents: "export { run } from './cli/run.ts';\nexport { status } from './cli/status.ts';\n",
      resolveDir: ROOT,
      sourcefile: 'etcdlocker-core',
      loader: 'ts',
    },
    outfile: CORE,
    plugins: [etcdlockerPlugin()],
  },
  'etcdlocker: the lock, loaded by etcdlocker.cjs for a run or --status (with V8 code cache etcdlocker-core.cjs.cache).',
);
await bundle(
  { ...COMMON, entryPoints: [ENTRY], outfile: BIN, plugins: [etcdlockerPlugin()] },
  'etcdlocker: the command line; the lock, etcd3 and gRPC are in etcdlocker-core.cjs.',
);
chmodSync(BIN, 0o755);

// Two processes: in the one that wrote it, V8 would find the script in its own compilation cache.
const loadCore = `import { codeCacheAccepted, writeCodeCache } from ${JSON.stringify(LOAD_CORE)};`;
await runInFreshNode(`${loadCore}\nwriteCodeCache(${JSON.stringify(CORE)});`);
if ((await runInFreshNode(`${loadCore}\nconsole.log(codeCacheAccepted(${JSON.stringify(CORE)}));`)) !== 'true') {
  throw new Error(`V8 rejected the code cache of ${CORE} that this Node.js had just written`);
}
