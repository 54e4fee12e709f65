#!/usr/bin/env node
// Builds the etcdlocker CLI into dist/cli/ (`npm run build` runs it after tsc has built dist/lib).
//
// Why: run from tsc's output, `etcdlocker -k k -- true` spent about 300 ms loading code before it sent its first
// request: ~450 files of rxjs (Node.js resolves `rxjs` to its CommonJS build, the whole library), @grpc/grpc-js,
// and etcd3, which parses its .proto files with @grpc/proto-loader and protobufjs every time it is loaded.
// bench/notes.md has the breakdown. This script makes three files:
//
//   dist/cli/etcdlocker.js          the bin: cli/etcdlocker.ts with what --help, --version and a usage error
//                                   need (args, arg, cross-spawn), an ES module. The lock is not in it.
//   dist/cli/etcdlocker-core.cjs    cli/run.ts and cli/status.ts with lib/, etcd3, gRPC, protobufjs and rxjs: one
//                                   script, loaded by the bin (scripts/build-cli/load-core.ts) only for a run or
//                                   --status, where cli/etcdlocker.ts imports ./run.js or ./status.js.
//   dist/cli/etcdlocker-core.cjs.cache   V8's code cache of the core, written by a Node.js that loaded it. Another
//                                   Node.js version rejects it and compiles the source: slower, never wrong.
//
// In the core:
// - etcd3's rpc.proto is parsed here, at build time, by etcd3's own @grpc/proto-loader, and ships as JSON; the
//   core's `@grpc/proto-loader` (for etcd3 only) is scripts/build-cli/proto-loader-stand-in.ts, which builds the
//   same gRPC package definition from that JSON with protobufjs's light build. grpc-js's own (lazy) uses of
//   proto-loader are for channelz and ORCA, which etcdlocker never starts: a stub that throws if ever called.
// - rxjs comes from its ES2015 build, so that only the operators lib/ uses are in the bundle (rxjs has
//   "sideEffects": false).
//
// The sources in cli/ and lib/ stay as they are and run as they are under tsx (`npx tsx cli/etcdlocker.ts`);
// only this build bundles them. package.json's dependencies stay: dist/lib imports them, and npm still installs
// them (their licenses come with them; the bin's header lists what it bundles).
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT_DIR = path.join(ROOT, 'dist/cli');
const BIN = path.join(OUT_DIR, 'etcdlocker.js');
const CORE = path.join(OUT_DIR, 'etcdlocker-core.cjs');
const STAND_IN = path.join(ROOT, 'scripts/build-cli/proto-loader-stand-in.ts');
const LOAD_CORE = path.join(ROOT, 'scripts/build-cli/load-core.ts');

const requireFromRoot = createRequire(path.join(ROOT, 'package.json'));
/** The module of etcd3 that loads its protos, and so the @grpc/proto-loader and protobufjs it gets. */
const CONNECTION_POOL = requireFromRoot.resolve('etcd3/lib/connection-pool.js');
const requireFromEtcd3 = createRequire(CONNECTION_POOL);
const requireFromLoader = createRequire(requireFromEtcd3.resolve('@grpc/proto-loader'));

/** What etcd3 1.1.2 passes to loadSync (lib/connection-pool.js); `keepCase` shapes the parse, the rest toObject. */
const ETCD3_LOAD_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/**
 * etcd3's rpc.proto parsed as etcd3 would parse it (its proto-loader's own parse, then its loadSync for the method
 * attributes), in the form proto-loader-stand-in.ts takes.
 */
function readEtcd3Protos() {
  const source = readFileSync(CONNECTION_POOL, 'utf8');
  const call = /loadSync\)\(`\$\{__dirname\}\/\.\.\/proto\/rpc\.proto`, \{([^}]*)\}/.exec(source);
  const options = call?.[1].replace(/\s+/g, '');
  if (options !== 'keepCase:true,longs:String,enums:String,defaults:true,oneofs:true,') {
    throw new Error(`etcd3's connection-pool.js no longer loads its protos as this build expects: ${call?.[0]}`);
  }
  const protoFile = requireFromEtcd3.resolve('../proto/rpc.proto');
  const loader = requireFromEtcd3('@grpc/proto-loader');
  const root = requireFromLoader('./util.js').loadProtosWithOptionsSync(protoFile, ETCD3_LOAD_OPTIONS);
  const definition = loader.loadSync(protoFile, ETCD3_LOAD_OPTIONS);
  const services = {};
  for (const [serviceName, entry] of Object.entries(definition)) {
    if ('format' in entry) continue; // a message or enum: reflection only
    const reflected = root.lookupService(serviceName);
    services[serviceName] = {};
    for (const [name, method] of Object.entries(entry)) {
      const { resolvedRequestType, resolvedResponseType } = reflected.methods[name];
      services[serviceName][name] = {
        path: method.path,
        requestStream: method.requestStream,
        responseStream: method.responseStream,
        originalName: method.originalName,
        options: method.options,
        requestType: resolvedRequestType.fullName,
        responseType: resolvedResponseType.fullName,
      };
    }
  }
  return { root: root.toJSON(), services };
}

/** A module made here, for the plugin to load: its text by name. */
const generated = new Map();
const VIRTUAL = 'etcdlocker-build';
const virtual = (name, contents) => {
  generated.set(name, contents);
  return { path: name, namespace: VIRTUAL };
};

function plugin({ protos }) {
  return {
    name: 'etcdlocker',
    setup(build) {
      build.onResolve({ filter: /^@grpc\/proto-loader$/ }, ({ importer }) => {
        if (importer === CONNECTION_POOL) {
          return virtual(
            'etcd3-proto-loader',
            `import { createLoadSync } from ${JSON.stringify(STAND_IN)};\n` +
              `export const loadSync = createLoadSync(${JSON.stringify(protos)});\n`,
          );
        }
        if (importer.includes(`${path.sep}@grpc${path.sep}grpc-js${path.sep}`)) {
          return virtual(
            'no-proto-loader',
            'export function loadSync() {\n' +
              "  throw new Error('etcdlocker: gRPC channelz and ORCA are not in this bundle (no @grpc/proto-loader)');\n" +
              '}\n',
          );
        }
        throw new Error(`unexpected import of @grpc/proto-loader from ${importer}`);
      });
      // The stand-in must use the protobufjs that etcd3's proto-loader uses, whatever npm hoisted.
      build.onResolve({ filter: /^protobufjs\/light\.js$/ }, () => ({
        path: requireFromLoader.resolve('protobufjs/light.js'),
      }));
      build.onResolve({ filter: /^rxjs$/ }, ({ resolveDir }) => {
        const pkgFile = createRequire(path.join(resolveDir, 'x.js')).resolve('rxjs/package.json');
        const es2015 = JSON.parse(readFileSync(pkgFile, 'utf8')).exports?.['.']?.es2015;
        if (!es2015) throw new Error(`${pkgFile} has no "es2015" export any more`);
        return { path: path.join(path.dirname(pkgFile), es2015) };
      });
      // cli/etcdlocker.ts's lazy imports of ./run.js and ./status.js: the core, through the code-cache loader.
      build.onResolve({ filter: /^\.\/(run|status)\.js$/ }, ({ importer, kind }) => {
        if (importer !== path.join(ROOT, 'cli/etcdlocker.ts') || kind !== 'dynamic-import') return undefined;
        return virtual(
          'etcdlocker-core',
          `import { fileURLToPath } from 'node:url';\n` +
            `import { loadCore } from ${JSON.stringify(LOAD_CORE)};\n` +
            `const core = loadCore(fileURLToPath(new URL('./${path.basename(CORE)}', import.meta.url)));\n` +
            'export const run = core.run;\nexport const status = core.status;\n',
        );
      });
      build.onLoad({ filter: /.*/, namespace: VIRTUAL }, ({ path: name }) => ({
        contents: generated.get(name),
        resolveDir: ROOT,
        loader: 'js',
      }));
    },
  };
}

/** Which packages a bundle holds, with their versions and licenses, from esbuild's metafile. */
function bundledPackages(metafile) {
  const packages = new Map();
  for (const input of Object.keys(metafile.inputs)) {
    const match = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (!match) continue;
    const dir = input.slice(0, match.index + match[0].length);
    if (packages.has(dir)) continue;
    const pkg = JSON.parse(readFileSync(path.join(ROOT, dir, 'package.json'), 'utf8'));
    packages.set(dir, `${pkg.name}@${pkg.version} (${pkg.license ?? 'see its package'})`);
  }
  return [...new Set(packages.values())].sort();
}

const common = {
  absWorkingDir: ROOT,
  bundle: true,
  platform: 'node',
  target: 'node20',
  // Not minified: a stack trace from a user should still read. V8's code cache makes the size cost little.
  minify: false,
  metafile: true,
  logLevel: 'warning',
};

/** Bundles `options`, with the list of bundled packages at the top (after the entry's shebang, which esbuild keeps). */
async function bundle(options, lines = []) {
  const first = await esbuild.build({ ...options, write: false });
  const header = [
    '// Built by scripts/build-cli.mjs from cli/ and lib/ of etcd-lock; do not edit. Bundles:',
    ...bundledPackages(first.metafile).map((name) => `//   ${name}`),
    ...lines,
  ].join('\n');
  await esbuild.build({ ...options, banner: { js: `${header}\n${options.banner?.js ?? ''}`.trimEnd() } });
}

/** Runs `code` (an ES module importing load-core.ts) in a fresh node, bundled so that no loader hooks are around. */
async function runWithLoadCore(code) {
  const dir = mkdtempSync(path.join(tmpdir(), 'etcdlocker-build-'));
  try {
    const file = path.join(dir, 'task.mjs');
    await esbuild.build({
      ...common,
      stdin: { contents: code, resolveDir: ROOT, loader: 'js' },
      format: 'esm',
      outfile: file,
      metafile: false,
    });
    const result = spawnSync(process.execPath, [file], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`${code}\nfailed: ${result.stderr}`);
    return result.stdout.trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

rmSync(OUT_DIR, { recursive: true, force: true });
const protos = readEtcd3Protos();

await bundle({
  ...common,
  stdin: {
    contents: "export { run } from './cli/run.ts';\nexport { status } from './cli/status.ts';\n",
    resolveDir: ROOT,
    sourcefile: 'etcdlocker-core',
    loader: 'ts',
  },
  outfile: CORE,
  format: 'cjs',
  plugins: [plugin({ protos })],
});

await bundle(
  {
    ...common,
    entryPoints: ['cli/etcdlocker.ts'],
    outfile: BIN,
    format: 'esm',
    // For the CommonJS packages in the bin (arg, cross-spawn), whose require() of Node.js's modules esbuild leaves.
    banner: {
      js: "import { createRequire as __createRequire } from 'node:module';\nconst require = __createRequire(import.meta.url);",
    },
    plugins: [plugin({ protos })],
  },
  [`// The lock, etcd3 and gRPC are in ${path.basename(CORE)}, loaded for a run or --status.`],
);
chmodSync(BIN, 0o755);

const loadCore = `import { codeCacheAccepted, writeCodeCache } from ${JSON.stringify(LOAD_CORE)};`;
await runWithLoadCore(`${loadCore}\nwriteCodeCache(${JSON.stringify(CORE)});`);
const accepted = await runWithLoadCore(`${loadCore}\nconsole.log(codeCacheAccepted(${JSON.stringify(CORE)}));`);
if (accepted !== 'true') throw new Error(`V8 rejected the code cache it had just written for ${CORE}`);
