import { describe, expect, it } from 'vitest';
import { resolveConfig } from './config';

describe('scheduler configuration', () => {
  it('defaults to one default-scheduler profile with Kubernetes\' plugins and weights', () => {
    const cfg = resolveConfig({});
    expect(cfg.profiles.map((p) => p.schedulerName)).toEqual(['default-scheduler']);
    const p = cfg.profiles[0];
    expect(p.points.filter.map((r) => r.name)).toEqual(['NodeUnschedulable', 'NodeName', 'TaintToleration', 'NodeAffinity', 'NodePorts', 'NodeResourcesFit', 'PodTopologySpread', 'InterPodAffinity']);
    expect(Object.fromEntries(p.weights)).toEqual({ TaintToleration: 3, NodeAffinity: 2, NodeResourcesFit: 1, PodTopologySpread: 2, InterPodAffinity: 2, NodeResourcesBalancedAllocation: 1, ImageLocality: 1 });
    expect(p.points.postFilter.map((r) => r.name)).toEqual(['DefaultPreemption']);
    expect(cfg.podInitialBackoffMs).toBe(1000);
    expect(cfg.podMaxBackoffMs).toBe(10000);
  });

  it('enables, disables and reweights plugins per extension point', () => {
    const p = resolveConfig({
      profiles: [{
        schedulerName: 'custom',
        plugins: {
          score: { disabled: [{ name: 'ImageLocality' }], enabled: [{ name: 'NodeAffinity', weight: 7 }] },
          filter: { disabled: [{ name: '*' }], enabled: [{ name: 'NodeResourcesFit' }] },
        },
      }],
    }).profiles[0];
    expect(p.points.score.map((r) => r.name)).not.toContain('ImageLocality');
    expect(p.weights.get('NodeAffinity')).toBe(7);
    expect(p.points.filter.map((r) => r.name)).toEqual(['NodeResourcesFit']);
  });

  it('multiPoint enables a plugin wherever it applies', () => {
    const p = resolveConfig({ profiles: [{ plugins: { multiPoint: { disabled: [{ name: 'InterPodAffinity' }] } } }] }).profiles[0];
    for (const point of ['preFilter', 'filter', 'preScore', 'score'] as const) expect(p.points[point].map((r) => r.name)).not.toContain('InterPodAffinity');
  });

  it('parses and defaults plugin args', () => {
    const p = resolveConfig({ profiles: [{ pluginConfig: [{ name: 'NodeResourcesFit', args: { scoringStrategy: { type: 'MostAllocated' } } }] }] }).profiles[0];
    expect(p.args.get('NodeResourcesFit')).toMatchObject({ scoringStrategy: { type: 'MostAllocated', resources: [{ name: 'cpu', weight: 1 }, { name: 'memory', weight: 1 }] } });
    expect(p.args.get('InterPodAffinity')).toEqual({ hardPodAffinityWeight: 1, ignorePreferredTermsOfExistingPods: false });
  });

  it.each([
    [{ profiles: [{ plugins: { filter: { enabled: [{ name: 'Nope' }] } } }] }, /profiles\[0\]\.plugins\.filter\.enabled\[0\]\.name: unknown plugin "Nope" \(known: /],
    [{ profiles: [{ plugins: { score: { enabled: [{ name: 'NodeAffinity', weight: -1 }] } } }] }, /profiles\[0\]\.plugins\.score\.enabled\[0\]\.weight: must be an integer in the range 0-100, got -1/],
    [{ profiles: [{ plugins: { score: { enabled: [{ name: 'NodeAffinity', weight: 1.5 }] } } }] }, /weight: must be an integer in the range 0-100, got 1.5/],
    [{ profiles: [{ plugins: { filter: { enabled: [{ name: 'ImageLocality' }] } } }] }, /filter\.enabled\[0\]\.name: plugin "ImageLocality" does not implement the filter extension point/],
    [{ profiles: [{ plugins: { filter: { enabled: [{ name: 'NodeAffinity', weight: 3 }] } } }] }, /filter\.enabled\[0\]\.weight: weights apply only to score plugins/],
    [{ profiles: [{ schedulerName: 'a' }, { schedulerName: 'a' }] }, /profiles\[1\]\.schedulerName: duplicate profile "a"/],
    [{ profiles: [{ plugins: { queueSort: { disabled: [{ name: '*' }] } } }] }, /profiles\[0\]\.plugins\.queueSort: exactly one queueSort plugin must be enabled, got 0/],
    [{ profiles: [{ pluginConfig: [{ name: 'NodeResourcesFit', args: { scoringStrategy: { type: 'RequestedToCapacityRatio' } } }] }] }, /profiles\[0\]\.pluginConfig\[0\]\.args\.scoringStrategy\.requestedToCapacityRatio: is required for type RequestedToCapacityRatio/],
    [{ profiles: [{ pluginConfig: [{ name: 'NodeResourcesFit', args: { scoringStrategy: { type: 'Cheapest' } } }] }] }, /pluginConfig\[0\]\.args\.scoringStrategy\.type: /],
    [{ profiles: [{ pluginConfig: [{ name: 'InterPodAffinity', args: { hardPodAffinityWeight: 101 } }] }] }, /pluginConfig\[0\]\.args\.hardPodAffinityWeight: /],
    [{ profiles: [{ pluginConfig: [{ name: 'NodeName', args: { x: 1 } }] }] }, /pluginConfig\[0\]\.args: plugin NodeName takes no args/],
    [{ profiles: [{ pluginConfig: [{ name: 'NodeResourcesFit', args: { surprise: true } }] }] }, /pluginConfig\[0\]\.args: Unrecognized key: "surprise"/],
    [{ percentageOfNodesToScore: 150 }, /percentageOfNodesToScore: /],
    [{ profile: [] }, /Unrecognized key: "profile"/],
    [{ extenders: [{ address: 'unix:///x', weight: 0 }] }, /extenders\.0\.weight: /],
  ])('rejects bad config %# naming the field', (input, re) => {
    expect(() => resolveConfig(input)).toThrow(re);
  });
});
