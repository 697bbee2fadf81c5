import * as fs from 'node:fs';
import * as path from 'node:path';
import type { core } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { decodeObject, parseManifests } from './codec';
import { applyDefaults, defaultPullPolicy, initialPodStatus, qosClass } from './defaults';
import { ValidationError, validateObject, validateUpdate } from './validation';

const fixture = (f: string) => fs.readFileSync(path.join(__dirname, 'testdata', f), 'utf8');

function pod(spec: Record<string, unknown>, meta: Record<string, unknown> = { name: 'p' }): core.Object {
  return decodeObject({ apiVersion: 'v1', kind: 'Pod', metadata: meta, spec });
}
const rq = (spec: Record<string, unknown>) => decodeObject({ apiVersion: 'v1', kind: 'ResourceQuota', metadata: { name: 'q' }, spec });
const c = (extra: Record<string, unknown> = {}) => ({ name: 'c', image: 'busybox:1.36', ...extra });

function errorsOf(obj: core.Object): string[] {
  applyDefaults(obj);
  try { validateObject(obj); return []; } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    return e.message.replace(/^.*? is invalid: /, '').split(/, (?=[a-zA-Z.[\]0-9"]+: )/);
  }
}

describe('validation', () => {
  it.each(['pod-resources.yaml', 'pod-probes.yaml', 'pod-affinity.yaml', 'pod-tolerations.yaml', 'app-bundle.yaml'])('accepts %s', (f) => {
    for (const o of parseManifests(fixture(f))) expect(errorsOf(o)).toEqual([]);
  });

  const cases: { name: string; obj: () => core.Object; want: string }[] = [
    { name: 'bad cpu limit', obj: () => pod({ containers: [c({ resources: { limits: { cpu: 'lots' } } })] }), want: 'spec.containers[0].resources.limits.cpu: Invalid value: "lots": invalid quantity' },
    { name: 'request over limit', obj: () => pod({ containers: [c({ resources: { requests: { memory: '1Gi' }, limits: { memory: '512Mi' } } })] }), want: 'spec.containers[0].resources.requests: Invalid value: "1Gi": must be less than or equal to memory limit of 512Mi' },
    { name: 'negative quantity', obj: () => pod({ containers: [c({ resources: { requests: { cpu: '-1' } } })] }), want: 'spec.containers[0].resources.requests.cpu: Invalid value: "-1": must be greater than or equal to 0' },
    { name: 'missing image', obj: () => pod({ containers: [{ name: 'c' }] }), want: 'spec.containers[0].image: Required value' },
    { name: 'no containers', obj: () => pod({}), want: 'spec.containers: Required value' },
    { name: 'uppercase name', obj: () => pod({ containers: [c()] }, { name: 'Web' }), want: 'metadata.name: Invalid value: "Web": a lowercase RFC 1123 subdomain' },
    { name: 'no name', obj: () => pod({ containers: [c()] }, {}), want: 'metadata.name: Required value: name or generateName is required' },
    { name: 'bad label value', obj: () => pod({ containers: [c()] }, { name: 'p', labels: { app: 'a b' } }), want: 'metadata.labels: Invalid value: "a b": a valid label must be an empty string' },
    { name: 'bad label key', obj: () => pod({ containers: [c()] }, { name: 'p', labels: { 'a/b/c': 'x' } }), want: 'metadata.labels: Invalid value: "a/b/c": a qualified name' },
    { name: 'duplicate container', obj: () => pod({ containers: [c(), c()] }), want: 'spec.containers[1].name: Duplicate value: "c"' },
    { name: 'port out of range', obj: () => pod({ containers: [c({ ports: [{ containerPort: 70000 }] })] }), want: 'spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive' },
    { name: 'probe named port missing', obj: () => pod({ containers: [c({ readinessProbe: { httpGet: { port: 'http' } } })] }), want: 'spec.containers[0].readinessProbe.httpGet.port: Invalid value: "http": must contain the name of a container port' },
    { name: 'probe without handler', obj: () => pod({ containers: [c({ livenessProbe: { periodSeconds: 5 } })] }), want: 'spec.containers[0].livenessProbe: Required value: must specify a handler type' },
    { name: 'liveness successThreshold', obj: () => pod({ containers: [c({ livenessProbe: { exec: { command: ['true'] }, successThreshold: 2 } })] }), want: 'spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1' },
    { name: 'restartPolicy', obj: () => pod({ restartPolicy: 'Sometimes', containers: [c()] }), want: 'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"' },
    { name: 'pull policy', obj: () => pod({ containers: [c({ imagePullPolicy: 'Maybe' })] }), want: 'spec.containers[0].imagePullPolicy: Unsupported value: "Maybe"' },
    { name: 'mount of unknown volume', obj: () => pod({ containers: [c({ volumeMounts: [{ name: 'data', mountPath: '/data' }] })] }), want: 'spec.containers[0].volumeMounts[0].name: Not found: "data"' },
    { name: 'subPath escape', obj: () => pod({ volumes: [{ name: 'v', emptyDir: {} }], containers: [c({ volumeMounts: [{ name: 'v', mountPath: '/d', subPath: '../../etc' }] })] }), want: 'spec.containers[0].volumeMounts[0].subPath: Invalid value: "../../etc": must not contain \'..\'' },
    { name: 'toleration Exists with value', obj: () => pod({ containers: [c()], tolerations: [{ key: 'k', operator: 'Exists', value: 'v' }] }), want: 'spec.tolerations[0].operator: Invalid value: "v": value must be empty when `operator` is \'Exists\'' },
    { name: 'tolerationSeconds needs NoExecute', obj: () => pod({ containers: [c()], tolerations: [{ key: 'k', operator: 'Exists', effect: 'NoSchedule', tolerationSeconds: 5 }] }), want: 'spec.tolerations[0].effect: Invalid value: "NoSchedule": effect must be \'NoExecute\' when `tolerationSeconds` is set' },
    { name: 'affinity operator', obj: () => pod({ containers: [c()], affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'Near', values: ['a'] }] }] } } } }), want: 'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: "Near"' },
    { name: 'affinity weight', obj: () => pod({ containers: [c()], affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 101, podAffinityTerm: { topologyKey: 'zone' } }] } } }), want: 'spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 101: must be in the range 1-100' },
    { name: 'namespace name is a label', obj: () => decodeObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a.b' } }), want: 'metadata.name: Invalid value: "a.b": a lowercase RFC 1123 label' },
    { name: 'cluster-scoped with namespace', obj: () => decodeObject({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n', namespace: 'x' } }), want: 'metadata.namespace: Forbidden: not allowed on this type' },
    { name: 'configmap key', obj: () => decodeObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: { 'a/b': '1' } }), want: 'data: Invalid value: "a/b": a valid config key' },
    { name: 'binding roleRef kind', obj: () => decodeObject({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'x' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'r' } }), want: 'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"' },
    { name: 'limitrange min > max', obj: () => decodeObject({ apiVersion: 'v1', kind: 'LimitRange', metadata: { name: 'l' }, spec: { limits: [{ type: 'Container', min: { cpu: '2' }, max: { cpu: '1' } }] } }), want: 'spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1' },
    { name: 'quota scope unknown', obj: () => rq({ hard: { pods: '1' }, scopes: ['Sometimes'] }), want: 'spec.scopes[0]: Unsupported value: "Sometimes": supported values: "Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity"' },
    { name: 'quota scopes conflict', obj: () => rq({ hard: { pods: '1' }, scopes: ['BestEffort', 'NotBestEffort'] }), want: 'spec.scopes: Invalid value: ["BestEffort","NotBestEffort"]: conflicting scopes: BestEffort and NotBestEffort' },
    { name: 'BestEffort quota of cpu', obj: () => rq({ hard: { pods: '1', 'requests.cpu': '1' }, scopes: ['BestEffort'] }), want: 'spec.hard[requests.cpu]: Invalid value: "requests.cpu": unsupported scope applied to resource' },
    { name: 'scoped quota of configmaps', obj: () => rq({ hard: { configmaps: '1' }, scopes: ['Terminating'] }), want: 'spec.hard[configmaps]: Invalid value: "configmaps": unsupported scope applied to resource' },
    { name: 'scope selector In without values', obj: () => rq({ hard: { pods: '1' }, scopeSelector: { matchExpressions: [{ scopeName: 'PriorityClass', operator: 'In' }] } }), want: 'spec.scopeSelector.matchExpressions[0].values: Required value' },
    { name: 'scope selector In on Terminating', obj: () => rq({ hard: { pods: '1' }, scopeSelector: { matchExpressions: [{ scopeName: 'Terminating', operator: 'In', values: ['x'] }] } }), want: 'spec.scopeSelector.matchExpressions[0].operator: Invalid value: "In": must be \'Exist\' when scope is any of' },
    { name: 'priority too high', obj: () => decodeObject({ apiVersion: 'scheduling.k8s.io/v1', kind: 'PriorityClass', metadata: { name: 'x' }, value: 2000000000 }), want: 'value: Forbidden: maximum allowed value of a user defined priority is 1000000000' },
  ];
  it.each(cases)('$name', ({ obj, want }) => {
    const errs = errorsOf(obj());
    expect(errs.some((e) => e.startsWith(want)), `got: ${errs.join(' | ')}`).toBe(true);
  });

  it('accepts the standard node resources (pods too) in node capacity, but not in a container', () => {
    const node = decodeObject({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, status: { capacity: { cpu: '2', memory: '24Gi', pods: '110', 'ephemeral-storage': '100Gi' }, allocatable: { pods: '110' } } });
    expect(errorsOf(node)).toEqual([]);
    const errs = errorsOf(pod({ containers: [c({ resources: { limits: { pods: '1' } } })] }));
    expect(errs.some((e) => e.startsWith('spec.containers[0].resources.limits: Invalid value: "pods": must be a standard resource type')), errs.join(' | ')).toBe(true);
  });

  it('reports every problem at once', () => {
    const errs = errorsOf(pod({ containers: [{ name: 'C' }] }, { name: 'X' }));
    expect(errs.length).toBeGreaterThanOrEqual(3);
  });

  it('keeps pod spec immutable except the fields Kubernetes allows', () => {
    const old = pod({ containers: [c()] });
    applyDefaults(old);
    const imageOnly = structuredClone(old);
    imageOnly.pod!.spec!.containers[0].image = 'busybox:1.37';
    expect(() => validateUpdate(imageOnly, old)).not.toThrow();
    const env = structuredClone(old);
    env.pod!.spec!.containers[0].env.push({ name: 'A', value: '1', valueFrom: undefined });
    expect(() => validateUpdate(env, old)).toThrow(/spec: Forbidden: pod updates may not change fields other than/);
    const addTol = structuredClone(old);
    addTol.pod!.spec!.tolerations.push({ key: 'k', operator: 'Exists', value: '', effect: '', tolerationSeconds: undefined });
    expect(() => validateUpdate(addTol, old)).not.toThrow();
    expect(() => validateUpdate(old, addTol)).toThrow(/existing toleration can not be modified/);
  });
});

describe('defaults', () => {
  it.each([
    ['nginx', 'Always'],
    ['nginx:latest', 'Always'],
    ['nginx:1.25', 'IfNotPresent'],
    ['registry:5000/app', 'Always'],
    ['registry:5000/app:v1', 'IfNotPresent'],
    ['app@sha256:0123', 'IfNotPresent'],
  ])('image %s pulls %s', (image, want) => expect(defaultPullPolicy(image)).toBe(want));

  it('fills probe and pod defaults', () => {
    const [o] = parseManifests(fixture('pod-probes.yaml'));
    applyDefaults(o);
    const s = o.pod!.spec!;
    expect(s.restartPolicy).toBe('Always');
    expect(s.terminationGracePeriodSeconds).toBe(30);
    expect(s.dnsPolicy).toBe('ClusterFirst');
    expect(s.schedulerName).toBe('default-scheduler');
    const l = s.containers[0].livenessProbe!;
    expect([l.timeoutSeconds, l.periodSeconds, l.successThreshold, l.failureThreshold, l.initialDelaySeconds]).toEqual([1, 5, 1, 3, 5]);
    expect(s.containers[0].startupProbe!.failureThreshold).toBe(30);
    expect(s.containers[0].readinessProbe!.httpGet!.scheme).toBe('HTTP');
    expect(s.containers[0].ports[0].protocol).toBe('TCP');
    expect(s.containers[0].imagePullPolicy).toBe('IfNotPresent');
    expect(s.containers[0].terminationMessagePath).toBe('/dev/termination-log');
  });

  it('computes the QoS class', () => {
    const q = (resources: Record<string, unknown>[]) => {
      const o = pod({ containers: resources.map((r, i) => c({ name: `c${i}`, resources: r })) });
      applyDefaults(o);
      initialPodStatus(o.pod!);
      expect(o.pod!.status!.qosClass).toBe(qosClass(o.pod!.spec!));
      return o.pod!.status!.qosClass;
    };
    expect(q([{}])).toBe('BestEffort');
    expect(q([{ limits: { cpu: '1', memory: '1Gi' } }])).toBe('Guaranteed'); // requests default to limits
    expect(q([{ limits: { cpu: '1', memory: '1Gi' }, requests: { cpu: '1000m', memory: '1024Mi' } }])).toBe('Guaranteed');
    expect(q([{ limits: { cpu: '1', memory: '1Gi' } }, {}])).toBe('Burstable');
    expect(q([{ requests: { cpu: '100m' } }])).toBe('Burstable');
    const [fr] = parseManifests(fixture('pod-resources.yaml'));
    expect(qosClass(fr.pod!.spec!)).toBe('Burstable');
  });

  it('merges Secret stringData into data and sets Namespace phase', () => {
    const s = decodeObject({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' }, stringData: { user: 'admin' } });
    applyDefaults(s);
    expect(Buffer.from(s.secret!.data.user).toString()).toBe('admin');
    expect(s.secret!.stringData).toEqual({});
    expect(s.secret!.type).toBe('Opaque');
    const ns = decodeObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'n' } });
    applyDefaults(ns);
    expect(ns.namespace!.status!.phase).toBe('Active');
    expect(ns.namespace!.spec!.finalizers).toEqual(['kubernetes']);
  });
});
