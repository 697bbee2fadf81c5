import type { core } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { AdmissionError, admit, chargeQuota, quotaUsage, releaseQuota, type AdmissionLookups, type AdmissionRequest } from './admission';
import { decodeObject } from './codec';
import { applyDefaults } from './defaults';
import { kindInfo } from './kinds';

const ns = (name: string, phase = 'Active') => decodeObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name }, status: { phase } }).namespace!;
function lookups(over: Partial<{ limitRanges: unknown[]; sas: string[]; pcs: unknown[]; namespaces: core.Namespace[] }> = {}): AdmissionLookups {
  return {
    namespace: async (n) => (over.namespaces ?? [ns('team')]).find((x) => x.metadata!.name === n),
    limitRanges: async () => (over.limitRanges ?? []).map((l) => decodeObject({ apiVersion: 'v1', kind: 'LimitRange', metadata: { name: 'lr', namespace: 'team' }, spec: l }).limitRange!),
    serviceAccount: async (_n, name) => ((over.sas ?? ['default']).includes(name) ? decodeObject({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } }).serviceAccount : undefined),
    priorityClasses: async () => (over.pcs ?? []).map((p) => decodeObject({ apiVersion: 'scheduling.k8s.io/v1', kind: 'PriorityClass', ...(p as object) }).priorityClass!),
  };
}
function podReq(spec: Record<string, unknown>, user = { name: 'alice', groups: ['system:authenticated'], authenticator: 'test' }): AdmissionRequest {
  const object = decodeObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'team' }, spec: { containers: [{ name: 'c', image: 'busybox:1' }], ...spec } });
  applyDefaults(object);
  return { operation: 'CREATE', info: kindInfo('Pod')!, subresource: '', namespace: 'team', name: 'p', object, old: undefined, user };
}

describe('admission chain', () => {
  it('NamespaceLifecycle: missing and terminating namespaces refuse new content', async () => {
    await expect(admit({ ...podReq({}), namespace: 'nope' }, lookups())).rejects.toThrow('namespaces "nope" not found');
    await expect(admit(podReq({}), lookups({ namespaces: [ns('team', 'Terminating')] }))).rejects.toThrow(/because it is being terminated/);
    await expect(admit({ operation: 'DELETE', info: kindInfo('Namespace')!, subresource: '', namespace: '', name: 'kube-system', object: undefined, old: undefined, user: { name: 'a', groups: [], authenticator: 't' } }, lookups())).rejects.toThrow(/may not be deleted/);
  });

  it('LimitRanger: fills default limits and requests, enforces max', async () => {
    const r = podReq({});
    await admit(r, lookups({ limitRanges: [{ limits: [{ type: 'Container', default: { cpu: '500m', memory: '256Mi' }, defaultRequest: { cpu: '100m' }, max: { cpu: '1' } }] }] }));
    expect(r.object!.pod!.spec!.containers[0].resources).toMatchObject({ limits: { cpu: '500m', memory: '256Mi' }, requests: { cpu: '100m', memory: '256Mi' } });
    const big = podReq({ containers: [{ name: 'c', image: 'busybox:1', resources: { limits: { cpu: '2' } } }] });
    await expect(admit(big, lookups({ limitRanges: [{ limits: [{ type: 'Container', max: { cpu: '1' } }] }] }))).rejects.toThrow('pods "p" is forbidden: maximum cpu usage per Container is 1, but limit is 2');
  });

  it('ServiceAccount: defaults to "default" and refuses a missing account', async () => {
    const r = podReq({});
    await admit(r, lookups());
    expect(r.object!.pod!.spec!.serviceAccountName).toBe('default');
    await expect(admit(podReq({ serviceAccountName: 'ghost' }), lookups())).rejects.toThrow(/serviceaccount "ghost" not found/);
  });

  it('DefaultTolerationSeconds: adds not-ready and unreachable for 300 s unless tolerated', async () => {
    const r = podReq({ tolerations: [{ key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 60 }] });
    await admit(r, lookups());
    expect(r.object!.pod!.spec!.tolerations.map((t) => [t.key, t.tolerationSeconds])).toEqual([['node.kubernetes.io/unreachable', 60], ['node.kubernetes.io/not-ready', 300]]);
  });

  it('Priority: resolves the class, applies the global default, refuses unknown classes', async () => {
    const pcs = [{ metadata: { name: 'high' }, value: 1000 }, { metadata: { name: 'normal' }, value: 10, globalDefault: true }];
    const r = podReq({ priorityClassName: 'high' });
    await admit(r, lookups({ pcs }));
    expect(r.object!.pod!.spec!.priority).toBe(1000);
    const d = podReq({});
    await admit(d, lookups({ pcs }));
    expect([d.object!.pod!.spec!.priorityClassName, d.object!.pod!.spec!.priority]).toEqual(['normal', 10]);
    const s = podReq({ priorityClassName: 'system-node-critical' });
    await admit(s, lookups());
    expect(s.object!.pod!.spec!.priority).toBe(2000001000);
    await expect(admit(podReq({ priorityClassName: 'nope' }), lookups())).rejects.toThrow('no PriorityClass with name nope was found');
  });

  it('NodeRestriction: a node may not create ordinary pods', async () => {
    const node = { name: 'system:node:n1', groups: ['system:nodes', 'system:authenticated'], authenticator: 'x509' };
    await expect(admit(podReq({ nodeName: 'n1' }, node), lookups())).rejects.toThrow(/can only create mirror pods/);
  });

  it('ResourceQuota arithmetic: charges, refuses over the limit, requires explicit requests, releases', () => {
    const quota = decodeObject({ apiVersion: 'v1', kind: 'ResourceQuota', metadata: { name: 'q', namespace: 'team' }, spec: { hard: { pods: '2', 'requests.cpu': '1', 'limits.memory': '1Gi' } } }).resourceQuota!;
    const pod = podReq({ containers: [{ name: 'c', image: 'b:1', resources: { requests: { cpu: '400m' }, limits: { memory: '512Mi' } } }] });
    const use = quotaUsage(kindInfo('Pod')!, pod.object);
    let used = chargeQuota(quota, {}, use, 'pods "p"');
    expect(used).toEqual({ pods: '1', 'requests.cpu': '400m', 'limits.memory': '512Mi' });
    used = chargeQuota(quota, used, use, 'pods "p"');
    expect(used).toEqual({ pods: '2', 'requests.cpu': '800m', 'limits.memory': '1Gi' });
    expect(() => chargeQuota(quota, used, use, 'pods "p"')).toThrow('pods "p" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2, requested: requests.cpu=400m, used: requests.cpu=800m, limited: requests.cpu=1, requested: limits.memory=512Mi, used: limits.memory=1Gi, limited: limits.memory=1Gi');
    const bare = quotaUsage(kindInfo('Pod')!, podReq({}).object);
    expect(() => chargeQuota(quota, {}, bare, 'pods "p"')).toThrow(AdmissionError);
    expect(() => chargeQuota(quota, {}, bare, 'pods "p"')).toThrow('must specify limits.memory,requests.cpu');
    expect(releaseQuota(quota, used, use)).toEqual({ pods: '1', 'requests.cpu': '400m', 'limits.memory': '512Mi' });
  });
});
