import type { core } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { buildCache, filterRow, makePlugin, scoreRow, type Row } from '../../testing/harness';
import { selectorFromRequirements } from '../../labels';
import { CycleState } from '../../framework/interfaces';
import { node, pod, sel } from '../../testing/builders';
import { PodInfo } from '../../framework/types';
import { podConstraints, type PodTopologySpread } from './pod-topology-spread';

const ZONE = 'topology.kubernetes.io/zone';
const HOST = 'kubernetes.io/hostname';
const nodes = [
  node('node-a', { labels: { [ZONE]: 'zone1' } }), node('node-b', { labels: { [ZONE]: 'zone1' } }),
  node('node-x', { labels: { [ZONE]: 'zone2' } }), node('node-y', { labels: { [ZONE]: 'zone2' } }),
];
const foo = (name: string, nodeName: string, extra = {}) => pod(name, { node: nodeName, labels: { foo: '' }, ...extra });
// zone1 holds 2 matching pods, zone2 one.
const existing = [foo('p-a', 'node-a'), foo('p-b', 'node-b'), foo('p-x', 'node-x')];
const c = (key: string, maxSkew: number, when: string, extra: Partial<core.TopologySpreadConstraint> = {}): Partial<core.TopologySpreadConstraint> =>
  ({ topologyKey: key, maxSkew, whenUnsatisfiable: when, labelSelector: { matchLabels: {}, matchExpressions: [{ key: 'foo', operator: 'Exists', values: [] }] }, ...extra });
const OK = 'Success';
const SKEW = "Unschedulable: node(s) didn't match pod topology spread constraints";
const MISSING = "UnschedulableAndUnresolvable: node(s) didn't match pod topology spread constraints (missing required label)";

describe('PodTopologySpread filter', () => {
  it.each<{ name: string } & Row & { want: Record<string, string> }>([
    { name: 'no constraints', pod: pod('p', { labels: { foo: '' } }), nodes, existingPods: existing, want: { 'node-a': OK, 'node-b': OK, 'node-x': OK, 'node-y': OK } },
    {
      name: 'zone maxSkew 1: only the emptier zone', pod: pod('p', { labels: { foo: '' }, spread: [c(ZONE, 1, 'DoNotSchedule')] }), nodes, existingPods: existing,
      want: { 'node-a': SKEW, 'node-b': SKEW, 'node-x': OK, 'node-y': OK },
    },
    {
      name: 'a pod that does not match its own selector does not count itself', pod: pod('p', { spread: [c(ZONE, 1, 'DoNotSchedule')] }), nodes, existingPods: existing,
      want: { 'node-a': OK, 'node-b': OK, 'node-x': OK, 'node-y': OK },
    },
    {
      name: 'hostname maxSkew 1: only the empty node', pod: pod('p', { labels: { foo: '' }, spread: [c(HOST, 1, 'DoNotSchedule')] }), nodes, existingPods: existing,
      want: { 'node-a': SKEW, 'node-b': SKEW, 'node-x': SKEW, 'node-y': OK },
    },
    {
      name: 'pods of other namespaces and terminating pods do not count', pod: pod('p', { labels: { foo: '' }, spread: [c(ZONE, 1, 'DoNotSchedule')] }), nodes,
      existingPods: [foo('p-a', 'node-a'), foo('p-b', 'node-b', { ns: 'other' }), foo('p-x', 'node-x', { deleting: true })],
      want: { 'node-a': SKEW, 'node-b': SKEW, 'node-x': OK, 'node-y': OK },
    },
    {
      name: 'a node without the topology label', pod: pod('p', { labels: { foo: '' }, spread: [c(ZONE, 1, 'DoNotSchedule')] }), nodes: [...nodes, node('node-c')], existingPods: existing,
      want: { 'node-a': SKEW, 'node-b': SKEW, 'node-x': OK, 'node-y': OK, 'node-c': MISSING },
    },
    {
      name: 'minDomains above the domain count makes the global minimum 0', pod: pod('p', { labels: { foo: '' }, spread: [c(ZONE, 1, 'DoNotSchedule', { minDomains: 3 })] }), nodes, existingPods: existing,
      want: { 'node-a': SKEW, 'node-b': SKEW, 'node-x': SKEW, 'node-y': SKEW },
    },
    {
      name: 'nodeAffinityPolicy Honor (default): domains outside the pod\'s node selector are not counted',
      pod: pod('p', { labels: { foo: '' }, nodeSelector: { [ZONE]: 'zone1' }, spread: [c(ZONE, 1, 'DoNotSchedule')] }), nodes, existingPods: existing,
      want: { 'node-a': OK, 'node-b': OK, 'node-x': OK, 'node-y': OK },
    },
    {
      name: 'nodeAffinityPolicy Ignore: every domain counts',
      pod: pod('p', { labels: { foo: '' }, nodeSelector: { [ZONE]: 'zone1' }, spread: [c(ZONE, 1, 'DoNotSchedule', { nodeAffinityPolicy: 'Ignore' })] }), nodes, existingPods: existing,
      want: { 'node-a': SKEW, 'node-b': SKEW, 'node-x': OK, 'node-y': OK },
    },
    {
      name: 'nodeTaintsPolicy Honor: a tainted zone is not a domain',
      pod: pod('p', { labels: { foo: '' }, spread: [c(ZONE, 1, 'DoNotSchedule', { nodeTaintsPolicy: 'Honor' })] }),
      nodes: [nodes[0], nodes[1], node('node-x', { labels: { [ZONE]: 'zone2' }, taints: [{ key: 'k', value: 'v', effect: 'NoSchedule' }] }), node('node-y', { labels: { [ZONE]: 'zone2' }, taints: [{ key: 'k', value: 'v', effect: 'NoSchedule' }] })],
      existingPods: existing,
      // Only zone1 is a domain: min = 2, zone1 gets 2+1-2 = 1 <= 1.
      want: { 'node-a': OK, 'node-b': OK, 'node-x': OK, 'node-y': OK },
    },
    {
      name: 'two constraints must both hold',
      pod: pod('p', { labels: { foo: '' }, spread: [c(ZONE, 1, 'DoNotSchedule'), c(HOST, 1, 'DoNotSchedule')] }), nodes, existingPods: existing,
      want: { 'node-a': SKEW, 'node-b': SKEW, 'node-x': SKEW, 'node-y': OK },
    },
    {
      name: 'ScheduleAnyway never filters', pod: pod('p', { labels: { foo: '' }, spread: [c(ZONE, 1, 'ScheduleAnyway')] }), nodes, existingPods: existing,
      want: { 'node-a': OK, 'node-b': OK, 'node-x': OK, 'node-y': OK },
    },
  ])('$name', (row) => {
    expect(filterRow('PodTopologySpread', row)).toEqual(row.want);
  });

  it.each([
    [c(ZONE, 0, 'DoNotSchedule'), /topologySpreadConstraints\[0\]\.maxSkew: must be greater than zero/],
    [c('', 1, 'DoNotSchedule'), /topologySpreadConstraints\[0\]\.topologyKey: must not be empty/],
    [c(ZONE, 1, 'Sometimes'), /topologySpreadConstraints\[0\]\.whenUnsatisfiable: "Sometimes" is not valid/],
    [c(ZONE, 1, 'ScheduleAnyway', { minDomains: 2 }), /minDomains: must be at least 1 and is only allowed with whenUnsatisfiable DoNotSchedule/],
  ])('rejects the invalid constraint %j naming the field', (bad, re) => {
    expect(() => podConstraints(pod('p', { spread: [bad] }), true)).toThrow(re);
  });
});

describe('PodTopologySpread score', () => {
  it.each<{ name: string } & Row & { want: Record<string, number> | 'skip' }>([
    { name: 'no soft constraints and no workload: skipped', pod: pod('p', { labels: { foo: '' } }), nodes, existingPods: existing, want: 'skip' },
    {
      // weight ln(2+2); zone1: 2*1.386 = 2.77 -> 3, zone2: 1.386 -> 1; 100*(3+1-s)/3
      name: 'zone constraint favours the emptier zone', pod: pod('p', { labels: { foo: '' }, spread: [c(ZONE, 1, 'ScheduleAnyway')] }), nodes, existingPods: existing,
      want: { 'node-a': 33, 'node-b': 33, 'node-x': 100, 'node-y': 100 },
    },
    {
      // hostname: weight ln(4+2)=1.79; node-a,b,x: 1.79 -> 2, node-y: 0; 100*(2+0-s)/2
      name: 'hostname constraint counts pods per node', pod: pod('p', { labels: { foo: '' }, spread: [c(HOST, 1, 'ScheduleAnyway')] }), nodes, existingPods: existing,
      want: { 'node-a': 0, 'node-b': 0, 'node-x': 0, 'node-y': 100 },
    },
    {
      name: 'maxSkew adds a constant', pod: pod('p', { labels: { foo: '' }, spread: [c(ZONE, 3, 'ScheduleAnyway')] }), nodes, existingPods: existing,
      // zone1: 2.77+2 = 4.77 -> 5, zone2: 1.39+2 -> 3; 100*(5+3-s)/5
      want: { 'node-a': 60, 'node-b': 60, 'node-x': 100, 'node-y': 100 },
    },
    {
      name: 'nodes missing the topology label score 0', pod: pod('p', { labels: { foo: '' }, spread: [c(ZONE, 1, 'ScheduleAnyway')] }), nodes: [...nodes, node('node-c')], existingPods: existing,
      want: { 'node-a': 33, 'node-b': 33, 'node-x': 100, 'node-y': 100, 'node-c': 0 },
    },
  ])('$name', (row) => {
    expect(scoreRow('PodTopologySpread', row)).toEqual(row.want);
  });

  it('system default spreading applies to pods selected by a workload (Service) selector', () => {
    const row: Row = { pod: pod('p', { labels: { app: 'web' } }), nodes, existingPods: [pod('w1', { node: 'node-a', labels: { app: 'web' } }), pod('w2', { node: 'node-a', labels: { app: 'web' } })] };
    const cache = buildCache(row);
    cache.setWorkloadSelector('default', 'svc/web', selectorFromRequirements([{ key: 'app', op: 'In', values: new Set(['web']) }]));
    const p = makePlugin('PodTopologySpread', cache) as PodTopologySpread;
    const st = new CycleState();
    const info = new PodInfo(row.pod);
    const ns = cache.nodes();
    expect(p.preScore(st, info, ns)).toBeNull();
    const scores = ns.map((n) => p.score(st, info, n));
    p.normalizeScore(st, info, scores, ns);
    // hostname (maxSkew 3, ln 6) and zone (maxSkew 5, ln 4): raw a 12, b 9, x 6, y 6 -> 100*(12+6-s)/12
    expect(scores).toEqual([50, 75, 100, 100]);
  });
});
