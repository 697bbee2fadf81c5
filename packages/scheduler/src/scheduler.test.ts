// The scheduler end to end over the in-process cluster (pure logic, fake clock): mixed
// constraints land where the rules say, unschedulable pods get Kubernetes' events and condition
// and are scheduled when a fitting node appears, preemption evicts and nominates, a bind
// conflict requeues, invalid pods are reported while the rest is scheduled.
import type { core } from '@berth/api';
import { ConflictError } from '@berth/common';
import { describe, expect, it } from 'vitest';
import { MemoryCluster } from './cluster';
import { resolveConfig } from './config';
import { Scheduler } from './scheduler';
import { explain } from './explain';
import { scheduler } from '@berth/api';
import { node, pod, term } from './testing/builders';

const ZONE = 'topology.kubernetes.io/zone';
const HOST = 'kubernetes.io/hostname';

async function setup(nodes: core.Node[], pods: core.Pod[] = [], cluster = new MemoryCluster(false)) {
  const clock = { t: 1_700_000_000_000 };
  for (const n of nodes) cluster.putNode(n);
  for (const p of pods) cluster.putPod(p);
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const sched = new Scheduler(cluster, { config: resolveConfig({}), now: () => clock.t, random });
  await cluster.start(sched);
  const settle = async () => {
    for (let i = 0; i < 20; i++) {
      await sched.scheduleUntilIdle();
      clock.t += 11_000;
      sched.queue.flushBackoffCompleted();
      if (!sched.queue.counts().active) break;
    }
  };
  const placed = (name: string, ns = 'default') => cluster.pods.get(`${ns}/${name}`)?.spec?.nodeName ?? '';
  return { cluster, sched, clock, settle, placed };
}

describe('Scheduler over an in-process cluster', () => {
  it('places 100 pods with mixed constraints on 20 nodes where the rules say', async () => {
    const nodes = Array.from({ length: 20 }, (_, i) => node(`n${i}`, {
      labels: { [ZONE]: `z${i % 4}`, ...(i >= 15 ? { gpu: 'true' } : {}) },
      taints: i >= 15 ? [{ key: 'gpu', value: 'true', effect: 'NoSchedule' }] : [],
      unschedulable: i === 13 || i === 14,
      alloc: { cpu: '8', memory: '16Gi', pods: '20' },
    }));
    const pods = [
      ...Array.from({ length: 10 }, (_, i) => pod(`web-${i}`, { labels: { app: 'web' }, req: { cpu: '500m' }, affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term({ app: 'web' }, HOST)], preferredDuringSchedulingIgnoredDuringExecution: [] } } as core.Affinity })),
      ...Array.from({ length: 20 }, (_, i) => pod(`gpu-${i}`, { req: { cpu: '1' }, nodeSelector: { gpu: 'true' }, tolerations: [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }] })),
      ...Array.from({ length: 20 }, (_, i) => pod(`spread-${i}`, { labels: { app: 'spread' }, req: { cpu: '100m' }, spread: [{ maxSkew: 1, topologyKey: ZONE, whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: { app: 'spread' }, matchExpressions: [] } }] })),
      ...Array.from({ length: 20 }, (_, i) => pod(`cache-${i}`, { req: { cpu: '100m' }, affinity: { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term({ app: 'web' }, ZONE)], preferredDuringSchedulingIgnoredDuringExecution: [] } } as core.Affinity })),
      ...Array.from({ length: 20 }, (_, i) => pod(`plain-${i}`, { req: { cpu: '250m', memory: '256Mi' } })),
      ...Array.from({ length: 10 }, (_, i) => pod(`huge-${i}`, { req: { cpu: '12' } })),
    ];
    const { cluster, sched, settle, placed } = await setup(nodes, pods);
    await settle();
    const nodeOf = (n: string) => nodes.find((x) => x.metadata!.name === n)!;
    const zone = (n: string) => nodeOf(n).metadata!.labels[ZONE];
    // Anti-affinity: one web pod per node; never on cordoned or tainted nodes.
    const web = pods.slice(0, 10).map((p) => placed(p.metadata!.name));
    expect(new Set(web).size).toBe(10);
    for (const n of web) expect(['n13', 'n14', 'n15', 'n16', 'n17', 'n18', 'n19']).not.toContain(n);
    // GPU pods only on the tainted GPU nodes.
    for (let i = 0; i < 20; i++) expect(Number(placed(`gpu-${i}`).slice(1))).toBeGreaterThanOrEqual(15);
    // Spread: zone counts within maxSkew 1.
    const perZone = new Map<string, number>();
    for (let i = 0; i < 20; i++) perZone.set(zone(placed(`spread-${i}`)), (perZone.get(zone(placed(`spread-${i}`))) ?? 0) + 1);
    expect(Math.max(...perZone.values()) - Math.min(...perZone.values())).toBeLessThanOrEqual(1);
    // Affinity: in a zone that holds a web pod.
    const webZones = new Set(web.map(zone));
    for (let i = 0; i < 20; i++) expect(webZones.has(zone(placed(`cache-${i}`)))).toBe(true);
    for (let i = 0; i < 20; i++) expect(placed(`plain-${i}`)).toMatch(/^n\d+$/);
    // No node can hold 12 cpu: events and condition in Kubernetes' shape (reasons sorted as strings, like sort.Strings).
    for (let i = 0; i < 10; i++) expect(placed(`huge-${i}`)).toBe('');
    const ev = cluster.events.filter((e) => e.name === 'huge-0' && e.reason === 'FailedScheduling');
    expect(ev.at(-1)!.message).toBe('0/20 nodes are available: 13 Insufficient cpu, 2 node(s) were unschedulable, 5 node(s) had untolerated taint {gpu: true}. preemption: 0/20 nodes are available: 13 No preemption victims found for incoming pod, 7 Preemption is not helpful for scheduling.');
    const cond = cluster.pods.get('default/huge-0')!.status!.conditions.find((c) => c.type === 'PodScheduled')!;
    expect(cond).toMatchObject({ status: 'False', reason: 'Unschedulable' });
    // Our own status writes do not wake them: they wait for an event that may help.
    expect(sched.queue.counts().unschedulable).toBe(10);
    expect(cluster.events.filter((e) => e.reason === 'Scheduled')).toHaveLength(90);
    expect(cluster.events.find((e) => e.name === 'plain-0' && e.reason === 'Scheduled')!.message).toMatch(/^Successfully assigned default\/plain-0 to n\d+$/);
    // A big enough node appears: the waiting pods are scheduled there (10 x 12 cpu).
    cluster.putNode(node('big', { alloc: { cpu: '128', memory: '64Gi', pods: '110' } }));
    await settle();
    for (let i = 0; i < 10; i++) expect(placed(`huge-${i}`)).toBe('big');
    expect(sched.counters.scheduled).toBe(100);
  });

  it('preempts lower-priority pods, nominates the node, and schedules the preemptor there', async () => {
    const { cluster, sched, settle, placed } = await setup(
      [node('n1', { alloc: { cpu: '2', memory: '4Gi', pods: '10' } }), node('n2', { alloc: { cpu: '2', memory: '4Gi', pods: '10' } })],
      [
        pod('low-a', { node: 'n1', priority: 1, req: { cpu: '1' } }), pod('low-b', { node: 'n1', priority: 1, req: { cpu: '1' } }),
        pod('mid-a', { node: 'n2', priority: 50, req: { cpu: '1' } }), pod('mid-b', { node: 'n2', priority: 50, req: { cpu: '1' } }),
      ],
    );
    cluster.putPod(pod('vip', { priority: 100, req: { cpu: '1' } }));
    await sched.scheduleUntilIdle();
    // The node whose victims have the lowest priority, and only one victim is needed.
    expect(cluster.pods.get('default/vip')!.status!.nominatedNodeName).toBe('n1');
    const gone = ['low-a', 'low-b'].filter((n) => !cluster.pods.has(`default/${n}`));
    expect(gone).toHaveLength(1);
    expect(cluster.events.find((e) => e.reason === 'Preempted')!.message).toMatch(/^preempted by default\/vip on node n1$/);
    expect(cluster.events.find((e) => e.name === 'vip' && e.reason === 'FailedScheduling')!.message).toMatch(/preemption: node n1 after evicting 1 pod\(s\)/);
    await settle();
    expect(placed('vip')).toBe('n1');
    expect(cluster.pods.has('default/mid-a') && cluster.pods.has('default/mid-b')).toBe(true);
  });

  it('a pod with preemptionPolicy Never does not preempt', async () => {
    const { cluster, sched } = await setup([node('n1', { alloc: { cpu: '1', memory: '1Gi', pods: '10' } })], [pod('low', { node: 'n1', priority: 1, req: { cpu: '1' } })]);
    cluster.putPod(pod('polite', { priority: 100, req: { cpu: '1' }, preemptionPolicy: 'Never' }));
    await sched.scheduleUntilIdle();
    expect(cluster.pods.has('default/low')).toBe(true);
    expect(cluster.events.find((e) => e.name === 'polite')!.message).toBe('0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.');
  });

  it('a bind conflict un-assumes the pod and requeues it', async () => {
    const cluster = new MemoryCluster(false);
    let fail = 1;
    const realBind = cluster.bind.bind(cluster);
    cluster.bind = async (p, n) => {
      if (fail-- > 0) throw new ConflictError(`pod ${p.metadata!.name}: resourceVersion changed`);
      return realBind(p, n);
    };
    const { sched, settle, placed } = await setup([node('n1', { alloc: { cpu: '1', memory: '1Gi', pods: '10' } })], [], cluster);
    cluster.putPod(pod('p', { req: { cpu: '1' } }));
    await sched.scheduleUntilIdle();
    expect(cluster.events.find((e) => e.reason === 'FailedScheduling')!.message).toMatch(/^Binding rejected: binding rejected: pod p: resourceVersion changed$/);
    // Nothing assumed is left behind: the node is free again.
    expect(sched.cache.get('n1')!.requested.milliCPU).toBe(0);
    expect(sched.queue.where('default/p')).toBe('backoff');
    await settle();
    expect(placed('p')).toBe('n1');
  });

  it('reports invalid pods with an event and keeps scheduling the others; ignores other schedulers\' pods', async () => {
    const { cluster, sched, placed } = await setup([node('n1')]);
    cluster.putPod(pod('bad', { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'a', operator: 'Near', values: ['b'] }], matchFields: [] }] }, preferredDuringSchedulingIgnoredDuringExecution: [] } } as core.Affinity }));
    cluster.putPod(pod('other', { schedulerName: 'someone-else' }));
    cluster.putPod(pod('good'));
    await sched.scheduleUntilIdle();
    expect(cluster.events.find((e) => e.name === 'bad')!.message).toMatch(/^invalid pod: spec\.affinity\.nodeAffinity\.requiredDuringSchedulingIgnoredDuringExecution\.nodeSelectorTerms\[0\]\.matchExpressions\[0\]\.operator: "Near" is not a valid operator/);
    expect(placed('good')).toBe('n1');
    expect(placed('other')).toBe('');
    expect(sched.queue.has('default/other')).toBe(false);
  });

  it('counts assumed pods before the bind is observed', async () => {
    const cluster = new MemoryCluster(true);
    const { sched } = await setup([node('n1', { alloc: { cpu: '1', memory: '1Gi', pods: '10' } }), node('n2', { alloc: { cpu: '1', memory: '1Gi', pods: '10' } })], [], cluster);
    cluster.putPod(pod('a', { req: { cpu: '1' } }));
    cluster.putPod(pod('b', { req: { cpu: '1' } }));
    await new Promise((r) => setImmediate(r));
    const qa = sched.queue.tryPop()!;
    await sched.scheduleOne(qa);
    // a is assumed (bind not observed yet), so b must go to the other node.
    const first = [...sched.cache.nodes()].find((n) => n.pods.length)!.name;
    await sched.scheduleOne(sched.queue.tryPop()!);
    await sched.drainBindings();
    await new Promise((r) => setImmediate(r));
    const a = cluster.pods.get('default/a')!.spec!.nodeName;
    const b = cluster.pods.get('default/b')!.spec!.nodeName;
    expect(a).toBe(first);
    expect(b).not.toBe(a);
    expect(b).toMatch(/^n[12]$/);
  });

  it('explains a pending pod against the live cache (pod_ref), and says when a pod is unknown', async () => {
    const { cluster, sched } = await setup([node('n1', { alloc: { cpu: '1', memory: '1Gi', pods: '10' } }), node('n2', { taints: [{ key: 'k', value: 'v', effect: 'NoSchedule' }] })]);
    cluster.putPod(pod('waiting', { req: { cpu: '2' } }));
    await sched.scheduleUntilIdle();
    const res = await explain(sched, scheduler.ExplainRequest.fromPartial({ podRef: { namespace: 'default', name: 'waiting' } }));
    expect(res.selectedNode).toBe('');
    expect(res.nodes.map((n) => [n.nodeName, n.failedPlugin, n.reasons])).toEqual([['n1', 'NodeResourcesFit', ['Insufficient cpu']], ['n2', 'TaintToleration', ['node(s) had untolerated taint {k: v}']]]);
    expect(res.message).toMatch(/^0\/2 nodes are available: 1 Insufficient cpu, 1 node\(s\) had untolerated taint \{k: v\}\./);
    // Nothing was bound or changed by explaining.
    expect(sched.cache.get('n1')!.pods).toHaveLength(0);
    await expect(explain(sched, scheduler.ExplainRequest.fromPartial({ podRef: { namespace: 'default', name: 'nope' } }))).rejects.toThrow(/pod default\/nope is not known to the scheduler/);
  });
});
