// The cache's incremental indexes must equal a recount from scratch after any sequence of
// changes: pods placed, assumed, confirmed, forgotten, removed; node labels changed; nodes removed.
import { describe, expect, it } from 'vitest';
import { SchedulerCache } from './cache';
import { PodInfo } from './framework/types';
import { selectorFromRequirements } from './labels';
import { node, pod, term } from './testing/builders';

const ZONE = 'topology.kubernetes.io/zone';
const web = selectorFromRequirements([{ key: 'app', op: 'In', values: new Set(['web']) }]);

function recount(cache: SchedulerCache): Map<string, number> {
  const m = new Map<string, number>();
  for (const n of cache.nodes()) for (const p of n.pods) if (web.matches(p.labels)) m.set(n.labels[ZONE], (m.get(n.labels[ZONE]) ?? 0) + 1);
  for (const [k, v] of m) if (v === 0 || k === undefined) m.delete(k);
  return m;
}

describe('SchedulerCache indexes', () => {
  it('keeps live topology counts equal to a recount through every kind of change', () => {
    const cache = new SchedulerCache();
    cache.addOrUpdateNode(node('a', { labels: { [ZONE]: 'z1' } }));
    cache.addOrUpdateNode(node('b', { labels: { [ZONE]: 'z2' } }));
    const counts = cache.topologyCounts('web-by-zone', ZONE, (p) => web.matches(p.labels));
    const check = () => expect(new Map(counts)).toEqual(recount(cache));
    cache.addOrUpdatePod(pod('w1', { node: 'a', labels: { app: 'web' } })); check();
    cache.addOrUpdatePod(pod('w2', { node: 'b', labels: { app: 'web' } })); check();
    cache.addOrUpdatePod(pod('db', { node: 'b', labels: { app: 'db' } })); check();
    cache.assumePod(new PodInfo(pod('w3', { labels: { app: 'web' } })), 'a'); check();
    expect(counts.get('z1')).toBe(2);
    cache.forgetPod('default/w3'); check();
    cache.assumePod(new PodInfo(pod('w4', { labels: { app: 'web' } })), 'b');
    cache.addOrUpdatePod(pod('w4', { node: 'b', labels: { app: 'web' } })); check();
    // Relabelled pod and moved node.
    cache.addOrUpdatePod(pod('db', { node: 'b', labels: { app: 'web' } })); check();
    cache.addOrUpdateNode(node('b', { labels: { [ZONE]: 'z3' } })); check();
    expect(counts.get('z2')).toBeUndefined();
    expect(counts.get('z3')).toBe(3);
    cache.removePod('default/w1'); check();
    cache.removeNode('b');
    expect(counts.get('z3')).toBeUndefined();
    // A node object arriving after its pods counts them then.
    cache.addOrUpdatePod(pod('early', { node: 'c', labels: { app: 'web' } }));
    expect(counts.get('z9')).toBeUndefined();
    cache.addOrUpdateNode(node('c', { labels: { [ZONE]: 'z9' } }));
    expect(counts.get('z9')).toBe(1);
  });

  it('groups identical affinity terms of placed pods with counts per domain, following node labels', () => {
    const cache = new SchedulerCache();
    cache.addOrUpdateNode(node('a', { labels: { [ZONE]: 'z1' } }));
    cache.addOrUpdateNode(node('b', { labels: { [ZONE]: 'z2' } }));
    const anti = { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term({ app: 'db' }, ZONE)], preferredDuringSchedulingIgnoredDuringExecution: [] } } as never;
    cache.addOrUpdatePod(pod('x', { node: 'a', affinity: anti }));
    cache.addOrUpdatePod(pod('y', { node: 'a', affinity: anti }));
    cache.addOrUpdatePod(pod('z', { node: 'b', affinity: anti }));
    const groups = [...cache.termGroups('requiredAntiAffinity').values()];
    expect(groups).toHaveLength(1);
    expect(Object.fromEntries(groups[0].counts)).toEqual({ z1: 2, z2: 1 });
    cache.addOrUpdateNode(node('a', { labels: { [ZONE]: 'z2' } }));
    expect(Object.fromEntries(groups[0].counts)).toEqual({ z2: 3 });
    for (const k of ['x', 'y', 'z']) cache.removePod(`default/${k}`);
    expect(cache.termGroups('requiredAntiAffinity').size).toBe(0);
  });

  it('label index lookups match a scan', () => {
    const cache = new SchedulerCache();
    cache.addOrUpdateNode(node('a'));
    for (let i = 0; i < 30; i++) cache.addOrUpdatePod(pod(`p${i}`, { node: 'a', labels: { app: i % 3 ? 'web' : 'db', tier: i % 2 ? 'front' : 'back' } }));
    const sel = selectorFromRequirements([{ key: 'app', op: 'In', values: new Set(['web']) }, { key: 'tier', op: 'NotIn', values: new Set(['back']) }]);
    const found: string[] = [];
    cache.forEachMatching(sel, (p) => found.push(p.info.name));
    const want = cache.get('a')!.pods.filter((p) => sel.matches(p.labels)).map((p) => p.name);
    expect(found.sort()).toEqual(want.sort());
    expect(found.length).toBe(10);
  });
});
