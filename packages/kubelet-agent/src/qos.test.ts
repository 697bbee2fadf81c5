// Table tests of the pod's effective resources, QoS class, cgroup plan and oom_score_adj, with the
// numbers Kubernetes documents (shares = milliCPU*1024/1000 in [2, 262144], quota = milliCPU*period/1000).
import { describe, expect, it } from 'vitest';
import { containerOomScoreAdj, podResources, qosClassOf } from './qos';
import { milliCpuToQuota, milliCpuToShares, podCgroupPath, podCgroupPlan, qosCgroupPlans } from './cgroups/plan';
import { container, pod } from './testing/pods';

const GiB = 1024n ** 3n;

describe('milliCpuToShares / milliCpuToQuota', () => {
  it.each([
    [0n, 2], [1n, 2], [2n, 2], [3n, 3], [100n, 102], [250n, 256], [1000n, 1024], [1500n, 1536], [256000n, 262144], [300000n, 262144],
  ])('%s milliCPU -> %s shares', (m, s) => expect(milliCpuToShares(m)).toBe(s));
  it.each([
    [0n, 100000, -1], [1n, 100000, 1000], [5n, 100000, 1000], [10n, 100000, 1000], [250n, 100000, 25000], [1500n, 100000, 150000], [500n, 50000, 25000],
  ])('%s milliCPU, period %s -> quota %s', (m, p, q) => expect(milliCpuToQuota(m, p)).toBe(q));
});

describe('pod resources, QoS and cgroup plan', () => {
  const uid = '2f1c8e3a-0d2b-4c55-9a77-0123456789ab';
  const cases = [
    {
      name: 'guaranteed: requests = limits, directly under kubepods',
      pod: pod([container('a', { limits: { cpu: '500m', memory: '256Mi' } }), container('b', { requests: { cpu: '1', memory: '1Gi' }, limits: { cpu: '1', memory: '1Gi' } })]),
      qos: 'Guaranteed', path: ['kubepods', `pod${uid}`], shares: 1536, quota: 150000, memory: 1280n * 1024n * 1024n,
    },
    {
      name: 'burstable: one container without limits -> no quota, no memory limit',
      pod: pod([container('a', { requests: { cpu: '250m', memory: '64Mi' }, limits: { cpu: '500m', memory: '128Mi' } }), container('b', { requests: { cpu: '100m' } })]),
      qos: 'Burstable', path: ['kubepods', 'burstable', `pod${uid}`], shares: 358, quota: undefined, memory: undefined,
    },
    {
      name: 'burstable: all limited but requests below limits',
      pod: pod([container('a', { requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu: '200m', memory: '128Mi' } })]),
      qos: 'Burstable', path: ['kubepods', 'burstable', `pod${uid}`], shares: 102, quota: 20000, memory: 128n * 1024n * 1024n,
    },
    {
      name: 'besteffort: nothing requested -> minimum shares',
      pod: pod([container('a'), container('b')]),
      qos: 'BestEffort', path: ['kubepods', 'besteffort', `pod${uid}`], shares: 2, quota: undefined, memory: undefined,
    },
    {
      name: 'an init container bigger than all app containers sets the pod request',
      pod: pod([container('a', { limits: { cpu: '100m', memory: '100Mi' } })], { init: [container('i', { limits: { cpu: '2', memory: '1Gi' } })] }),
      qos: 'Guaranteed', path: ['kubepods', `pod${uid}`], shares: 2048, quota: 200000, memory: GiB,
    },
    {
      name: 'a sidecar adds to the app containers and to later init containers',
      pod: pod([container('a', { limits: { cpu: '300m', memory: '100Mi' } })], {
        init: [container('sc', { limits: { cpu: '200m', memory: '50Mi' } }, { restartPolicy: 'Always' }), container('i', { limits: { cpu: '400m', memory: '100Mi' } })],
      }),
      // steady 300+200 = 500m; init "i" runs beside the sidecar: 400+200 = 600m -> pod 600m.
      qos: 'Guaranteed', path: ['kubepods', `pod${uid}`], shares: 614, quota: 60000, memory: 150n * 1024n * 1024n,
    },
    {
      name: 'overhead adds to requests and to declared limits',
      pod: pod([container('a', { limits: { cpu: '1', memory: '1Gi' } })], { overhead: { cpu: '250m', memory: '120Mi' } }),
      qos: 'Guaranteed', path: ['kubepods', `pod${uid}`], shares: 1280, quota: 125000, memory: GiB + 120n * 1024n * 1024n,
    },
    {
      name: 'huge request clamps shares at 262144',
      pod: pod([container('a', { requests: { cpu: '300' } })]),
      qos: 'Burstable', path: ['kubepods', 'burstable', `pod${uid}`], shares: 262144, quota: undefined, memory: undefined,
    },
  ];
  it.each(cases)('$name', (c) => {
    expect(qosClassOf(c.pod.spec!)).toBe(c.qos);
    const plan = podCgroupPlan(c.pod);
    expect(plan.qos).toBe(c.qos);
    expect(plan.path).toEqual(c.path);
    expect(plan.resources.cpuShares).toBe(c.shares);
    expect(plan.resources.cpuQuotaUs).toBe(c.quota);
    expect(plan.resources.cpuPeriodUs).toBe(c.quota === undefined ? undefined : 100000);
    expect(plan.resources.memoryLimitBytes).toBe(c.memory);
  });

  it('overhead on a resource the pod does not limit leaves it unlimited but counts in requests', () => {
    const p = pod([container('a', { requests: { cpu: '100m' } })], { overhead: { memory: '64Mi' } });
    expect(podResources(p.spec!, 'requests').get('memory')?.toString()).toBe('64Mi');
    expect(podResources(p.spec!, 'limits').has('memory')).toBe(false);
  });

  it('cfs quota can be turned off and a pids limit added', () => {
    const plan = podCgroupPlan(pod([container('a', { limits: { cpu: '1', memory: '1Gi' } })]), { cpuCfsQuota: false, podPidsLimit: 1024 });
    expect(plan.resources.cpuQuotaUs).toBeUndefined();
    expect(plan.resources.pidsLimit).toBe(1024);
  });

  it.each(['../etc', 'a/b', '', 'x'.repeat(200)])('refuses uid %j as a cgroup name', (bad) => {
    expect(() => podCgroupPath('Burstable', bad)).toThrow(/metadata\.uid/);
  });

  it('QoS-level cgroups: burstable shares sum the burstable pods, besteffort gets 2', () => {
    const pods = [
      pod([container('a', { requests: { cpu: '250m' } })]),
      pod([container('a', { requests: { cpu: '500m', memory: '1Gi' } })]),
      pod([container('a', { limits: { cpu: '2', memory: '1Gi' } })]),
      pod([container('a')]),
    ];
    const plans = qosCgroupPlans(pods, { milliCpu: 2000n, memoryBytes: 8n * GiB });
    expect(plans).toEqual([
      { path: ['kubepods'], resources: { cpuShares: 2048, memoryLimitBytes: 8n * GiB } },
      { path: ['kubepods', 'burstable'], resources: { cpuShares: 768 } },
      { path: ['kubepods', 'besteffort'], resources: { cpuShares: 2 } },
    ]);
  });
});

describe('oom_score_adj', () => {
  const cap = 8n * GiB;
  it.each([
    ['guaranteed', pod([container('a', { limits: { cpu: '1', memory: '1Gi' } })]), -997],
    ['besteffort', pod([container('a')]), 1000],
    ['burstable 1Gi of 8Gi', pod([container('a', { requests: { memory: '1Gi' } })]), 875],
    ['burstable without memory request', pod([container('a', { requests: { cpu: '100m' } })]), 999],
    ['burstable asking (almost) all memory', pod([container('a', { requests: { memory: '8Gi' }, limits: { memory: '9Gi' } })]), 3],
    ['burstable asking a tiny amount', pod([container('a', { requests: { memory: '1Ki' } })]), 999],
    ['critical priority beats QoS', pod([container('a')], { priority: 2_000_001_000 }), -997],
  ])('%s -> %s', (_n, p, want) => {
    expect(containerOomScoreAdj(p, p.spec!.containers[0], cap)).toBe(want);
  });
});
