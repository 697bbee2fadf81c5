export * from './backend';
export { EtcdV3Backend } from './backend-v3';
export { EtcdV2Backend } from './backend-v2';
export { Registry, ExpiredError, type RegistryOptions } from './registry';
export { Authenticator, LOCAL_ADMIN, type AuthnOptions } from './authn';
export { storeImplementation } from './server';
export { ClusterSigner, CsrController, type CsrControllerOptions } from './csr-signer';
export { GarbageCollector, type GarbageCollectorOptions } from './garbage-collector';
export { NodeLifecycleController, reconcileReadyTaints, markUnknown, TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE, type NodeLifecycleOptions } from './node-lifecycle';
