// gRPC server reflection (grpc.reflection.v1 and v1alpha) for every Berth server, built on first
// use. @grpc/reflection decodes every file descriptor of the package when it is constructed, and
// loading Berth's descriptor set comes first: about a second of CPU at every service start on
// this machine, for a debugging aid most runs never call. So the two services are registered with
// stand-in method definitions whose serializers and handler build the real ones on the first
// reflection call, through @grpc/reflection's public addToServer.
import * as fs from 'node:fs';
import type { MethodDefinition, Server, ServiceDefinition, UntypedHandleCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { descriptorSetPath } from '@berth/api';

const VERSIONS = ['v1', 'v1alpha'] as const;
const pathOf = (v: string) => `/grpc.reflection.${v}.ServerReflection/ServerReflectionInfo`;

interface Built { methods: Map<string, MethodDefinition<unknown, unknown>>; handlers: Map<string, UntypedHandleCall> }
let built: Built | undefined;

/** Everything Berth serves (its descriptor set) plus grpc.health.v1, as reflection reports it. */
export function reflectionPackage(): protoLoader.PackageDefinition {
  return { ...protoLoader.loadFileDescriptorSetFromBuffer(fs.readFileSync(descriptorSetPath)), ...protoLoader.loadSync(healthProtoPath) };
}

function build(): Built {
  if (built) return built;
  const b: Built = { methods: new Map(), handlers: new Map() };
  new ReflectionService(reflectionPackage()).addToServer({
    addService(def: ServiceDefinition, impl: UntypedServiceImplementation) {
      for (const [name, m] of Object.entries(def)) {
        b.methods.set(m.path, m as MethodDefinition<unknown, unknown>);
        b.handlers.set(m.path, impl[name] ?? impl[m.originalName ?? '']!);
      }
    },
  });
  built = b;
  return b;
}

/** Registers grpc.reflection.v1 and v1alpha on `server`; the work is done on their first call. */
export function addLazyReflection(server: Pick<Server, 'addService'>): void {
  for (const v of VERSIONS) {
    const path = pathOf(v);
    const real = () => build().methods.get(path)!;
    const def: ServiceDefinition = {
      ServerReflectionInfo: {
        path, requestStream: true, responseStream: true, originalName: 'serverReflectionInfo',
        requestSerialize: (x: unknown) => real().requestSerialize(x),
        requestDeserialize: (b: Buffer) => real().requestDeserialize(b),
        responseSerialize: (x: unknown) => real().responseSerialize(x),
        responseDeserialize: (b: Buffer) => real().responseDeserialize(b),
      },
    };
    server.addService(def, { ServerReflectionInfo: ((call: never) => (build().handlers.get(path) as (c: never) => void)(call)) as UntypedHandleCall });
  }
}
