import type { core } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { filterRow, scoreRow, type Row } from '../../testing/harness';
import { node, pod, term } from '../../testing/builders';
import { PodInfo } from '../../framework/types';

const ZONE = 'topology.kubernetes.io/zone';
const HOST = 'kubernetes.io/hostname';
const nodes = [node('n1', { labels: { [ZONE]: 'z1' } }), node('n2', { labels: { [ZONE]: 'z1' } }), node('n3', { labels: { [ZONE]: 'z2' } })];
const affinity = (required: core.PodAffinityTerm[] = [], preferred: [number, core.PodAffinityTerm][] = []): core.Affinity => ({
  podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: required, preferredDuringSchedulingIgnoredDuringExecution: preferred.map(([weight, podAffinityTerm]) => ({ weight, podAffinityTerm })) },
} as core.Affinity);
const anti = (required: core.PodAffinityTerm[] = [], preferred: [number, core.PodAffinityTerm][] = []): core.Affinity => ({
  podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: required, preferredDuringSchedulingIgnoredDuringExecution: preferred.map(([weight, podAffinityTerm]) => ({ weight, podAffinityTerm })) },
} as core.Affinity);

const AFF = "UnschedulableAndUnresolvable: node(s) didn't match pod affinity rules";
const ANTI = "Unschedulable: node(s) didn't match pod anti-affinity rules";
const EXISTING = "Unschedulable: node(s) didn't satisfy existing pods anti-affinity rules";
const OK = 'Success';

describe('InterPodAffinity filter', () => {
  it.each<{ name: string } & Row & { want: Record<string, string> }>([
    { name: 'no constraints anywhere', pod: pod('p'), nodes, existingPods: [pod('e', { node: 'n1' })], want: { n1: OK, n2: OK, n3: OK } },
    {
      name: 'required affinity: the zone of a matching pod',
      pod: pod('p', { affinity: affinity([term({ service: 'securityscan' }, ZONE)]) }), nodes,
      existingPods: [pod('e', { node: 'n1', labels: { service: 'securityscan' } })],
      want: { n1: OK, n2: OK, n3: AFF },
    },
    {
      name: 'required affinity with no matching pod anywhere fails',
      pod: pod('p', { affinity: affinity([term({ service: 'securityscan' }, ZONE)]) }), nodes,
      existingPods: [pod('e', { node: 'n1', labels: { service: 'other' } })],
      want: { n1: AFF, n2: AFF, n3: AFF },
    },
    {
      name: 'the first pod of a group that matches its own affinity is allowed',
      pod: pod('p', { labels: { app: 'db' }, affinity: affinity([term({ app: 'db' }, ZONE)]) }), nodes: [...nodes, node('n4')],
      want: { n1: OK, n2: OK, n3: OK, n4: AFF },
    },
    {
      name: 'affinity to pods in another namespace needs namespaces',
      pod: pod('p', { affinity: affinity([term({ app: 'web' }, ZONE)]) }), nodes,
      existingPods: [pod('e', { ns: 'other', node: 'n3', labels: { app: 'web' } })],
      want: { n1: AFF, n2: AFF, n3: AFF },
    },
    {
      name: 'namespaces lists the other namespace',
      pod: pod('p', { affinity: affinity([term({ app: 'web' }, ZONE, { namespaces: ['other'] })]) }), nodes,
      existingPods: [pod('e', { ns: 'other', node: 'n3', labels: { app: 'web' } })],
      want: { n1: AFF, n2: AFF, n3: OK },
    },
    {
      name: 'namespaceSelector selects namespaces by label',
      pod: pod('p', { affinity: affinity([term({ app: 'web' }, ZONE, { namespaceSelector: { matchLabels: { team: 'a' }, matchExpressions: [] } })]) }), nodes,
      namespaces: [{ name: 'a1', labels: { team: 'a' } }, { name: 'b1', labels: { team: 'b' } }],
      existingPods: [pod('e1', { ns: 'a1', node: 'n3', labels: { app: 'web' } }), pod('e2', { ns: 'b1', node: 'n1', labels: { app: 'web' } })],
      want: { n1: AFF, n2: AFF, n3: OK },
    },
    {
      name: 'an empty namespaceSelector means every namespace',
      pod: pod('p', { affinity: affinity([term({ app: 'web' }, ZONE, { namespaceSelector: { matchLabels: {}, matchExpressions: [] } })]) }), nodes,
      existingPods: [pod('e', { ns: 'zzz', node: 'n1', labels: { app: 'web' } })],
      want: { n1: OK, n2: OK, n3: AFF },
    },
    {
      name: 'all affinity terms must be met by the same pods',
      pod: pod('p', { affinity: affinity([term({ app: 'web' }, ZONE), term({ tier: 'front' }, HOST)]) }), nodes,
      existingPods: [pod('e1', { node: 'n1', labels: { app: 'web', tier: 'front' } }), pod('e2', { node: 'n3', labels: { app: 'web' } })],
      want: { n1: OK, n2: AFF, n3: AFF },
    },
    {
      name: 'required anti-affinity by hostname',
      pod: pod('p', { affinity: anti([term({ app: 'web' }, HOST)]) }), nodes,
      existingPods: [pod('e', { node: 'n1', labels: { app: 'web' } })],
      want: { n1: ANTI, n2: OK, n3: OK },
    },
    {
      name: 'required anti-affinity by zone',
      pod: pod('p', { affinity: anti([term({ app: 'web' }, ZONE)]) }), nodes,
      existingPods: [pod('e', { node: 'n1', labels: { app: 'web' } })],
      want: { n1: ANTI, n2: ANTI, n3: OK },
    },
    {
      name: "symmetry: an existing pod's anti-affinity keeps the incoming pod out of its zone",
      pod: pod('p', { labels: { app: 'db' } }), nodes,
      existingPods: [pod('e', { node: 'n1', affinity: anti([term({ app: 'db' }, ZONE)]) })],
      want: { n1: EXISTING, n2: EXISTING, n3: OK },
    },
    {
      name: "symmetry only applies to pods the existing term selects",
      pod: pod('p', { labels: { app: 'web' } }), nodes,
      existingPods: [pod('e', { node: 'n1', affinity: anti([term({ app: 'db' }, ZONE)]) })],
      want: { n1: OK, n2: OK, n3: OK },
    },
    {
      name: 'matchLabelKeys narrows the selector with the incoming pod\'s value',
      pod: pod('p', { labels: { app: 'web', version: 'v2' }, affinity: anti([term({ app: 'web' }, HOST, { matchLabelKeys: ['version'] })]) }), nodes,
      existingPods: [pod('e1', { node: 'n1', labels: { app: 'web', version: 'v1' } }), pod('e2', { node: 'n2', labels: { app: 'web', version: 'v2' } })],
      want: { n1: OK, n2: ANTI, n3: OK },
    },
  ])('$name', (row) => {
    expect(filterRow('InterPodAffinity', row)).toEqual(row.want);
  });

  it('rejects an empty topologyKey naming the field', () => {
    expect(() => new PodInfo(pod('p', { affinity: affinity([term({ a: 'b' }, '')]) })))
      .toThrow(/spec\.affinity\.podAffinity\.requiredDuringSchedulingIgnoredDuringExecution\[0\]\.topologyKey: must not be empty/);
  });
  it('rejects a bad label selector operator naming the field', () => {
    const t = { ...term({}, ZONE), labelSelector: { matchLabels: {}, matchExpressions: [{ key: 'a', operator: 'Near', values: [] }] } };
    expect(() => new PodInfo(pod('p', { affinity: anti([t]) })))
      .toThrow(/podAntiAffinity\.requiredDuringSchedulingIgnoredDuringExecution\[0\]\.labelSelector\.matchExpressions\[0\]\.operator: "Near" is not a valid operator/);
  });
});

describe('InterPodAffinity score', () => {
  it.each<{ name: string } & Row & { want: Record<string, number> | 'skip' }>([
    {
      name: 'preferred affinity: the zone of matching pods',
      pod: pod('p', { affinity: affinity([], [[5, term({ app: 'web' }, ZONE)]]) }), nodes,
      existingPods: [pod('e', { node: 'n1', labels: { app: 'web' } })],
      want: { n1: 100, n2: 100, n3: 0 },
    },
    {
      name: 'preferred anti-affinity: away from matching pods',
      pod: pod('p', { affinity: anti([], [[5, term({ app: 'web' }, ZONE)]]) }), nodes,
      existingPods: [pod('e', { node: 'n1', labels: { app: 'web' } })],
      want: { n1: 0, n2: 0, n3: 100 },
    },
    {
      name: 'weights of several terms and pods add up',
      pod: pod('p', { affinity: { ...affinity([], [[10, term({ app: 'web' }, HOST)]]), ...anti([], [[4, term({ app: 'db' }, ZONE)]]) } }), nodes,
      existingPods: [pod('e1', { node: 'n1', labels: { app: 'web' } }), pod('e2', { node: 'n2', labels: { app: 'web' } }), pod('e3', { node: 'n2', labels: { app: 'web' } }), pod('e4', { node: 'n3', labels: { app: 'db' } })],
      // raw: n1 10, n2 20, n3 -4 -> (x+4)/24*100
      want: { n1: 58, n2: 100, n3: 0 },
    },
    {
      name: "symmetry: an existing pod's preferred affinity for the incoming pod",
      pod: pod('p', { labels: { app: 'db' } }), nodes,
      existingPods: [pod('e', { node: 'n1', affinity: affinity([], [[10, term({ app: 'db' }, HOST)]]) })],
      want: { n1: 100, n2: 0, n3: 0 },
    },
    {
      name: "symmetry: an existing pod's preferred anti-affinity",
      pod: pod('p', { labels: { app: 'db' } }), nodes,
      existingPods: [pod('e', { node: 'n1', affinity: anti([], [[10, term({ app: 'db' }, ZONE)]]) })],
      want: { n1: 0, n2: 0, n3: 100 },
    },
    {
      name: "symmetry: an existing pod's required affinity counts with hardPodAffinityWeight",
      pod: pod('p', { labels: { app: 'db' } }), nodes,
      existingPods: [pod('e', { node: 'n3', affinity: affinity([term({ app: 'db' }, ZONE)]) })],
      want: { n1: 0, n2: 0, n3: 100 },
    },
    {
      name: 'hardPodAffinityWeight 0 turns that off (every node would score 0: skipped)',
      pod: pod('p', { labels: { app: 'db' } }), nodes, args: { hardPodAffinityWeight: 0 },
      existingPods: [pod('e', { node: 'n3', affinity: affinity([term({ app: 'db' }, ZONE)]) })],
      want: 'skip',
    },
  ])('$name', (row) => {
    expect(scoreRow('InterPodAffinity', row)).toEqual(row.want);
  });
});
