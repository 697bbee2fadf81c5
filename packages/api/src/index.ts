// The Berth contracts as TypeScript: every proto package under its area name
// (`core`, `store`, `runtime`, `cni`, `scheduler`, `kubelet`), plus the path of the binary
// descriptor set that servers hand to gRPC reflection.
import * as path from 'node:path';

export * from './gen/index';

/** Absolute path of the FileDescriptorSet of all Berth protos (built with the code). */
export const descriptorSetPath = path.resolve(__dirname, '..', 'descriptor', 'berth.binpb');
