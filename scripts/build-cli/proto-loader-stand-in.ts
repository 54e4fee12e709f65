/**
 * Stands in for `@grpc/proto-loader` inside etcdlocker's bundle (scripts/build-cli.mjs), where etcd3's
 * lib/connection-pool.js calls `loadSync()` on its rpc.proto once, as it is loaded. The real loadSync parses the
 * .proto text with protobufjs's full build and then describes every message for gRPC reflection: about 50 ms of
 * every start. The build did the parse already, with proto-loader itself (see `readEtcd3Protos` there), and hands
 * this module the result: protobufjs's JSON form of the parsed root, and per service the attributes proto-loader
 * gives each method. Here that JSON becomes the same package definition, with protobufjs's light build (no .proto
 * parser).
 *
 * A method serializes and deserializes as proto-loader's do (`fromObject` then `encode`; `decode` then `toObject`
 * with etcd3's options). Left out: the reflection descriptors (each method's `requestType` and `responseType`, and
 * the package's message and enum entries), which only gRPC servers and the reflection service read; etcd3 only makes
 * clients.
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

/** The build's product: protobufjs's JSON of the parsed rpc.proto, and services by name, methods by name. */
export interface ParsedProtos {
  root: protobuf.INamespace;
  services: Record<string, Record<string, MethodAttributes>>;
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
 * proto-loader's `loadSync`, for the one file the build parsed: the file name is not read. The protobufjs root is
 * built on the first message a call encodes or decodes, not when etcd3 is loaded.
 *
 * @example
 * const loadSync = createLoadSync(protos); // protos from readEtcd3Protos() at build time
 * grpc.loadPackageDefinition(loadSync('rpc.proto', { keepCase: true, longs: String, enums: String, defaults: true }));
 */
export function createLoadSync(protos: ParsedProtos) {
  let root: protobuf.Root | undefined;
  const lookupType = (fullName: string): protobuf.Type => {
    if (!root) {
      root = protobuf.Root.fromJSON(protos.root);
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
