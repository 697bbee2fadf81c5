// Who is asking (authentication's answer) and what they ask to do (authorization's question),
// as in Kubernetes' user.Info and authorizer.Attributes.
export interface UserInfo {
  name: string;
  uid?: string;
  groups: string[];
  /** How the user authenticated: "x509" | "token" | "bootstrap-token" | "unix". */
  authenticator: string;
}

export interface Attributes {
  verb: string;
  /** "" = core. */
  apiGroup: string;
  /** Lowercase plural; "" for a non-resource request. */
  resource: string;
  subresource: string;
  /** "" = cluster-scoped or all namespaces. */
  namespace: string;
  /** "" = any (list, watch, create without a name). */
  name: string;
  /** Set for non-resource requests such as "/healthz". */
  nonResourceURL?: string;
  /** The request's field selector, for list/watch (the Node authorizer checks spec.nodeName). */
  fieldSelector?: string;
}

export interface Decision {
  /** "allow" | "deny" (stop here) | "no-opinion" (ask the next authorizer). */
  decision: 'allow' | 'deny' | 'no-opinion';
  reason: string;
  evaluationError?: string;
}

export const SYSTEM_MASTERS = 'system:masters';
export const SYSTEM_AUTHENTICATED = 'system:authenticated';
export const SYSTEM_NODES = 'system:nodes';
export const SYSTEM_BOOTSTRAPPERS = 'system:bootstrappers';
export const NODE_USER_PREFIX = 'system:node:';
export const SERVICE_ACCOUNT_PREFIX = 'system:serviceaccount:';
export const NODE_LEASE_NAMESPACE = 'kube-node-lease';

export function describeAttributes(a: Attributes): string {
  if (a.nonResourceURL) return `${a.verb} ${a.nonResourceURL}`;
  const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  return `${a.verb} ${res}${a.apiGroup ? `.${a.apiGroup}` : ''}${a.name ? ` "${a.name}"` : ''}${a.namespace ? ` in namespace "${a.namespace}"` : ' at the cluster scope'}`;
}

/** Kubernetes' Forbidden message: `User "bob" cannot list resource "pods" in API group "" in the namespace "x"`. */
export function forbiddenMessage(user: UserInfo, a: Attributes, reason?: string): string {
  if (a.nonResourceURL) return `User "${user.name}" cannot ${a.verb} path "${a.nonResourceURL}"${reason ? `: ${reason}` : ''}`;
  const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const scope = a.namespace ? `in the namespace "${a.namespace}"` : 'at the cluster scope';
  return `${a.resource}${a.name ? ` "${a.name}"` : ''} is forbidden: User "${user.name}" cannot ${a.verb} resource "${res}" in API group "${a.apiGroup}" ${scope}${reason ? `: ${reason}` : ''}`;
}
