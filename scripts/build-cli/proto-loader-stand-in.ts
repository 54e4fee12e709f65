/**
 * Stands in for `@grpc/proto-loader` inside etcdlocker's bundle (scripts/build-cli.ts), where etcd3's
 * lib/connection-pool.js calls `loadSync()` on its rpc.proto once, as it is loaded. The real loadSync parses the
 * .proto text with protobufjs's full build and then describes every message for gRPC reflection: about 50 ms of
 * every start. The build did the parse already, with proto-loader itself (etcd3-protos.ts), and hands this module the
 * result: protobufjs's JSON form of the parsed root, per service the attributes proto-loader gives each method, and
 * the message codecs protobufjs would otherwise generate at run time. Here they become the same package definition,
 * with protobufjs's light build (no .proto parser).
 *
 * A method serializes and deserializes as proto-loader's do (`fromObject` then `encode`; `decode` then `toObject`
 * with etcd3's options). Left out: the reflection descriptors (each method's `requestType` and `responseType`, and
 * the package's message and enum entries), which only gRPC servers and the reflection service read; etcd3 only makes
 * clients. spec/unit/proto-loader-stand-in.spec.ts checks every method against proto-loader's.
 */
import protobuf from 'protobufjs/light.js';

/** What proto-loader gives a method, less the functions and the reflection descriptors; the types by full name. */
export interface MethodAttributes {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  originalName: string;
  options: Record<string, unknown>;
  /** As `.etcdserverpb.RangeRequest`. */
  requestType: string;
  responseType: string;
}

/** The build's parse: protobufjs's JSON of the parsed rpc.proto, and services by name, methods by name. */
export interface ParsedProtos {
  root: protobuf.INamespace;
  services: Record<string, Record<string, MethodAttributes>>;
  /**
   * For each request and response type, the types its messages can hold: full names of types declared in a package
   * (not in a message: those come with their message), itself included.
   */
  closures: Record<string, string[]>;
}

type Util = typeof protobuf.util;
type Types = (protobuf.Type | protobuf.Enum | null)[];
/** One message type's functions, as etcd3-protos.ts's `codecsSource()` writes them: each takes its scope. */
export interface Codecs {
  encode(Writer: typeof protobuf.Writer, types: Types, util: Util): protobuf.Type['encode'];
  decode(Reader: typeof protobuf.Reader, types: Types, util: Util): protobuf.Type['decode'];
  verify(types: Types, util: Util): protobuf.Type['verify'];
  fromObject(types: Types, util: Util): protobuf.Type['fromObject'];
  toObject(types: Types, util: Util): protobuf.Type['toObject'];
}

type Serialize = (value: unknown) => Buffer;
type Deserialize = (bytes: Buffer) => unknown;

interface MethodDefinition extends Omit<MethodAttributes, 'requestType' | 'responseType'> {
  requestSerialize: Serialize;
  requestDeserialize: Deserialize;
  responseSerialize: Serialize;
  responseDeserialize: Deserialize;
}

/**
 * protobufjs's `Type#setup` (7.6.6, src/type.js), with the build's codecs where it would generate them: the same
 * `types`, the same scope, the same order. etcd's types have none of protobufjs's wrappers (google.protobuf.Any).
 */
function setupFrom(codecs: Codecs) {
  return function setup(this: protobuf.Type): protobuf.Type {
    const types: Types = [];
    for (const field of this.fieldsArray) types.push(field.resolve().resolvedType);
    const { Writer, Reader, util } = protobuf;
    this.encode = codecs.encode(Writer, types, util);
    this.decode = codecs.decode(Reader, types, util);
    this.verify = codecs.verify(types, util);
    this.fromObject = codecs.fromObject(types, util);
    this.toObject = codecs.toObject(types, util);
    return this;
  };
}

/** Gives `object` and the message types in it a `setup` with their codecs, where the build made some. */
function useCodecs(object: protobuf.ReflectionObject, codecs: Record<string, Codecs>): void {
  const own = object instanceof protobuf.Type ? codecs[object.fullName] : undefined;
  if (own) (object as protobuf.Type).setup = setupFrom(own);
  if (object instanceof protobuf.Namespace) for (const nested of object.nestedArray) useCodecs(nested, codecs);
}

/**
 * The protobufjs root of the build's JSON, built a few types at a time: `types(fullName)` adds the types a message of
 * `fullName` can hold (its closure) and returns it. A lock uses some 25 of rpc.proto's 108 types, and building them
 * all took as long again as the rest of the root's work (~7 ms). The parts are what `Root.fromJSON` would make of
 * the JSON: the same package namespaces (with their options), the same `addJSON` of each type, then `resolveAll`.
 */
function lazyRoot(protos: ParsedProtos, codecs: Record<string, Codecs>) {
  const root = new protobuf.Root();
  if (protos.root.options) root.setOptions(protos.root.options);
  const added = new Set<string>();

  const add = (fullName: string) => {
    const path = fullName.slice(1).split('.'); // '.etcdserverpb.TxnRequest': a type declared in package etcdserverpb
    const name = path.pop()!;
    let namespace: protobuf.NamespaceBase = root;
    let json: protobuf.INamespace = protos.root;
    for (const part of path) {
      json = json.nested![part] as protobuf.INamespace;
      let next = namespace.get(part) as protobuf.Namespace | null;
      if (!next) namespace.add((next = new protobuf.Namespace(part, json.options)));
      namespace = next;
    }
    namespace.addJSON({ [name]: json.nested![name]! });
    useCodecs(namespace.get(name)!, codecs);
  };

  return (fullName: string): protobuf.Type => {
    const closure = protos.closures[fullName];
    if (!closure) throw new Error(`etcdlocker's protos have no ${fullName}`);
    const missing = closure.filter((name) => !added.has(name));
    for (const name of missing) {
      added.add(name);
      add(name);
    }
    if (missing.length > 0) root.resolveAll(); // as proto-loader does after parsing
    return root.lookupType(fullName);
  };
}

/**
 * proto-loader's `loadSync`, for the one file the build parsed: the file name is not read. The protobufjs root is
 * built as calls encode and decode their first messages, not when etcd3 is loaded. Without `codecs` (or for a type
 * without), protobufjs generates them at run time, as it does under proto-loader.
 *
 * @example
 * const loadSync = createLoadSync(protos, codecs); // both from etcd3-protos.ts at build time
 * grpc.loadPackageDefinition(loadSync('rpc.proto', { keepCase: true, longs: String, enums: String, defaults: true }));
 */
export function createLoadSync(protos: ParsedProtos, codecs: Record<string, Codecs> = {}) {
  let lookup: ((fullName: string) => protobuf.Type) | undefined;
  const lookupType = (fullName: string) => (lookup ??= lazyRoot(protos, codecs))(fullName);

  const serializer = (fullName: string): Serialize => {
    let type: protobuf.Type | undefined;
    return (value) => {
      type ??= lookupType(fullName);
      if (Array.isArray(value)) {
        throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
      }
      // On Node.js protobufjs writes with its BufferWriter: finish() gives a Buffer, as gRPC wants.
      return type.encode(type.fromObject(value as Record<string, unknown>)).finish() as Buffer;
    };
  };

  const deserializer = (fullName: string, options: protobuf.IConversionOptions): Deserialize => {
    let type: protobuf.Type | undefined;
    return (bytes) => {
      type ??= lookupType(fullName);
      return type.toObject(type.decode(bytes), options);
    };
  };

  return function loadSync(_file: string, options: protobuf.IConversionOptions = {}) {
    const definition: Record<string, Record<string, MethodDefinition>> = {};
    for (const [serviceName, methods] of Object.entries(protos.services)) {
      const service: Record<string, MethodDefinition> = {};
      for (const [name, { requestType, responseType, ...attributes }] of Object.entries(methods)) {
        service[name] = {
          ...attributes,
          requestSerialize: serializer(requestType),
          requestDeserialize: deserializer(requestType, options),
          responseSerialize: serializer(responseType),
          responseDeserialize: deserializer(responseType, options),
        };
      }
      definition[serviceName] = service;
    }
    return definition;
  };
}
