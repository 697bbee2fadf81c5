export { main } from './main';
export { up, status, parseUpArgs, readClusterInfo, type UpOptions, type ClusterInfo } from './up';
export { down, leftovers, cleanupRun } from './down';
export { SERVICES, serviceBin } from './services';
export { createClusterPki, ensureCa, issue, certSubject, type ClusterPki, type CertPair } from './certs';
export { writeAdminConfig, readConfig, writeConfig, resolveConfigPath, adminConfigPath, type BerthConfig } from './kubeconfig';
export { runKubectl, defaultIo, type Io } from './kubectl';
