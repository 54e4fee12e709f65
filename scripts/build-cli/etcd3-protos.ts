/**
 * Build time: etcd3's rpc.proto, parsed once here instead of at every etcdlocker start, in the form
 * proto-loader-stand-in.ts takes at run time (scripts/build-cli.ts puts both in the bundle).
 *
 * - `readEtcd3Protos()`: the parse, by etcd3's own @grpc/proto-loader and protobufjs with the options etcd3 passes,
 *   as protobufjs's JSON, and per service the attributes proto-loader gives each method.
 * - `codecsSource()`: protobufjs writes the encoder, decoder, verifier and converters of a message type as JavaScript
 *   text and compiles it with `Function` when the type is first used (its `Type#setup`): about 25 ms for the
 *   dozen types a lock uses. Here the same generators write the same text once, as a CommonJS module of functions
 *   that take the scope `Function` would have given them, so that V8 compiles them with the rest of the bundle
 *   (and keeps them in its code cache).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Protobuf from 'protobufjs';
import type { ParsedProtos } from './proto-loader-stand-in.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The module of etcd3 that loads its protos, and so the @grpc/proto-loader and protobufjs it gets. */
export const CONNECTION_POOL = createRequire(path.join(ROOT, 'package.json')).resolve('etcd3/lib/connection-pool.js');
const requireFromEtcd3 = createRequire(CONNECTION_POOL);
const requireFromLoader = createRequire(requireFromEtcd3.resolve('@grpc/proto-loader'));

/** The files of the protobufjs that etcd3's proto-loader uses, whatever npm hoisted: `light.js` for the bundle. */
export const resolveProtobufjs = (file: string) => requireFromLoader.resolve(`protobufjs/${file}`);
/** That protobufjs's light build, as the bundle has it. */
export const etcd3Protobufjs = () => requireFromLoader('protobufjs/light.js') as typeof Protobuf;

/** What etcd3 1.1.2 passes to loadSync (lib/connection-pool.js); `keepCase` shapes the parse, the rest toObject. */
export const ETCD3_LOAD_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

interface ProtoLoader {
  loadSync(file: string, options: object): Record<string, object>;
}
interface MethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  originalName: string;
  options: Record<string, unknown>;
}

/** etcd3's rpc.proto and the proto-loader etcd3 parses it with; throws if etcd3 no longer loads it as expected. */
export function etcd3ProtoLoader(): { protoFile: string; loader: ProtoLoader } {
  const call = /loadSync\)\(`\$\{__dirname\}\/\.\.\/proto\/rpc\.proto`, \{([^}]*)\}/.exec(
    readFileSync(CONNECTION_POOL, 'utf8'),
  );
  if (call?.[1]?.replace(/\s+/g, '') !== 'keepCase:true,longs:String,enums:String,defaults:true,oneofs:true,') {
    throw new Error(`etcd3's connection-pool.js no longer loads its protos as this build expects: ${call?.[0]}`);
  }
  return {
    protoFile: requireFromEtcd3.resolve('../proto/rpc.proto'),
    loader: requireFromEtcd3('@grpc/proto-loader') as ProtoLoader,
  };
}

/**
 * etcd3's rpc.proto parsed as etcd3 would parse it (proto-loader's own parse, then its loadSync for the method
 * attributes), as protobufjs's JSON and per-method attributes.
 *
 * @example
 * const protos = readEtcd3Protos(); // protos.services['etcdserverpb.KV'].Range.path === '/etcdserverpb.KV/Range'
 */
export function readEtcd3Protos(): ParsedProtos {
  const { protoFile, loader } = etcd3ProtoLoader();
  const util = requireFromLoader('./util.js') as { loadProtosWithOptionsSync(file: string, o: object): Protobuf.Root };
  const root = util.loadProtosWithOptionsSync(protoFile, ETCD3_LOAD_OPTIONS);
  const services: ParsedProtos['services'] = {};
  for (const [serviceName, entry] of Object.entries(loader.loadSync(protoFile, ETCD3_LOAD_OPTIONS))) {
    if ('format' in entry) continue; // a message or enum, for reflection only
    const reflected = root.lookupService(serviceName);
    const methods: ParsedProtos['services'][string] = {};
    for (const [name, method] of Object.entries(entry as Record<string, MethodDefinition>)) {
      const { resolvedRequestType, resolvedResponseType } = reflected.methods[name]!;
      methods[name] = {
        path: method.path,
        requestStream: method.requestStream,
        responseStream: method.responseStream,
        originalName: method.originalName,
        options: method.options,
        requestType: resolvedRequestType!.fullName,
        responseType: resolvedResponseType!.fullName,
      };
    }
    services[serviceName] = methods;
  }
  const closures: ParsedProtos['closures'] = {};
  for (const methods of Object.values(services)) {
    for (const { requestType, responseType } of Object.values(methods)) {
      for (const type of [requestType, responseType]) closures[type] ??= closure(root.lookupType(type));
    }
  }
  return { root: root.toJSON(), services, closures };
}

/** The type (or enum) declared in a package that holds `object`, or is it. */
function declaredInPackage(object: Protobuf.ReflectionObject): Protobuf.ReflectionObject {
  let declared = object;
  while (declared.parent && 'fieldsArray' in declared.parent) declared = declared.parent;
  return declared;
}

/** The full names of the types declared in a package that a message of `type` can hold, `type`'s first. */
function closure(type: Protobuf.Type): string[] {
  const found = new Set([declaredInPackage(type)]);
  const visit = (object: Protobuf.ReflectionObject) => {
    if (!('fieldsArray' in object)) return; // an enum
    const message = object as Protobuf.Type;
    for (const field of message.fieldsArray) {
      const resolved = field.resolve().resolvedType;
      if (resolved) found.add(declaredInPackage(resolved));
    }
    for (const nested of message.nestedArray) visit(nested);
  };
  for (const declared of found) visit(declared); // a Set iterates what is added while it does
  return [...found].map((declared) => declared.fullName);
}

/**
 * The SHA-256 of protobufjs's `Type.prototype.setup` (7.6.6) that proto-loader-stand-in.ts's `setupFrom` repeats with
 * the codecs of {@link codecsSource}. Another text means another protobufjs: the build then leaves the codecs out and
 * says so (the bundle still works, generating them at run time as protobufjs does).
 */
const KNOWN_SETUP_SHA256 = '185f533014170e8e043ac48d0b5714410b0fcf20e6aea2127ffca2ce3748604e';

/** Whether protobufjs's `Type#setup` is the one proto-loader-stand-in.ts repeats; the text's hash otherwise. */
export function knownSetup(): true | string {
  const protobuf = etcd3Protobufjs();
  const sha256 = createHash('sha256').update(protobuf.Type.prototype.setup.toString()).digest('hex');
  return sha256 === KNOWN_SETUP_SHA256 || sha256;
}

/**
 * A CommonJS module whose export maps the full name of every message type in `root` to its codecs: for each of
 * encode, decode, verify, fromObject and toObject, a function of the scope protobufjs's `Type#setup` gives the
 * generated text, returning the function `Function` would have made of it. In the bundle they run in strict mode
 * (`Function`'s do not), as the rest of the bundle; spec/unit/proto-loader-stand-in.spec.ts runs them so.
 *
 * @example
 * const source = codecsSource(readEtcd3Protos().root); // module.exports = { ".etcdserverpb.RangeRequest": { ... } }
 */
export function codecsSource(rootJson: Protobuf.INamespace): string {
  const protobuf = etcd3Protobufjs();
  const root = protobuf.Root.fromJSON(rootJson);
  root.resolveAll(); // the state the run-time root is in when a type is set up
  const lines = [
    "// Generated by scripts/build-cli/etcd3-protos.ts with protobufjs's own code generators, from etcd3's rpc.proto.",
    'module.exports = {',
  ];
  const visit = (namespace: Protobuf.NamespaceBase) => {
    for (const nested of namespace.nestedArray) {
      if (nested instanceof protobuf.Type) {
        lines.push(
          `  ${JSON.stringify(nested.fullName)}: {`,
          `    encode: function (Writer, types, util) { return ${protobuf.encoder(nested).toString()}; },`,
          `    decode: function (Reader, types, util) { return ${protobuf.decoder(nested).toString()}; },`,
          `    verify: function (types, util) { return ${protobuf.verifier(nested).toString()}; },`,
          `    fromObject: function (types, util) { return ${protobuf.converter.fromObject(nested).toString()}; },`,
          `    toObject: function (types, util) { return ${protobuf.converter.toObject(nested).toString()}; },`,
          '  },',
        );
      }
      if (nested instanceof protobuf.Namespace) visit(nested);
    }
  };
  visit(root);
  lines.push('};', '');
  return lines.join('\n');
}
