// InterPodAffinity: required pod affinity and anti-affinity of the incoming pod, and the
// required anti-affinity of pods already placed (symmetry), must hold (Filter); preferred terms
// of both sides, and existing pods' required affinity (hardPodAffinityWeight), add or subtract
// weight per topology domain (Score).
//
// Kubernetes walks every placed pod per scheduling cycle. Here the cache keeps existing pods'
// terms grouped by identical term with a count per topology value, and a label index over
// placed pods, so a cycle costs O(distinct terms + pods matching the incoming pod's selectors).
import { z } from '@berth/common';
import type { SchedulerCache } from '../../cache';
import type { ClusterEvent, CycleState, EnqueueExtensions, FilterPlugin, PreFilterPlugin, PreScorePlugin, ScorePlugin, StateData } from '../../framework/interfaces';
import { SKIP, unresolvable, unschedulable, type MaybeStatus } from '../../framework/status';
import { MAX_NODE_SCORE, termMatches, type AffinityTerm, type NodeInfo, type PodInfo } from '../../framework/types';
import { LayeredCounts } from '../../framework/layered-counts';

export const NAME = 'InterPodAffinity';
export const ERR_REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules";
export const ERR_REASON_AFFINITY = "node(s) didn't match pod affinity rules";
export const ERR_REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules";

export const argsSchema = z.object({
  hardPodAffinityWeight: z.number().int().min(0).max(100).default(1),
  ignorePreferredTermsOfExistingPods: z.boolean().default(false),
}).strict();

// Rejections are shared constants: a cycle may reject thousands of nodes.
const AFFINITY = unresolvable(ERR_REASON_AFFINITY).withPlugin(NAME);
const ANTI_AFFINITY = unschedulable(ERR_REASON_ANTI_AFFINITY).withPlugin(NAME);
const EXISTING_ANTI_AFFINITY = unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY).withPlugin(NAME);

const PRE_FILTER_KEY = `PreFilter${NAME}`;
const PRE_SCORE_KEY = `PreScore${NAME}`;

/** topology key -> value -> count */
type TopologyCounts = Map<string, Map<string, number>>;

function bump(m: TopologyCounts, key: string, value: string, by: number): void {
  let inner = m.get(key);
  if (!inner) m.set(key, (inner = new Map()));
  const c = (inner.get(value) ?? 0) + by;
  if (c === 0) { inner.delete(value); if (!inner.size) m.delete(key); } else inner.set(value, c);
}
const cloneCounts = (m: TopologyCounts): TopologyCounts => new Map([...m].map(([k, v]) => [k, new Map(v)]));

type Layered = Map<string, LayeredCounts>;
const cloneLayered = (m: Layered): Layered => new Map([...m].map(([k, v]) => [k, v.clone()]));
const layer = (m: Layered, key: string): LayeredCounts => {
  let l = m.get(key);
  if (!l) m.set(key, (l = new LayeredCounts()));
  return l;
};

class PreFilterState implements StateData {
  constructor(
    /** Per topology key: placed pods whose required anti-affinity selects the incoming pod. */
    readonly existingAntiAffinity: Layered,
    /** Per topology key: pods that match all of the incoming pod's required affinity terms. */
    readonly affinity: Layered,
    /** Per topology key: pods selected by one of the incoming pod's required anti-affinity terms. */
    readonly antiAffinity: Layered,
  ) {}
  clone() { return new PreFilterState(cloneLayered(this.existingAntiAffinity), cloneLayered(this.affinity), cloneLayered(this.antiAffinity)); }
}

interface WeightedCounts { topologyKey: string; weight: number; counts: ReadonlyMap<string, number> }

class PreScoreState implements StateData {
  constructor(
    /** From placed pods' terms that select the incoming pod. */
    readonly topologyScore: TopologyCounts,
    /** The incoming pod's preferred terms: live counts of the pods they select, times the weight. */
    readonly own: WeightedCounts[],
  ) {}
  clone() { return this; }
}

export class InterPodAffinity implements PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin, EnqueueExtensions {
  readonly name = NAME;
  private readonly args: z.infer<typeof argsSchema>;

  constructor(private readonly cache: SchedulerCache, input: z.input<typeof argsSchema> = {}) {
    this.args = argsSchema.parse(input);
  }

  private matchesAll(terms: readonly AffinityTerm[], p: PodInfo): boolean {
    for (const t of terms) if (!termMatches(t, p, this.cache.nsLabels)) return false;
    return true;
  }

  /** Adds (sign 1) or removes (sign -1) one placed pod's contribution to the filter state. */
  private account(s: PreFilterState, pod: PodInfo, other: PodInfo, node: NodeInfo, sign: 1 | -1): void {
    for (const t of other.requiredAntiAffinityTerms) {
      const v = node.labels[t.topologyKey];
      if (v !== undefined && termMatches(t, pod, this.cache.nsLabels)) layer(s.existingAntiAffinity, t.topologyKey).add(v, sign);
    }
    if (pod.requiredAffinityTerms.length && this.matchesAll(pod.requiredAffinityTerms, other)) {
      for (const t of pod.requiredAffinityTerms) {
        const v = node.labels[t.topologyKey];
        if (v !== undefined) layer(s.affinity, t.topologyKey).add(v, sign);
      }
    }
    for (const t of pod.requiredAntiAffinityTerms) {
      const v = node.labels[t.topologyKey];
      if (v !== undefined && termMatches(t, other, this.cache.nsLabels)) layer(s.antiAffinity, t.topologyKey).add(v, sign);
    }
  }

  /** Placed pods the term selects, per value of its topology key (a live cache index). */
  private termCounts(t: AffinityTerm): ReadonlyMap<string, number> {
    return this.cache.topologyCounts(`ipa|${t.key}`, t.topologyKey, (p) => termMatches(t, p, this.cache.nsLabels));
  }

  preFilter(state: CycleState, pod: PodInfo): { status: MaybeStatus } {
    const existingGroups = this.cache.termGroups('requiredAntiAffinity');
    if (!pod.requiredAffinityTerms.length && !pod.requiredAntiAffinityTerms.length && !existingGroups.size) return { status: SKIP };
    const s = new PreFilterState(new Map(), new Map(), new Map());
    // Symmetry: placed pods' required anti-affinity terms that select this pod, read through the
    // cache's live per-term counts (no copy).
    const existing = new Map<string, ReadonlyMap<string, number>[]>();
    for (const g of existingGroups.values()) {
      if (!termMatches(g.term, pod, this.cache.nsLabels)) continue;
      const list = existing.get(g.term.topologyKey) ?? [];
      list.push(g.counts);
      existing.set(g.term.topologyKey, list);
    }
    for (const [k, bases] of existing) s.existingAntiAffinity.set(k, new LayeredCounts(bases));
    const aff = pod.requiredAffinityTerms;
    if (aff.length === 1) {
      // The common case reads a live count index of the cache: O(domains), not O(pods).
      const t = aff[0];
      s.affinity.set(t.topologyKey, new LayeredCounts([this.termCounts(t)]));
    } else if (aff.length) {
      this.cache.forEachMatching(aff[0].selector, ({ info, node }) => {
        if (!node.node || !this.matchesAll(aff, info)) return;
        for (const t of aff) {
          const v = node.labels[t.topologyKey];
          if (v !== undefined) layer(s.affinity, t.topologyKey).add(v, 1);
        }
      });
    }
    const byKey = new Map<string, ReadonlyMap<string, number>[]>();
    for (const t of pod.requiredAntiAffinityTerms) {
      const list = byKey.get(t.topologyKey) ?? [];
      list.push(this.termCounts(t));
      byKey.set(t.topologyKey, list);
    }
    for (const [k, bases] of byKey) s.antiAffinity.set(k, new LayeredCounts(bases));
    state.write(PRE_FILTER_KEY, s);
    return { status: null };
  }

  addPod(state: CycleState, pod: PodInfo, add: PodInfo, node: NodeInfo): MaybeStatus {
    const s = state.read<PreFilterState>(PRE_FILTER_KEY);
    if (s) this.account(s, pod, add, node, 1);
    return null;
  }

  removePod(state: CycleState, pod: PodInfo, remove: PodInfo, node: NodeInfo): MaybeStatus {
    const s = state.read<PreFilterState>(PRE_FILTER_KEY);
    if (s) this.account(s, pod, remove, node, -1);
    return null;
  }

  filter(state: CycleState, pod: PodInfo, node: NodeInfo): MaybeStatus {
    const s = state.read<PreFilterState>(PRE_FILTER_KEY);
    if (!s) return null;
    // Required affinity: every term's domain on this node must hold a matching pod, unless no
    // pod anywhere matches and the pod matches its own terms (the first of a group).
    if (pod.requiredAffinityTerms.length) {
      let podsExist = true;
      for (const t of pod.requiredAffinityTerms) {
        const v = node.labels[t.topologyKey];
        if (v === undefined) return AFFINITY;
        if ((s.affinity.get(t.topologyKey)?.get(v) ?? 0) <= 0) podsExist = false;
      }
      if (!podsExist) {
        let anywhere = false;
        for (const l of s.affinity.values()) if (l.any()) { anywhere = true; break; }
        if (anywhere || !this.matchesAll(pod.requiredAffinityTerms, pod)) return AFFINITY;
      }
    }
    for (const t of pod.requiredAntiAffinityTerms) {
      const v = node.labels[t.topologyKey];
      if (v !== undefined && (s.antiAffinity.get(t.topologyKey)?.get(v) ?? 0) > 0) return ANTI_AFFINITY;
    }
    for (const [key, counts] of s.existingAntiAffinity) {
      const v = node.labels[key];
      if (v !== undefined && counts.get(v) > 0) return EXISTING_ANTI_AFFINITY;
    }
    return null;
  }

  preScore(state: CycleState, pod: PodInfo, nodes: readonly NodeInfo[]): MaybeStatus {
    if (!nodes.length) return SKIP;
    const hasConstraints = pod.preferredAffinityTerms.length + pod.preferredAntiAffinityTerms.length > 0;
    if (this.args.ignorePreferredTermsOfExistingPods && !hasConstraints) return SKIP;
    const m: TopologyCounts = new Map();
    // The incoming pod's preferred terms against placed pods, through live count indexes.
    const own: WeightedCounts[] = [];
    for (const t of pod.preferredAffinityTerms) own.push({ topologyKey: t.topologyKey, weight: t.weight, counts: this.termCounts(t) });
    for (const t of pod.preferredAntiAffinityTerms) own.push({ topologyKey: t.topologyKey, weight: -t.weight, counts: this.termCounts(t) });
    // Placed pods' terms that select the incoming pod.
    const theirs = (kind: 'requiredAffinity' | 'preferredAffinity' | 'preferredAntiAffinity', weightOf: (w: number) => number) => {
      for (const g of this.cache.termGroups(kind).values()) {
        const w = weightOf(g.weight);
        if (w === 0 || !termMatches(g.term, pod, this.cache.nsLabels)) continue;
        for (const [v, c] of g.counts) bump(m, g.term.topologyKey, v, w * c);
      }
    };
    theirs('requiredAffinity', () => this.args.hardPodAffinityWeight);
    theirs('preferredAffinity', (w) => w);
    theirs('preferredAntiAffinity', (w) => -w);
    // Nothing on either side: every node would score 0.
    if (!m.size && own.every((o) => !o.counts.size)) return SKIP;
    state.write(PRE_SCORE_KEY, new PreScoreState(m, own));
    return null;
  }

  score(state: CycleState, _pod: PodInfo, node: NodeInfo): number {
    const s = state.read<PreScoreState>(PRE_SCORE_KEY)!;
    let score = 0;
    for (const [key, values] of s.topologyScore) {
      const v = node.labels[key];
      if (v !== undefined) score += values.get(v) ?? 0;
    }
    for (const o of s.own) {
      const v = node.labels[o.topologyKey];
      if (v !== undefined) score += (o.counts.get(v) ?? 0) * o.weight;
    }
    return score;
  }

  normalizeScore(state: CycleState, _p: PodInfo, scores: number[]): MaybeStatus {
    const st = state.read<PreScoreState>(PRE_SCORE_KEY)!;
    if (!st.topologyScore.size && st.own.every((o) => !o.counts.size)) return null;
    let min = Infinity;
    let max = -Infinity;
    for (const s of scores) { if (s < min) min = s; if (s > max) max = s; }
    const diff = max - min;
    for (let i = 0; i < scores.length; i++) scores[i] = diff > 0 ? Math.trunc((MAX_NODE_SCORE * (scores[i] - min)) / diff) : 0;
    return null;
  }

  events(): ClusterEvent[] { return ['AssignedPodAdd', 'AssignedPodDelete', 'AssignedPodUpdate', 'NodeAdd', 'NodeLabelChange', 'NamespaceChange']; }
}
