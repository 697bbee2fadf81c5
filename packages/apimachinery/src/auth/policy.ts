// The built-in RBAC policy every cluster has (Kubernetes' bootstrap policy, trimmed to the
// resources Berth serves). The store always evaluates these in addition to stored objects, so
// a cluster cannot lock its administrators out by deleting them.
import type { core } from '@berth/api';
import { SYSTEM_AUTHENTICATED, SYSTEM_BOOTSTRAPPERS, SYSTEM_MASTERS, SYSTEM_NODES } from './types';

const RBAC_GROUP = 'rbac.authorization.k8s.io';
const CERTIFICATES_GROUP = 'certificates.k8s.io';
const READ = ['get', 'list', 'watch'];
const WRITE = ['create', 'delete', 'deletecollection', 'patch', 'update'];

function rule(verbs: string[], apiGroups: string[], resources: string[], resourceNames: string[] = []): core.PolicyRule {
  return { verbs, apiGroups, resources, resourceNames, nonResourceURLs: [] };
}
function urlRule(verbs: string[], urls: string[]): core.PolicyRule {
  return { verbs, apiGroups: [], resources: [], resourceNames: [], nonResourceURLs: urls };
}
function meta(name: string): core.ObjectMeta {
  return { name, generateName: '', namespace: '', uid: '', resourceVersion: '', generation: 0, labels: { 'kubernetes.io/bootstrapping': 'rbac-defaults' }, annotations: {}, creationTimestamp: '', deletionTimestamp: '', ownerReferences: [], finalizers: [] };
}
function clusterRole(name: string, rules: core.PolicyRule[]): core.ClusterRole {
  return { apiVersion: `${RBAC_GROUP}/v1`, kind: 'ClusterRole', metadata: meta(name), rules, aggregationRule: undefined };
}
function binding(name: string, role: string, subjects: { kind: 'User' | 'Group'; name: string }[]): core.ClusterRoleBinding {
  return {
    apiVersion: `${RBAC_GROUP}/v1`,
    kind: 'ClusterRoleBinding',
    metadata: meta(name),
    subjects: subjects.map((s) => ({ kind: s.kind, apiGroup: RBAC_GROUP, name: s.name, namespace: '' })),
    roleRef: { apiGroup: RBAC_GROUP, kind: 'ClusterRole', name: role },
  };
}

const VIEW_RESOURCES = ['pods', 'pods/log', 'pods/status', 'configmaps', 'serviceaccounts', 'events', 'limitranges', 'resourcequotas', 'resourcequotas/status', 'namespaces', 'namespaces/status'];

export const BUILTIN_CLUSTER_ROLES: core.ClusterRole[] = [
  clusterRole('cluster-admin', [rule(['*'], ['*'], ['*']), urlRule(['*'], ['*'])]),
  // admin: everything in a namespace, including its roles and bindings (granted per namespace).
  clusterRole('admin', [
    rule([...READ, ...WRITE], [''], ['pods', 'pods/log', 'pods/exec', 'pods/attach', 'configmaps', 'secrets', 'serviceaccounts', 'events']),
    rule(READ, [''], ['limitranges', 'resourcequotas', 'resourcequotas/status', 'namespaces', 'namespaces/status', 'pods/status']),
    rule([...READ, ...WRITE], [RBAC_GROUP], ['roles', 'rolebindings']),
    rule([...READ, ...WRITE], ['coordination.k8s.io'], ['leases']),
  ]),
  clusterRole('edit', [
    rule([...READ, ...WRITE], [''], ['pods', 'pods/exec', 'pods/attach', 'configmaps', 'secrets', 'serviceaccounts']),
    rule(READ, [''], ['pods/log', 'pods/status', 'events', 'limitranges', 'resourcequotas', 'resourcequotas/status', 'namespaces', 'namespaces/status']),
    rule([...READ, ...WRITE], ['coordination.k8s.io'], ['leases']),
  ]),
  clusterRole('view', [rule(READ, [''], VIEW_RESOURCES), rule(READ, ['coordination.k8s.io'], ['leases'])]),
  clusterRole('system:scheduler', [
    rule(READ, [''], ['pods', 'nodes', 'namespaces']),
    rule(['delete'], [''], ['pods']),
    rule(['create'], [''], ['pods/binding']),
    rule(['update', 'patch'], [''], ['pods/status']),
    rule(['create', 'patch', 'update'], [''], ['events']),
    rule(READ, ['scheduling.k8s.io'], ['priorityclasses']),
    rule(['create'], ['coordination.k8s.io'], ['leases']),
    rule(['get', 'update'], ['coordination.k8s.io'], ['leases'], ['berth-scheduler']),
  ]),
  // What a kubelet may do in general; the Node authorizer narrows it to the node's own objects.
  clusterRole('system:node', [
    rule(['get', 'list', 'watch', 'create', 'update', 'patch'], [''], ['nodes']),
    rule(['update', 'patch'], [''], ['nodes/status']),
    rule(['get', 'list', 'watch', 'delete'], [''], ['pods']),
    rule(['update', 'patch'], [''], ['pods/status']),
    rule(['create', 'patch', 'update'], [''], ['events']),
    rule(['get', 'create', 'update', 'patch', 'delete'], ['coordination.k8s.io'], ['leases']),
  ]),
  // Joining and renewing nodes ask for their client certificate (Kubernetes' role of the name).
  clusterRole('system:node-bootstrapper', [rule(['create', 'get', 'list', 'watch'], [CERTIFICATES_GROUP], ['certificatesigningrequests'])]),
  // Whose node client requests the built-in approver approves: a bootstrapper's for any node,
  // a node's for itself (the approver asks RBAC about the requester, as Kubernetes' does).
  clusterRole('system:certificates.k8s.io:certificatesigningrequests:nodeclient', [rule(['create'], [CERTIFICATES_GROUP], ['certificatesigningrequests/nodeclient'])]),
  clusterRole('system:certificates.k8s.io:certificatesigningrequests:selfnodeclient', [rule(['create'], [CERTIFICATES_GROUP], ['certificatesigningrequests/selfnodeclient'])]),
  clusterRole('system:public-info-viewer', [urlRule(['get'], ['/healthz', '/livez', '/readyz', '/version'])]),
];

export const BUILTIN_CLUSTER_ROLE_BINDINGS: core.ClusterRoleBinding[] = [
  binding('cluster-admin', 'cluster-admin', [{ kind: 'Group', name: SYSTEM_MASTERS }]),
  binding('system:scheduler', 'system:scheduler', [{ kind: 'User', name: 'system:kube-scheduler' }]),
  binding('system:public-info-viewer', 'system:public-info-viewer', [{ kind: 'Group', name: SYSTEM_AUTHENTICATED }]),
  binding('system:node-bootstrapper', 'system:node-bootstrapper', [{ kind: 'Group', name: SYSTEM_BOOTSTRAPPERS }, { kind: 'Group', name: SYSTEM_NODES }]),
  binding('system:certificates.k8s.io:certificatesigningrequests:nodeclient', 'system:certificates.k8s.io:certificatesigningrequests:nodeclient', [{ kind: 'Group', name: SYSTEM_BOOTSTRAPPERS }]),
  binding('system:certificates.k8s.io:certificatesigningrequests:selfnodeclient', 'system:certificates.k8s.io:certificatesigningrequests:selfnodeclient', [{ kind: 'Group', name: SYSTEM_NODES }]),
];

/** Priority classes every cluster has (Kubernetes' system classes). */
export const BUILTIN_PRIORITY_CLASSES: { name: string; value: number; description: string }[] = [
  { name: 'system-node-critical', value: 2000001000, description: 'Used for system critical pods that must not be moved from their current node.' },
  { name: 'system-cluster-critical', value: 2000000000, description: 'Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.' },
];
