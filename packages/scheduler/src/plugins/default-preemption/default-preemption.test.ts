import { describe, expect, it } from 'vitest';
import { CycleState } from '../../framework/interfaces';
import { Framework } from '../../framework/framework';
import { inTreeRegistry } from '../../framework/registry';
import { Code, Status } from '../../framework/status';
import { NodeInfo, PodInfo } from '../../framework/types';
import { resolveConfig } from '../../config';
import { buildCache, testHandle, type Row } from '../../testing/harness';
import { node, pod } from '../../testing/builders';
import { pickOneNode, type Candidate, type DefaultPreemption } from './default-preemption';

const info = (name: string, priority: number, start = '2026-01-01T00:00:00Z') => new PodInfo(pod(name, { priority, startTime: start }));
const cand = (name: string, victims: PodInfo[]): Candidate => ({ node: new NodeInfo(name), victims });

describe('pickOneNodeForPreemption', () => {
  it.each([
    { name: 'lowest highest-priority victim', cands: [cand('a', [info('x', 10)]), cand('b', [info('y', 5), info('z', 5)])], want: 'b' },
    { name: 'then the lowest sum of priorities', cands: [cand('a', [info('x', 5), info('y', 5)]), cand('b', [info('z', 5), info('w', 1)])], want: 'b' },
    { name: 'then the fewest victims', cands: [cand('a', [info('x', 5), info('y', 0), info('v', 0)]), cand('b', [info('z', 5), info('w', 0)])], want: 'b' },
    {
      name: 'then the latest start of the highest-priority victims',
      cands: [cand('a', [info('x', 5, '2026-01-01T00:00:00Z')]), cand('b', [info('y', 5, '2026-01-02T00:00:00Z')])], want: 'b',
    },
    { name: 'a node needing no victims wins', cands: [cand('a', [info('x', 1)]), cand('b', [])], want: 'b' },
  ])('$name', ({ cands, want }) => {
    expect(pickOneNode(cands)!.node.name).toBe(want);
  });
});

describe('DefaultPreemption selectVictimsOnNode', () => {
  function victims(row: Row, nodeName: string, preemptor: PodInfo): string[] | string {
    const cache = buildCache(row);
    let fwk!: Framework;
    const base = testHandle(cache);
    const handle = { ...base, runFilterPluginsWithNominatedPods: (s: CycleState, p: PodInfo, n: NodeInfo) => fwk.runFilter(s, p, n), runPreFilterExtensionAddPod: (s: CycleState, p: PodInfo, a: PodInfo, n: NodeInfo) => fwk.runPreFilterAddPod(s, p, a, n), runPreFilterExtensionRemovePod: (s: CycleState, p: PodInfo, r: PodInfo, n: NodeInfo) => fwk.runPreFilterRemovePod(s, p, r, n) };
    fwk = new Framework(resolveConfig({}).profiles[0], inTreeRegistry(), handle);
    const state = new CycleState();
    fwk.runPreFilter(state, preemptor, cache.nodes());
    const plugin = fwk.postFilter[0] as DefaultPreemption;
    const r = plugin.selectVictimsOnNode(state, preemptor, cache.get(nodeName)!);
    return r instanceof Status ? `${Code[r.code]}: ${r.message}` : r.map((v) => v.name).sort();
  }

  const n1 = [node('n1', { alloc: { cpu: '3', memory: '8Gi', pods: '10' } })];
  it.each([
    {
      name: 'evicts only as many as needed, least important first',
      existingPods: [pod('a', { node: 'n1', priority: 1, req: { cpu: '1' } }), pod('b', { node: 'n1', priority: 2, req: { cpu: '1' } }), pod('c', { node: 'n1', priority: 3, req: { cpu: '1' } })],
      preemptor: info('vip', 100), req: '1', want: ['a'],
    },
    {
      name: 'higher-priority pods are never victims',
      existingPods: [pod('a', { node: 'n1', priority: 200, req: { cpu: '2' } }), pod('b', { node: 'n1', priority: 1, req: { cpu: '1' } })],
      preemptor: info('vip', 100), req: '2', want: 'Unschedulable: Insufficient cpu',
    },
    {
      name: 'nothing of lower priority on the node',
      existingPods: [pod('a', { node: 'n1', priority: 100, req: { cpu: '3' } })],
      preemptor: info('vip', 100), req: '1', want: 'Unschedulable: No preemption victims found for incoming pod',
    },
    {
      name: 'pod anti-affinity victims are found through the PreFilter extensions',
      existingPods: [pod('web', { node: 'n1', priority: 1, labels: { app: 'web' } }), pod('other', { node: 'n1', priority: 1 })],
      preemptor: new PodInfo(pod('vip', { priority: 100, affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'web' }, matchExpressions: [] }, topologyKey: 'kubernetes.io/hostname', namespaces: [], matchLabelKeys: [], mismatchLabelKeys: [] }], preferredDuringSchedulingIgnoredDuringExecution: [] } } as never })),
      req: '', want: ['web'],
    },
  ])('$name', ({ existingPods, preemptor, req, want }) => {
    const p = req ? new PodInfo({ ...preemptor.pod, spec: { ...preemptor.pod.spec!, containers: pod('x', { req: { cpu: req } }).spec!.containers } }) : preemptor;
    expect(victims({ pod: p.pod, nodes: n1, existingPods }, 'n1', p)).toEqual(want);
  });
});
