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

/** Gives every message type under `namespace` that has codecs a `setup` that uses them. */
function useCodecs(namespace: protobuf.NamespaceBase, codecs: Record<string, Codecs>): void {
  for (const nested of namespace.nestedArray) {
    const own = nested instanceof protobuf.Type ? codecs[nested.fullName] : undefined;
    if (own) (nested as protobuf.Type).setup = setupFrom(own);
    if (nested instanceof protobuf.Namespace) useCodecs(nested, codecs);
  }
}

/**
 * proto-loader's `loadSync`, for the one file the build parsed: the file name is not read. The protobufjs root is
 * built on the first message a call encodes or decodes, not when etcd3 is loaded. Without `codecs` (or for a type
 * without), protobufjs generates them at run time, as it does under proto-loader.
 *
 * @example
 * const loadSync = createLoadSync(protos, codecs); // both from etcd3-protos.ts at build time
 * grpc.loadPackageDefinition(loadSync('rpc.proto', { keepCase: true, longs: String, enums: String, defaults: true }));
 */
export function createLoadSync(protos: ParsedProtos, codecs: Record<string, Codecs> = {}) {
  let root: protobuf.Root | undefined;
  const lookupType = (fullName: string): protobuf.Type => {
    if (!root) {
      root = protobuf.Root.fromJSON(protos.root);
      useCodecs(root, codecs);
      root.resolveAll(); // as proto-loader does after parsing
    }
    return root.lookupType(fullName);
  };

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
