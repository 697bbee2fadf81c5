// The kinds the cluster stores, and how each is named: apiVersion/kind in manifests, the
// lowercase plural resource in the Store API and RBAC rules, the field of the `Object` envelope,
// and whether it lives in a namespace. One table, so the codec, the store, RBAC and the CLI
// never disagree about a name.
import type { core } from '@berth/api';

export type ObjectField = Exclude<keyof core.Object, never>;

export interface KindInfo {
  kind: string;
  apiVersion: string;
  /** API group ("" = core). */
  group: string;
  /** Lowercase plural, e.g. "pods". */
  resource: string;
  /** Field of berth.core.v1.Object that carries it. */
  field: ObjectField;
  namespaced: boolean;
  /** Fully qualified proto message name. */
  message: string;
  /** Short names accepted by the CLI (`po`, `no`, `ns`...). */
  shortNames: string[];
  /** Has a status that only UpdateStatus writes. */
  hasStatus: boolean;
}

const k = (kind: string, apiVersion: string, resource: string, field: ObjectField, namespaced: boolean, shortNames: string[] = [], hasStatus = false): KindInfo => ({
  kind,
  apiVersion,
  group: apiVersion.includes('/') ? apiVersion.split('/')[0] : '',
  resource,
  field,
  namespaced,
  message: `berth.core.v1.${kind}`,
  shortNames,
  hasStatus,
});

export const KINDS: readonly KindInfo[] = [
  k('Pod', 'v1', 'pods', 'pod', true, ['po'], true),
  k('Node', 'v1', 'nodes', 'node', false, ['no'], true),
  k('Namespace', 'v1', 'namespaces', 'namespace', false, ['ns'], true),
  k('Event', 'v1', 'events', 'event', true, ['ev']),
  k('Lease', 'coordination.k8s.io/v1', 'leases', 'lease', true),
  k('ServiceAccount', 'v1', 'serviceaccounts', 'serviceAccount', true, ['sa']),
  k('ConfigMap', 'v1', 'configmaps', 'configMap', true, ['cm']),
  k('Secret', 'v1', 'secrets', 'secret', true),
  k('PriorityClass', 'scheduling.k8s.io/v1', 'priorityclasses', 'priorityClass', false, ['pc']),
  k('LimitRange', 'v1', 'limitranges', 'limitRange', true, ['limits']),
  k('ResourceQuota', 'v1', 'resourcequotas', 'resourceQuota', true, ['quota'], true),
  k('Role', 'rbac.authorization.k8s.io/v1', 'roles', 'role', true),
  k('ClusterRole', 'rbac.authorization.k8s.io/v1', 'clusterroles', 'clusterRole', false),
  k('RoleBinding', 'rbac.authorization.k8s.io/v1', 'rolebindings', 'roleBinding', true),
  k('ClusterRoleBinding', 'rbac.authorization.k8s.io/v1', 'clusterrolebindings', 'clusterRoleBinding', false),
  k('CertificateSigningRequest', 'certificates.k8s.io/v1', 'certificatesigningrequests', 'certificateSigningRequest', false, ['csr'], true),
];

const byKind = new Map(KINDS.map((i) => [i.kind, i]));
const byResource = new Map(KINDS.map((i) => [i.resource, i]));
const byField = new Map(KINDS.map((i) => [i.field, i]));
const byAlias = new Map<string, KindInfo>();
for (const i of KINDS) {
  for (const a of [i.resource, i.kind.toLowerCase(), ...i.shortNames]) byAlias.set(a, i);
}

export function kindInfo(kind: string): KindInfo | undefined {
  return byKind.get(kind);
}
export function resourceInfo(resource: string): KindInfo | undefined {
  return byResource.get(resource);
}
/** Resolves what a user typed (`pods`, `pod`, `po`, `Pod`) to a kind. */
export function resolveResource(name: string): KindInfo | undefined {
  return byAlias.get(name.toLowerCase()) ?? byAlias.get(name.toLowerCase().replace(/\..*$/, ''));
}

/** The one set field of an Object envelope. */
export function unwrap(obj: core.Object): { info: KindInfo; value: TypedObject } {
  const set = (Object.keys(obj) as ObjectField[]).filter((f) => obj[f] !== undefined);
  if (set.length !== 1) throw new Error(`object: exactly one kind must be set, got ${set.length ? set.join(', ') : 'none'}`);
  const info = byField.get(set[0])!;
  return { info, value: obj[set[0]] as TypedObject };
}

export function wrap(info: KindInfo, value: TypedObject): core.Object {
  return { [info.field]: value } as core.Object;
}

/** What every stored kind has in common. */
export interface TypedObject {
  apiVersion: string;
  kind: string;
  metadata?: core.ObjectMeta | undefined;
  spec?: unknown;
  status?: unknown;
}

export function metaOf(obj: core.Object): core.ObjectMeta {
  const { value } = unwrap(obj);
  if (!value.metadata) throw new Error('metadata: Required value');
  return value.metadata;
}
