// The Node authorizer: a kubelet (user `system:node:<name>` in group `system:nodes`) may read
// all nodes and the pods bound to it, write its node, its lease, its pods' status and
// events — nothing else. It answers before RBAC; for what it does not grant it says "deny",
// so no RBAC binding can widen a node's reach by accident.
import { parseFieldSelector } from '../selectors';
import { NODE_LEASE_NAMESPACE, NODE_USER_PREFIX, SYSTEM_NODES, type Attributes, type Decision, type UserInfo } from './types';

/** Looks up the node a pod is bound to ("" if unbound, undefined if there is no such pod). */
export type PodNodeLookup = (namespace: string, name: string) => string | undefined;

export function nodeNameOf(user: UserInfo): string | undefined {
  if (!user.groups.includes(SYSTEM_NODES) || !user.name.startsWith(NODE_USER_PREFIX)) return undefined;
  const n = user.name.slice(NODE_USER_PREFIX.length);
  return n || undefined;
}

const READ = new Set(['get', 'list', 'watch']);

export class NodeAuthorizer {
  constructor(private readonly podNode: PodNodeLookup) {}

  authorize(user: UserInfo, a: Attributes): Decision {
    const node = nodeNameOf(user);
    if (!node) return { decision: 'no-opinion', reason: '' };
    const allow = (why: string): Decision => ({ decision: 'allow', reason: `Node: ${why}` });
    const deny = (why: string): Decision => ({ decision: 'deny', reason: `node "${node}" ${why}` });
    if (a.nonResourceURL) return { decision: 'no-opinion', reason: '' };
    const g = a.apiGroup;
    // Certificate requests (a node renewing its client certificate) are RBAC's to decide.
    if (g === 'certificates.k8s.io' && a.resource === 'certificatesigningrequests') return { decision: 'no-opinion', reason: '' };
    if (g === '' && a.resource === 'pods') {
      if (a.subresource === '' && (a.verb === 'list' || a.verb === 'watch')) {
        // Only a list/watch narrowed to this node: spec.nodeName=<node>.
        let pinned: string | undefined;
        try { pinned = parseFieldSelector(a.fieldSelector ?? '', ['spec.nodeName', 'metadata.name', 'metadata.namespace', 'status.phase']).exact('spec.nodeName'); } catch { pinned = undefined; }
        return pinned === node ? allow('list/watch of its own pods') : deny('can only list/watch pods with fieldSelector spec.nodeName=' + node);
      }
      if (a.subresource === '' && (a.verb === 'get' || a.verb === 'delete') || (a.subresource === 'status' && (a.verb === 'get' || a.verb === 'update' || a.verb === 'patch'))) {
        if (!a.name) return deny(`can only ${a.verb} named pods`);
        const bound = this.podNode(a.namespace, a.name);
        if (bound === undefined) return deny(`cannot ${a.verb} pod "${a.namespace}/${a.name}": no relationship found between node "${node}" and this object`);
        return bound === node ? allow(`${a.verb} a pod bound to it`) : deny(`cannot ${a.verb} pod "${a.namespace}/${a.name}" bound to node "${bound || '<none>'}"`);
      }
      return deny(`cannot ${a.verb} pods${a.subresource ? `/${a.subresource}` : ''}`);
    }
    if (g === '' && a.resource === 'nodes') {
      if (a.subresource === '' && a.verb === 'create' && (!a.name || a.name === node)) return allow('create its own node');
      // Every node may read every Node, as in Kubernetes' node rules: pod networks route to the
      // other nodes' pod CIDRs and addresses (cni-manager's node routes run with the node's identity).
      if (READ.has(a.verb) && a.subresource === '') return allow(`${a.verb} nodes`);
      if (a.name !== node) return deny(`cannot ${a.verb} node "${a.name}"`);
      if (a.subresource === '' && ['get', 'update', 'patch'].includes(a.verb)) return allow(`${a.verb} its own node`);
      if (a.subresource === 'status' && ['get', 'update', 'patch'].includes(a.verb)) return allow(`${a.verb} its own node status`);
      return deny(`cannot ${a.verb} nodes${a.subresource ? `/${a.subresource}` : ''}`);
    }
    if (g === 'coordination.k8s.io' && a.resource === 'leases') {
      if (a.namespace === NODE_LEASE_NAMESPACE && (a.name === node || (a.verb === 'create' && !a.name))) {
        if (['get', 'create', 'update', 'patch', 'delete'].includes(a.verb)) return allow(`${a.verb} its own lease`);
      }
      return deny(`can only touch its own lease ${NODE_LEASE_NAMESPACE}/${node}`);
    }
    if (g === '' && a.resource === 'events' && ['create', 'update', 'patch'].includes(a.verb)) return allow('report events');
    if (READ.has(a.verb) && g === '' && a.resource === 'namespaces') return deny('cannot read namespaces');
    return deny(`cannot ${a.verb} ${a.resource}${a.subresource ? `/${a.subresource}` : ''}`);
  }
}
