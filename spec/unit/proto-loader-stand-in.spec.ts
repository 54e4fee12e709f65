import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { runInThisContext } from 'node:vm';
import type * as Protobuf from 'protobufjs';
import {
  codecsSource,
  ETCD3_LOAD_OPTIONS,
  etcd3Protobufjs,
  etcd3ProtoLoader,
  knownSetup,
  readEtcd3Protos,
} from '../../scripts/build-cli/etcd3-protos.js';
import { type Codecs, createLoadSync, type ParsedProtos } from '../../scripts/build-cli/proto-loader-stand-in.js';

type Serialize = (value: unknown) => Buffer;
type Deserialize = (bytes: Buffer) => unknown;
interface Method {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  originalName: string;
  options: unknown;
  requestSerialize: Serialize;
  requestDeserialize: Deserialize;
  responseSerialize: Serialize;
  responseDeserialize: Deserialize;
  requestType?: { type: { name: string } };
  responseType?: { type: { name: string } };
}
type Definition = Record<string, Record<string, Method> | { format: string }>;

/** A value for every scalar type that is not its default, with int64s past 2^53 (etcd's lease IDs are). */
const SCALARS: Record<string, unknown> = {
  double: 1.5,
  float: -2.5,
  int32: -7,
  sint32: -8,
  sfixed32: -9,
  uint32: 7,
  fixed32: 8,
  int64: '-9007199254740993',
  sint64: '-9007199254740995',
  sfixed64: '9007199254740997',
  uint64: '18446744073709551615',
  fixed64: '9007199254740993',
  bool: true,
  string: 'lock ü',
  bytes: Buffer.from([0, 1, 255]),
};

/**
 * Plain objects of `type` as etcd3 passes them: every field set (nested messages to `depth`, repeated fields twice,
 * the last value of an enum), one object per member of its largest oneof, and an empty one.
 */
function samples(type: Protobuf.Type, depth = 3): Record<string, unknown>[] {
  const members = Math.max(1, ...type.oneofsArray.map((oneof) => oneof.fieldsArray.length));
  const objects: Record<string, unknown>[] = [{}];
  for (let member = 0; member < members; member++) {
    const object: Record<string, unknown> = {};
    for (const field of type.fieldsArray) {
      if (field.partOf && field.partOf.fieldsArray.indexOf(field) !== member % field.partOf.fieldsArray.length)
        continue;
      const resolved = field.resolve().resolvedType;
      let value: unknown;
      if (resolved instanceof Object && 'values' in resolved) value = Object.keys(resolved.values).at(-1);
      else if (resolved) value = depth > 0 ? samples(resolved, depth - 1).at(-1) : undefined;
      else value = SCALARS[field.type];
      if (value === undefined) continue;
      object[field.name] = field.repeated ? [value, value] : value;
    }
    objects.push(object);
  }
  return objects;
}

describe("etcdlocker's bundled @grpc/proto-loader stand-in (scripts/build-cli)", () => {
  let real: Definition;
  let root: Protobuf.Root;
  let protos: ParsedProtos;
  let codecs: Record<string, Codecs>;
  const built = new Set<string>();

  before(() => {
    const { protoFile, loader } = etcd3ProtoLoader();
    real = loader.loadSync(protoFile, ETCD3_LOAD_OPTIONS) as Definition;
    protos = readEtcd3Protos();
    root = etcd3Protobufjs().Root.fromJSON(protos.root);
    root.resolveAll();
    // The build's codecs module, evaluated as the bundle does: CommonJS, strict mode. Each use is recorded.
    const module = { exports: {} as Record<string, Codecs> };
    const evaluate = runInThisContext(`(function (module, exports) {'use strict';${codecsSource(protos.root)}\n})`) as (
      module: unknown,
      exports: unknown,
    ) => void;
    evaluate(module, module.exports);
    codecs = Object.fromEntries(
      Object.entries(module.exports).map(([name, own]) => [
        name,
        { ...own, encode: (...scope: Parameters<Codecs['encode']>) => (built.add(name), own.encode(...scope)) },
      ]),
    );
  });

  it('is built for this protobufjs: its Type#setup is the one the stand-in repeats (else the build skips codecs)', () => {
    assert.equal(knownSetup(), true);
  });

  for (const withCodecs of [true, false]) {
    it(`gives every method of every service what proto-loader gives, and (de)serializes as it does${withCodecs ? '' : ", without the build's codecs"}`, () => {
      const standIn = createLoadSync(protos, withCodecs ? codecs : {})('rpc.proto', ETCD3_LOAD_OPTIONS);
      const services = Object.entries(real).filter(([, entry]) => !('format' in entry));
      assert.deepEqual(Object.keys(standIn).sort(), services.map(([name]) => name).sort());
      let checked = 0;
      for (const [serviceName, methods] of services as [string, Record<string, Method>][]) {
        const mine = standIn[serviceName]!;
        assert.deepEqual(Object.keys(mine).sort(), Object.keys(methods).sort(), serviceName);
        for (const [name, method] of Object.entries(methods)) {
          const other = mine[name]!;
          const where = `${serviceName}.${name}`;
          for (const attribute of ['path', 'requestStream', 'responseStream', 'originalName', 'options'] as const) {
            assert.deepEqual(other[attribute], method[attribute], `${where} ${attribute}`);
          }
          for (const [side, typeName] of [
            ['request', `etcdserverpb.${method.requestType!.type.name}`],
            ['response', `etcdserverpb.${method.responseType!.type.name}`],
          ] as const) {
            const serialize = `${side}Serialize` as const;
            const deserialize = `${side}Deserialize` as const;
            for (const sample of samples(root.lookupType(typeName))) {
              const bytes = method[serialize](sample);
              assert.deepEqual(other[serialize](sample), bytes, `${where} ${serialize} ${JSON.stringify(sample)}`);
              assert.deepEqual(other[deserialize](bytes), method[deserialize](bytes), `${where} ${deserialize}`);
              checked++;
            }
          }
          assert.throws(() => other.requestSerialize([]), /expected object .* got array instead/);
        }
      }
      const methodCount = services.reduce((sum, [, methods]) => sum + Object.keys(methods).length, 0);
      assert.ok(methodCount > 40 && checked >= 4 * methodCount, `${checked} messages over ${methodCount} methods`);
    });
  }

  it("set up etcd's message types with the build's codecs, not protobufjs's code generation at run time", () => {
    for (const name of ['.etcdserverpb.RangeRequest', '.etcdserverpb.TxnResponse', '.mvccpb.KeyValue']) {
      assert.ok(built.has(name), `${name} used the build's codecs`);
    }
    const types: string[] = [];
    const visit = (namespace: Protobuf.NamespaceBase) => {
      for (const nested of namespace.nestedArray) {
        if ('fieldsArray' in nested) types.push(nested.fullName);
        if ('nestedArray' in nested) visit(nested as Protobuf.NamespaceBase);
      }
    };
    visit(root);
    assert.deepEqual(Object.keys(codecs).sort(), types.sort(), 'codecs for every message type');
  });
});
