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

export const NAME = 'InterPodAffinity';
export const ERR_REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules";
export const ERR_REASON_AFFINITY = "node(s) didn't match pod affinity rules";
export const ERR_REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules";

export const argsSchema = z.object({
  hardPodAffinityWeight: z.number().int().min(0).max(100).default(1),
  ignorePreferredTermsOfExistingPods: z.boolean().default(false),
}).strict();

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
const count = (m: TopologyCounts, key: string, value: string) => m.get(key)?.get(value) ?? 0;
const cloneCounts = (m: TopologyCounts): TopologyCounts => new Map([...m].map(([k, v]) => [k, new Map(v)]));

class PreFilterState implements StateData {
  constructor(
    /** Domains holding placed pods whose required anti-affinity selects the incoming pod. */
    readonly existingAntiAffinity: TopologyCounts,
    /** Domains holding pods that match all of the incoming pod's required affinity terms. */
    readonly affinity: TopologyCounts,
    /** Domains holding pods selected by one of the incoming pod's required anti-affinity terms. */
    readonly antiAffinity: TopologyCounts,
  ) {}
  clone() { return new PreFilterState(cloneCounts(this.existingAntiAffinity), cloneCounts(this.affinity), cloneCounts(this.antiAffinity)); }
}

class PreScoreState implements StateData {
  constructor(readonly topologyScore: TopologyCounts) {}
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
      if (v !== undefined && termMatches(t, pod, this.cache.nsLabels)) bump(s.existingAntiAffinity, t.topologyKey, v, sign);
    }
    if (pod.requiredAffinityTerms.length && this.matchesAll(pod.requiredAffinityTerms, other)) {
      for (const t of pod.requiredAffinityTerms) {
        const v = node.labels[t.topologyKey];
        if (v !== undefined) bump(s.affinity, t.topologyKey, v, sign);
      }
    }
    for (const t of pod.requiredAntiAffinityTerms) {
      const v = node.labels[t.topologyKey];
      if (v !== undefined && termMatches(t, other, this.cache.nsLabels)) bump(s.antiAffinity, t.topologyKey, v, sign);
    }
  }

  preFilter(state: CycleState, pod: PodInfo): { status: MaybeStatus } {
    const existingGroups = this.cache.termGroups('requiredAntiAffinity');
    if (!pod.requiredAffinityTerms.length && !pod.requiredAntiAffinityTerms.length && !existingGroups.size) return { status: SKIP };
    const s = new PreFilterState(new Map(), new Map(), new Map());
    // Symmetry: placed pods' required anti-affinity terms that select this pod.
    for (const g of existingGroups.values()) {
      if (!termMatches(g.term, pod, this.cache.nsLabels)) continue;
      for (const [v, c] of g.counts) bump(s.existingAntiAffinity, g.term.topologyKey, v, c);
    }
    const aff = pod.requiredAffinityTerms;
    if (aff.length) {
      this.cache.forEachMatching(aff[0].selector, ({ info, node }) => {
        if (!node.node || !this.matchesAll(aff, info)) return;
        for (const t of aff) {
          const v = node.labels[t.topologyKey];
          if (v !== undefined) bump(s.affinity, t.topologyKey, v, 1);
        }
      });
    }
    for (const t of pod.requiredAntiAffinityTerms) {
      this.cache.forEachMatching(t.selector, ({ info, node }) => {
        if (!node.node) return;
        const v = node.labels[t.topologyKey];
        if (v !== undefined && termMatches(t, info, this.cache.nsLabels)) bump(s.antiAffinity, t.topologyKey, v, 1);
      });
    }
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
        if (v === undefined) return unresolvable(ERR_REASON_AFFINITY);
        if (count(s.affinity, t.topologyKey, v) <= 0) podsExist = false;
      }
      if (!podsExist && !(s.affinity.size === 0 && this.matchesAll(pod.requiredAffinityTerms, pod))) return unresolvable(ERR_REASON_AFFINITY);
    }
    for (const t of pod.requiredAntiAffinityTerms) {
      const v = node.labels[t.topologyKey];
      if (v !== undefined && count(s.antiAffinity, t.topologyKey, v) > 0) return unschedulable(ERR_REASON_ANTI_AFFINITY);
    }
    for (const [key, values] of s.existingAntiAffinity) {
      const v = node.labels[key];
      if (v !== undefined && (values.get(v) ?? 0) > 0) return unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY);
    }
    return null;
  }

  preScore(state: CycleState, pod: PodInfo, nodes: readonly NodeInfo[]): MaybeStatus {
    if (!nodes.length) return SKIP;
    const hasConstraints = pod.preferredAffinityTerms.length + pod.preferredAntiAffinityTerms.length > 0;
    if (this.args.ignorePreferredTermsOfExistingPods && !hasConstraints) return SKIP;
    const m: TopologyCounts = new Map();
    // The incoming pod's preferred terms against placed pods.
    const own = (terms: readonly (AffinityTerm & { weight: number })[], sign: number) => {
      for (const t of terms) {
        this.cache.forEachMatching(t.selector, ({ info, node }) => {
          if (!node.node) return;
          const v = node.labels[t.topologyKey];
          if (v !== undefined && termMatches(t, info, this.cache.nsLabels)) bump(m, t.topologyKey, v, sign * t.weight);
        });
      }
    };
    own(pod.preferredAffinityTerms, 1);
    own(pod.preferredAntiAffinityTerms, -1);
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
    state.write(PRE_SCORE_KEY, new PreScoreState(m));
    return null;
  }

  score(state: CycleState, _pod: PodInfo, node: NodeInfo): number {
    const m = state.read<PreScoreState>(PRE_SCORE_KEY)!.topologyScore;
    let score = 0;
    for (const [key, values] of m) {
      const v = node.labels[key];
      if (v !== undefined) score += values.get(v) ?? 0;
    }
    return score;
  }

  normalizeScore(state: CycleState, _p: PodInfo, scores: number[]): MaybeStatus {
    if (!state.read<PreScoreState>(PRE_SCORE_KEY)!.topologyScore.size) return null;
    let min = Infinity;
    let max = -Infinity;
    for (const s of scores) { if (s < min) min = s; if (s > max) max = s; }
    const diff = max - min;
    for (let i = 0; i < scores.length; i++) scores[i] = diff > 0 ? Math.trunc((MAX_NODE_SCORE * (scores[i] - min)) / diff) : 0;
    return null;
  }

  events(): ClusterEvent[] { return ['AssignedPodAdd', 'AssignedPodDelete', 'AssignedPodUpdate', 'NodeAdd', 'NodeLabelChange', 'NamespaceChange']; }
}
