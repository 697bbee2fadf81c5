// RBAC: Role/ClusterRole rules granted through RoleBindings/ClusterRoleBindings, default deny.
// Evaluation follows Kubernetes: ClusterRoleBindings first, then the RoleBindings of the
// request's namespace (which may reference a Role of that namespace or a ClusterRole).
import type { core } from '@berth/api';
import { SERVICE_ACCOUNT_PREFIX, type Attributes, type Decision, type UserInfo } from './types';

/** Where the authorizer reads RBAC objects (a store cache, plus the built-in policy). */
export interface RbacSource {
  clusterRoleBindings(): Iterable<core.ClusterRoleBinding>;
  roleBindings(namespace: string): Iterable<core.RoleBinding>;
  clusterRole(name: string): core.ClusterRole | undefined;
  role(namespace: string, name: string): core.Role | undefined;
}

function has(list: string[], v: string): boolean {
  return list.includes('*') || list.includes(v);
}

function resourceMatches(rule: core.PolicyRule, a: Attributes): boolean {
  const combined = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  for (const r of rule.resources) {
    if (r === '*' || r === combined) return true;
    // "*/status" grants that subresource of every resource; "pods/*" every subresource of pods.
    if (a.subresource && (r === `*/${a.subresource}` || r === `${a.resource}/*`)) return true;
  }
  return false;
}

function urlMatches(patterns: string[], url: string): boolean {
  return patterns.some((p) => p === '*' || p === url || (p.endsWith('*') && url.startsWith(p.slice(0, -1))));
}

export function ruleAllows(rule: core.PolicyRule, a: Attributes): boolean {
  if (!has(rule.verbs, a.verb)) return false;
  if (a.nonResourceURL) return urlMatches(rule.nonResourceURLs, a.nonResourceURL);
  if (!has(rule.apiGroups, a.apiGroup)) return false;
  if (!resourceMatches(rule, a)) return false;
  if (rule.resourceNames.length && !(a.name && rule.resourceNames.includes(a.name))) return false;
  return true;
}

export function subjectMatches(s: core.Subject, user: UserInfo, bindingNamespace: string): boolean {
  switch (s.kind) {
    case 'User': return s.name === user.name;
    case 'Group': return user.groups.includes(s.name);
    case 'ServiceAccount': return user.name === `${SERVICE_ACCOUNT_PREFIX}${s.namespace || bindingNamespace}:${s.name}`;
    default: return false;
  }
}

export class RbacAuthorizer {
  constructor(private readonly source: RbacSource) {}

  authorize(user: UserInfo, a: Attributes): Decision {
    const errors: string[] = [];
    for (const b of this.source.clusterRoleBindings()) {
      if (!b.subjects.some((s) => subjectMatches(s, user, ''))) continue;
      const role = b.roleRef ? this.source.clusterRole(b.roleRef.name) : undefined;
      if (!role) { errors.push(`clusterrole.rbac.authorization.k8s.io "${b.roleRef?.name}" not found`); continue; }
      if (role.rules.some((r) => ruleAllows(r, a))) {
        return { decision: 'allow', reason: `RBAC: allowed by ClusterRoleBinding "${b.metadata?.name}" of ClusterRole "${role.metadata?.name}" to ${describeSubject(b.subjects, user)}` };
      }
    }
    if (a.namespace) {
      for (const b of this.source.roleBindings(a.namespace)) {
        if (!b.subjects.some((s) => subjectMatches(s, user, a.namespace))) continue;
        const ref = b.roleRef;
        const role = ref?.kind === 'Role' ? this.source.role(a.namespace, ref.name) : ref ? this.source.clusterRole(ref.name) : undefined;
        if (!role) { errors.push(`${ref?.kind === 'Role' ? 'role' : 'clusterrole'}.rbac.authorization.k8s.io "${ref?.name}" not found`); continue; }
        // A ClusterRole granted by a RoleBinding applies only inside the binding's namespace,
        // and never to non-resource URLs.
        if (!a.nonResourceURL && role.rules.some((r) => ruleAllows(r, a))) {
          return { decision: 'allow', reason: `RBAC: allowed by RoleBinding "${b.metadata?.name}/${a.namespace}" of ${ref!.kind} "${ref!.name}" to ${describeSubject(b.subjects, user)}` };
        }
      }
    }
    return { decision: 'no-opinion', reason: '', evaluationError: errors.length ? errors.join('; ') : undefined };
  }
}

function describeSubject(subjects: core.Subject[], user: UserInfo): string {
  const s = subjects.find((x) => subjectMatches(x, user, ''))
    ?? subjects.find((x) => x.kind === 'ServiceAccount')
    ?? subjects[0];
  return s ? `${s.kind} "${s.name}"` : 'subject';
}
