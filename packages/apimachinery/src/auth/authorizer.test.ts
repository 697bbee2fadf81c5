// The authorization matrix: each built-in role × verb × resource, allowed and denied, and the
// Node authorizer's own-objects-only rule.
import type { core } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { Authorizer, PolicyIndex } from './authorizer';
import { parseBootstrapToken, parseTokenFile, userFromCertSubject } from './authn';
import type { Attributes, UserInfo } from './types';

const VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'] as const;
const READ = ['get', 'list', 'watch'];
const ALL = [...VERBS];
const RESOURCES: [group: string, resource: string][] = [
  ['', 'pods'], ['', 'pods/status'], ['', 'pods/binding'], ['', 'nodes'], ['', 'secrets'], ['', 'configmaps'],
  ['', 'events'], ['', 'namespaces'], ['', 'resourcequotas'], ['coordination.k8s.io', 'leases'], ['rbac.authorization.k8s.io', 'roles'],
  ['scheduling.k8s.io', 'priorityclasses'],
];

// What each role may do, written out independently of policy.ts.
const EXPECT: Record<string, Record<string, readonly string[]>> = {
  'cluster-admin': Object.fromEntries(RESOURCES.map(([, r]) => [r, ALL])),
  edit: { pods: ALL, 'pods/status': READ, secrets: ALL, configmaps: ALL, events: READ, namespaces: READ, resourcequotas: READ, leases: ALL },
  view: { pods: READ, 'pods/status': READ, configmaps: READ, events: READ, namespaces: READ, resourcequotas: READ, leases: READ },
  'system:scheduler': { pods: [...READ, 'delete'], 'pods/status': ['update', 'patch'], 'pods/binding': ['create'], nodes: READ, namespaces: READ, events: ['create', 'update', 'patch'], leases: ['create'], priorityclasses: READ },
  nobody: {},
};

function user(name: string, groups: string[] = []): UserInfo {
  return { name, groups: [...groups, 'system:authenticated'], authenticator: 'test' };
}
function crb(name: string, role: string, subject: core.Subject): core.ClusterRoleBinding {
  return { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name } as core.ObjectMeta, subjects: [subject], roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role } };
}
function attrs(verb: string, group: string, res: string, ns = 'team', name = ''): Attributes {
  const [resource, subresource = ''] = res.split('/');
  return { verb, apiGroup: group, resource, subresource, namespace: ns, name };
}

const pods: Record<string, string> = { 'team/mine': 'node-1', 'team/theirs': 'node-2', 'team/pending': '' };
function setup() {
  const idx = new PolicyIndex();
  idx.setClusterRoleBinding(crb('alice-edit', 'edit', { kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: 'alice', namespace: '' }), 'alice-edit');
  idx.setClusterRoleBinding(crb('viewers', 'view', { kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: 'viewers', namespace: '' }), 'viewers');
  const az = new Authorizer(idx, (ns, name) => pods[`${ns}/${name}`]);
  return { idx, az };
}
const USERS: Record<string, UserInfo> = {
  'cluster-admin': user('root', ['system:masters']),
  edit: user('alice'),
  view: user('bob', ['viewers']),
  'system:scheduler': user('system:kube-scheduler'),
  nobody: user('mallory'),
};

describe('RBAC authorization matrix', () => {
  const { az } = setup();
  const rows: [string, string, string, string, boolean][] = [];
  for (const role of Object.keys(EXPECT)) {
    for (const [group, res] of RESOURCES) {
      for (const verb of VERBS) rows.push([role, verb, group, res, (EXPECT[role][res] ?? []).includes(verb)]);
    }
  }
  it.each(rows)('%s: %s %s/%s → %s', (role, verb, group, res, want) => {
    const d = az.authorize(USERS[role], attrs(verb, group, res));
    expect(d.allowed, d.reason || d.evaluationError).toBe(want);
    if (want) expect(d.reason).toMatch(/^RBAC: allowed by ClusterRoleBinding/);
  });

  it('grants a Role only inside its namespace through a RoleBinding', () => {
    const { idx, az: a } = setup();
    idx.setRole({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'cm-reader', namespace: 'team' } as core.ObjectMeta, rules: [{ verbs: ['get'], apiGroups: [''], resources: ['configmaps'], resourceNames: ['settings'], nonResourceURLs: [] }] }, 'team', 'cm-reader');
    idx.setRoleBinding({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'carol-cm', namespace: 'team' } as core.ObjectMeta, subjects: [{ kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: 'carol', namespace: '' }], roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'cm-reader' } }, 'team', 'carol-cm');
    const carol = user('carol');
    expect(a.authorize(carol, attrs('get', '', 'configmaps', 'team', 'settings')).allowed).toBe(true);
    expect(a.authorize(carol, attrs('get', '', 'configmaps', 'team', 'other')).allowed).toBe(false);
    expect(a.authorize(carol, attrs('get', '', 'configmaps', 'prod', 'settings')).allowed).toBe(false);
    expect(a.authorize(carol, attrs('list', '', 'configmaps', 'team')).allowed).toBe(false);
  });

  it('binds service accounts by namespace and name', () => {
    const { idx, az: a } = setup();
    idx.setRoleBinding({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'b', namespace: 'team' } as core.ObjectMeta, subjects: [{ kind: 'ServiceAccount', apiGroup: '', name: 'builder', namespace: 'team' }], roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' } }, 'team', 'b');
    expect(a.authorize(user('system:serviceaccount:team:builder', ['system:serviceaccounts']), attrs('create', '', 'pods', 'team')).allowed).toBe(true);
    expect(a.authorize(user('system:serviceaccount:other:builder'), attrs('create', '', 'pods', 'team')).allowed).toBe(false);
  });

  it('reports a binding to a missing role as an evaluation error and denies', () => {
    const { idx, az: a } = setup();
    idx.setClusterRoleBinding(crb('dangling', 'no-such-role', { kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: 'dave', namespace: '' }), 'dangling');
    const d = a.authorize(user('dave'), attrs('get', '', 'pods'));
    expect(d.allowed).toBe(false);
    expect(d.evaluationError).toMatch(/clusterrole.rbac.authorization.k8s.io "no-such-role" not found/);
  });

  it('allows non-resource URLs only as granted', () => {
    expect(az.authorize(USERS.nobody, { verb: 'get', apiGroup: '', resource: '', subresource: '', namespace: '', name: '', nonResourceURL: '/healthz' }).allowed).toBe(true);
    expect(az.authorize(USERS.nobody, { verb: 'get', apiGroup: '', resource: '', subresource: '', namespace: '', name: '', nonResourceURL: '/metrics' }).allowed).toBe(false);
  });
});

describe('Node authorizer', () => {
  const node1 = user('system:node:node-1', ['system:nodes']);
  const { idx, az } = setup();
  // Even a careless binding of cluster-admin to all nodes must not widen a node's reach.
  idx.setClusterRoleBinding(crb('oops', 'cluster-admin', { kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: 'system:nodes', namespace: '' }), 'oops');
  const cases: [string, Attributes, boolean][] = [
    ['get its own pod', attrs('get', '', 'pods', 'team', 'mine'), true],
    ['get another node\'s pod', attrs('get', '', 'pods', 'team', 'theirs'), false],
    ['get an unbound pod', attrs('get', '', 'pods', 'team', 'pending'), false],
    ['get a pod that does not exist', attrs('get', '', 'pods', 'team', 'ghost'), false],
    ['update its own pod status', attrs('update', '', 'pods/status', 'team', 'mine'), true],
    ['update another node\'s pod status', attrs('update', '', 'pods/status', 'team', 'theirs'), false],
    ['update its own pod spec', attrs('update', '', 'pods', 'team', 'mine'), false],
    ['delete its own pod', attrs('delete', '', 'pods', 'team', 'mine'), true],
    ['create a pod', attrs('create', '', 'pods', 'team'), false],
    ['list pods on its node', { ...attrs('list', '', 'pods', ''), fieldSelector: 'spec.nodeName=node-1' }, true],
    ['watch pods on its node', { ...attrs('watch', '', 'pods', ''), fieldSelector: 'spec.nodeName=node-1' }, true],
    ['list all pods', attrs('list', '', 'pods', ''), false],
    ['list pods of another node', { ...attrs('list', '', 'pods', ''), fieldSelector: 'spec.nodeName=node-2' }, false],
    ['get its node', attrs('get', '', 'nodes', '', 'node-1'), true],
    ['update its node status', attrs('update', '', 'nodes/status', '', 'node-1'), true],
    ['create its node', attrs('create', '', 'nodes', '', 'node-1'), true],
    ['get another node (pod-network routes)', attrs('get', '', 'nodes', '', 'node-2'), true],
    ['list and watch all nodes', attrs('watch', '', 'nodes', ''), true],
    ['update another node', attrs('update', '', 'nodes', '', 'node-2'), false],
    ['update another node status', attrs('update', '', 'nodes/status', '', 'node-2'), false],
    ['delete its node', attrs('delete', '', 'nodes', '', 'node-1'), false],
    ['update its lease', attrs('update', 'coordination.k8s.io', 'leases', 'kube-node-lease', 'node-1'), true],
    ['update another lease', attrs('update', 'coordination.k8s.io', 'leases', 'kube-node-lease', 'node-2'), false],
    ['create an event', attrs('create', '', 'events', 'team'), true],
    ['read secrets', attrs('get', '', 'secrets', 'team', 's'), false],
    ['create a binding', attrs('create', '', 'pods/binding', 'team', 'mine'), false],
  ];
  it.each(cases)('%s → %s', (_n, a, want) => {
    const d = az.authorize(node1, a);
    expect(d.allowed, d.reason).toBe(want);
  });
  it('a user named like a node but outside system:nodes gets no node rights', () => {
    expect(az.authorize(user('system:node:node-1'), attrs('get', '', 'pods', 'team', 'mine')).allowed).toBe(false);
  });
});

describe('certificate requests', () => {
  const { az } = setup();
  const boot = user('system:bootstrap:abcdef', ['system:bootstrappers']);
  const node1 = user('system:node:node-1', ['system:nodes']);
  const alice = user('alice');
  const csr = (verb: string, sub = '') => attrs(verb, 'certificates.k8s.io', sub ? `certificatesigningrequests/${sub}` : 'certificatesigningrequests', '');
  it.each([
    ['a bootstrapper creates', boot, csr('create'), true],
    ['a bootstrapper watches', boot, csr('watch'), true],
    ['a bootstrapper deletes', boot, csr('delete'), false],
    ['a bootstrapper approves', boot, csr('update', 'approval'), false],
    ['a bootstrapper may have node client requests approved', boot, csr('create', 'nodeclient'), true],
    ['a bootstrapper is not a node renewing itself', boot, csr('create', 'selfnodeclient'), false],
    ['a bootstrapper reads secrets', boot, attrs('get', '', 'secrets', 'kube-system', 'x'), false],
    ['a node creates (renewal)', node1, csr('create'), true],
    ['a node may have its own renewal approved', node1, csr('create', 'selfnodeclient'), true],
    ['a node may not have requests for others approved', node1, csr('create', 'nodeclient'), false],
    ['a node approves', node1, csr('update', 'approval'), false],
    ['a plain user creates', alice, csr('create'), false],
  ] as const)('%s', (_n, u, a, want) => {
    expect(az.authorize(u, a).allowed).toBe(want);
  });
});

describe('authentication parsing', () => {
  it('reads a static token file', () => {
    const m = parseTokenFile('# comment\nt0k3n,alice,uid-1,"dev,ops"\n\nother,bob,uid-2\n');
    expect(m.get('t0k3n')).toEqual({ name: 'alice', uid: 'uid-1', groups: ['dev', 'ops', 'system:authenticated'], authenticator: 'token' });
    expect(m.get('other')!.groups).toEqual(['system:authenticated']);
    expect(() => parseTokenFile('a,b\n', 'tokens.csv')).toThrow('tokens.csv:1: expected token,user,uid');
    expect(() => parseTokenFile('a,b,c\na,d,e\n', 'tokens.csv')).toThrow('tokens.csv:2: duplicate token');
  });
  it('checks the bootstrap token format', () => {
    expect(parseBootstrapToken('abcdef.0123456789abcdef')).toEqual({ id: 'abcdef', secret: '0123456789abcdef' });
    for (const bad of ['ABCDEF.0123456789abcdef', 'abcde.0123456789abcdef', 'abcdef.0123456789abcde', 'abcdef0123456789abcdef']) expect(parseBootstrapToken(bad)).toBeUndefined();
  });
  it('maps a certificate subject to a user (CN = name, O = groups)', () => {
    expect(userFromCertSubject({ CN: 'system:node:n1', O: 'system:nodes' })).toEqual({ name: 'system:node:n1', groups: ['system:nodes', 'system:authenticated'], authenticator: 'x509' });
    expect(userFromCertSubject({ CN: 'admin', O: ['system:masters', 'ops'] })!.groups).toEqual(['system:masters', 'ops', 'system:authenticated']);
    expect(userFromCertSubject({ O: 'x' })).toBeUndefined();
  });
});
