// The framework's extension points in order, with an out-of-tree plugin registered next to the
// in-tree ones, and profiles chosen by spec.schedulerName.
import { describe, expect, it } from 'vitest';
import { MemoryCluster } from '../cluster';
import { PLUGIN_POINTS, resolveConfig } from '../config';
import { Scheduler } from '../scheduler';
import { node, pod } from '../testing/builders';
import { pointsOf, type CycleState, type PermitPlugin, type PostBindPlugin, type PreBindPlugin, type ReservePlugin } from './interfaces';
import { inTreeRegistry } from './registry';
import { unschedulable, type MaybeStatus } from './status';
import type { PodInfo } from './types';

class Recorder implements ReservePlugin, PermitPlugin, PreBindPlugin, PostBindPlugin {
  readonly name = 'Recorder';
  constructor(readonly log: string[], readonly rejectPermit: boolean) {}
  reserve(_s: CycleState, p: PodInfo, n: string): MaybeStatus { this.log.push(`reserve ${p.name} ${n}`); return null; }
  unreserve(_s: CycleState, p: PodInfo, n: string): void { this.log.push(`unreserve ${p.name} ${n}`); }
  permit(_s: CycleState, p: PodInfo): { status: MaybeStatus } { this.log.push(`permit ${p.name}`); return { status: this.rejectPermit ? unschedulable('not now') : null }; }
  async preBind(_s: CycleState, p: PodInfo): Promise<MaybeStatus> { this.log.push(`preBind ${p.name}`); return null; }
  postBind(_s: CycleState, p: PodInfo, n: string): void { this.log.push(`postBind ${p.name} ${n}`); }
}

async function run(rejectPermit: boolean) {
  const log: string[] = [];
  const registry = inTreeRegistry();
  registry.set('Recorder', { factory: () => new Recorder(log, rejectPermit), points: ['reserve', 'permit', 'preBind', 'postBind'] });
  const cluster = new MemoryCluster(false);
  cluster.putNode(node('n1'));
  const config = resolveConfig({ profiles: [{ plugins: { multiPoint: { enabled: [{ name: 'Recorder' }] } } }] }, registry);
  const sched = new Scheduler(cluster, { config, registry });
  await cluster.start(sched);
  cluster.putPod(pod('p'));
  await sched.scheduleUntilIdle();
  return { log, cluster, sched };
}

describe('framework extension points', () => {
  it('runs Reserve, Permit, PreBind, Bind and PostBind in order', async () => {
    const { log, cluster } = await run(false);
    expect(log).toEqual(['reserve p n1', 'permit p', 'preBind p', 'postBind p n1']);
    expect(cluster.pods.get('default/p')!.spec!.nodeName).toBe('n1');
  });

  it('a Permit rejection unreserves, forgets the assumed pod and requeues', async () => {
    const { log, cluster, sched } = await run(true);
    expect(log).toEqual(['reserve p n1', 'permit p', 'unreserve p n1']);
    expect(cluster.pods.get('default/p')!.spec!.nodeName).toBe('');
    expect(sched.cache.get('n1')!.pods).toHaveLength(0);
    expect(cluster.events.at(-1)!.message).toBe('running Permit plugin Recorder: not now');
  });

  it('every in-tree plugin declares the extension points it implements', () => {
    const registry = inTreeRegistry();
    const cfg = resolveConfig({}).profiles[0];
    const sched = new Scheduler(new MemoryCluster(), { config: resolveConfig({}) });
    for (const [name, reg] of registry) {
      const plugin = reg.factory(cfg.args.get(name) ?? reg.parseArgs?.(undefined, name), sched.handleFor(() => sched.profiles.get('default-scheduler')!));
      expect([name, pointsOf(plugin).sort()]).toEqual([name, [...PLUGIN_POINTS[name]].sort()]);
    }
  });
});

describe('profiles', () => {
  it('places each pod with the profile its schedulerName names', async () => {
    const cluster = new MemoryCluster(false);
    cluster.putNode(node('empty', { alloc: { cpu: '4', memory: '8Gi', pods: '110' } }));
    cluster.putNode(node('busy', { alloc: { cpu: '4', memory: '8Gi', pods: '110' } }));
    cluster.putPod(pod('existing', { node: 'busy', req: { cpu: '2', memory: '4Gi' } }));
    const config = resolveConfig({
      profiles: [
        { schedulerName: 'default-scheduler' },
        { schedulerName: 'bin-packer', pluginConfig: [{ name: 'NodeResourcesFit', args: { scoringStrategy: { type: 'MostAllocated' } } }], plugins: { score: { disabled: [{ name: 'NodeResourcesBalancedAllocation' }] } } },
      ],
    });
    const sched = new Scheduler(cluster, { config });
    await cluster.start(sched);
    cluster.putPod(pod('spread-me', { req: { cpu: '1', memory: '1Gi' } }));
    cluster.putPod(pod('pack-me', { req: { cpu: '1', memory: '1Gi' }, schedulerName: 'bin-packer' }));
    await sched.scheduleUntilIdle();
    expect(cluster.pods.get('default/spread-me')!.spec!.nodeName).toBe('empty');
    expect(cluster.pods.get('default/pack-me')!.spec!.nodeName).toBe('busy');
  });
});
