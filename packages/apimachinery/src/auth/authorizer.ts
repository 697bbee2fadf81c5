// The authorizer chain of the store: Node, then RBAC (built-in policy + stored objects);
// default deny. `CanI` answers with the same chain.
import type { core } from '@berth/api';
import { NodeAuthorizer, type PodNodeLookup } from './node';
import { BUILTIN_CLUSTER_ROLES, BUILTIN_CLUSTER_ROLE_BINDINGS } from './policy';
import { RbacAuthorizer, type RbacSource } from './rbac';
import type { Attributes, Decision, UserInfo } from './types';

export interface AuthorizationResult {
  allowed: boolean;
  reason: string;
  evaluationError: string;
}

/** An RbacSource over the built-in policy plus what the cluster stored. */
export class PolicyIndex implements RbacSource {
  private clusterRoles = new Map<string, core.ClusterRole>();
  private crbs = new Map<string, core.ClusterRoleBinding>();
  private roles = new Map<string, core.Role>();
  private rbs = new Map<string, Map<string, core.RoleBinding>>();

  setClusterRole(r: core.ClusterRole | undefined, name: string): void { set(this.clusterRoles, name, r); }
  setClusterRoleBinding(b: core.ClusterRoleBinding | undefined, name: string): void { set(this.crbs, name, b); }
  setRole(r: core.Role | undefined, ns: string, name: string): void { set(this.roles, `${ns}/${name}`, r); }
  setRoleBinding(b: core.RoleBinding | undefined, ns: string, name: string): void {
    let m = this.rbs.get(ns);
    if (!m) this.rbs.set(ns, (m = new Map()));
    set(m, name, b);
  }

  *clusterRoleBindings(): Iterable<core.ClusterRoleBinding> {
    yield* BUILTIN_CLUSTER_ROLE_BINDINGS;
    for (const b of this.crbs.values()) if (!BUILTIN_CLUSTER_ROLE_BINDINGS.some((x) => x.metadata!.name === b.metadata?.name)) yield b;
  }
  roleBindings(namespace: string): Iterable<core.RoleBinding> {
    return this.rbs.get(namespace)?.values() ?? [];
  }
  clusterRole(name: string): core.ClusterRole | undefined {
    return BUILTIN_CLUSTER_ROLES.find((r) => r.metadata!.name === name) ?? this.clusterRoles.get(name);
  }
  role(namespace: string, name: string): core.Role | undefined {
    return this.roles.get(`${namespace}/${name}`);
  }
}

function set<V>(m: Map<string, V>, k: string, v: V | undefined): void {
  if (v === undefined) m.delete(k);
  else m.set(k, v);
}

export class Authorizer {
  private readonly rbac: RbacAuthorizer;
  constructor(source: RbacSource, private readonly podNode: PodNodeLookup = () => undefined) {
    this.rbac = new RbacAuthorizer(source);
  }

  /** `podNode` overrides the lookup for this call (the store pre-reads the one pod a node asks about). */
  authorize(user: UserInfo, a: Attributes, podNode?: PodNodeLookup): AuthorizationResult {
    const chain: Decision[] = [];
    for (const az of [new NodeAuthorizer(podNode ?? this.podNode), this.rbac]) {
      const d = az.authorize(user, a);
      chain.push(d);
      if (d.decision === 'allow') return { allowed: true, reason: d.reason, evaluationError: d.evaluationError ?? '' };
      if (d.decision === 'deny') return { allowed: false, reason: d.reason, evaluationError: d.evaluationError ?? '' };
    }
    return { allowed: false, reason: '', evaluationError: chain.map((d) => d.evaluationError).filter(Boolean).join('; ') };
  }
}
