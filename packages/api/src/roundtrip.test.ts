// A full Pod (every field group of the object model) survives binary encode/decode and the
// JSON form with Kubernetes field names unchanged.
import { describe, expect, it } from 'vitest';
import { core } from './index';

const manifest = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: 'web-0', namespace: 'default', uid: '7d3f0c1e-1111-4a2b-9c3d-000000000001', resourceVersion: '42', generation: 3,
    labels: { app: 'web', tier: 'frontend' }, annotations: { 'kubernetes.io/ingress-bandwidth': '10M' },
    creationTimestamp: '2026-11-26T21:00:00Z', deletionTimestamp: '2026-11-26T22:00:00Z', deletionGracePeriodSeconds: 30,
    ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web', uid: 'u-1', controller: true, blockOwnerDeletion: true }],
    finalizers: ['berth.io/protect'],
  },
  spec: {
    initContainers: [{ name: 'init', image: 'busybox:1.36', command: ['sh', '-c', 'echo init'] }],
    containers: [{
      name: 'web', image: 'registry.local/web:1.0', command: ['/bin/httpd'], args: ['-f', '-p', '8080'], workingDir: '/srv',
      env: [
        { name: 'MODE', value: 'prod' },
        { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
        { name: 'CPU', valueFrom: { resourceFieldRef: { containerName: 'web', resource: 'limits.cpu', divisor: '1m' } } },
      ],
      ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
      resources: { requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu: '500m', memory: '128Mi' } },
      livenessProbe: { httpGet: { path: '/healthz', port: { intValue: 8080 }, scheme: 'HTTP', httpHeaders: [{ name: 'X-Probe', value: '1' }] }, initialDelaySeconds: 3, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 },
      readinessProbe: { tcpSocket: { port: { stringValue: 'http' } }, periodSeconds: 5 },
      startupProbe: { exec: { command: ['cat', '/tmp/ready'] }, failureThreshold: 30 },
      lifecycle: { preStop: { exec: { command: ['sh', '-c', 'sleep 1'] } }, postStart: { httpGet: { path: '/started', port: { intValue: 8080 } } } },
      securityContext: { runAsUser: 1000, runAsGroup: 1000, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] } },
      imagePullPolicy: 'IfNotPresent',
      volumeMounts: [{ name: 'cache', mountPath: '/cache' }],
    }],
    volumes: [{ name: 'cache', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } }, { name: 'host', hostPath: { path: '/var/log', type: 'Directory' } }],
    restartPolicy: 'Always', nodeName: 'node-1', nodeSelector: { 'kubernetes.io/os': 'linux' },
    affinity: {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a', 'b'] }] }] },
        preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 10, preference: { matchExpressions: [{ key: 'disk', operator: 'Exists' }] } }],
      },
      podAntiAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'web' } }, topologyKey: 'kubernetes.io/hostname' }],
      },
      podAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 50, podAffinityTerm: { labelSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['cache'] }] }, topologyKey: 'zone' } }],
      },
    },
    tolerations: [{ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 }],
    topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'zone', whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: { app: 'web' } } }],
    priority: 1000, priorityClassName: 'high', schedulerName: 'default-scheduler', terminationGracePeriodSeconds: 30,
    dnsPolicy: 'ClusterFirst', hostname: 'web-0',
    securityContext: { sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }] },
  },
  status: {
    phase: 'Running',
    conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: '2026-11-26T21:00:05Z' }],
    hostIP: '10.0.0.2', podIP: '10.244.1.5', podIPs: [{ ip: '10.244.1.5' }], startTime: '2026-11-26T21:00:01Z', qosClass: 'Burstable',
    containerStatuses: [{
      name: 'web', ready: true, restartCount: 2, image: 'registry.local/web:1.0', imageID: 'sha256:abc', containerID: 'berth://c1', started: true,
      state: { running: { startedAt: '2026-11-26T21:00:02Z' } },
      lastState: { terminated: { exitCode: 137, reason: 'OOMKilled', startedAt: '2026-11-26T20:59:00Z', finishedAt: '2026-11-26T21:00:00Z', containerID: 'berth://c0' } },
    }],
    initContainerStatuses: [{ name: 'init', ready: true, restartCount: 1, state: { terminated: { exitCode: 1, reason: 'Error' } } }],
  },
};

describe('core.v1.Pod', () => {
  it('round-trips through the binary encoding', () => {
    const pod = core.Pod.fromJSON(manifest);
    const bytes = core.Pod.encode(pod).finish();
    const back = core.Pod.decode(bytes);
    expect(back).toEqual(pod);
    expect(core.Pod.toJSON(back)).toEqual(manifest);
  });

  it('keeps Kubernetes JSON field names (podIP, podIPs, hostIP, imageID, containerID, apiVersion)', () => {
    const json = core.Pod.toJSON(core.Pod.fromJSON(manifest)) as Record<string, any>;
    expect(json.apiVersion).toBe('v1');
    expect(json.status.podIP).toBe('10.244.1.5');
    expect(json.status.podIPs).toEqual([{ ip: '10.244.1.5' }]);
    expect(json.status.hostIP).toBe('10.0.0.2');
    expect(json.status.containerStatuses[0].imageID).toBe('sha256:abc');
    expect(json.status.containerStatuses[0].containerID).toBe('berth://c1');
  });

  it('wraps in the Object envelope the Store uses', () => {
    const obj = core.Object.fromJSON({ pod: manifest });
    const back = core.Object.decode(core.Object.encode(obj).finish());
    expect(back.pod?.metadata?.name).toBe('web-0');
    expect(back.node).toBeUndefined();
  });
});
