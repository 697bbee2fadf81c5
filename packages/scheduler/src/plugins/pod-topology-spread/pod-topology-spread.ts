// PodTopologySpread: DoNotSchedule constraints must keep every domain within maxSkew of the
// least loaded eligible domain (Filter); ScheduleAnyway constraints, or the system defaults for
// pods of a workload (Service/ReplicaSet/StatefulSet selectors), favour the emptier domains (Score).
//
// Matching pods are found through the cache's label index and the domains of a topology key
// through its per-value node counts, so a cycle costs O(matching pods) rather than O(nodes+pods);
// the walk over every node is only needed when node inclusion policies narrow the domains.
import type { core } from '@berth/api';
import { InvalidArgumentError, z } from '@berth/common';
import type { SchedulerCache } from '../../cache';
import type { ClusterEvent, CycleState, EnqueueExtensions, FilterPlugin, PreFilterPlugin, PreScorePlugin, ScorePlugin, StateData } from '../../framework/interfaces';
import { compileSelector, type Requirement, type Selector } from '../../labels';
import { SKIP, unresolvable, unschedulable, type MaybeStatus } from '../../framework/status';
import { MAX_NODE_SCORE, tolerated, type NodeInfo, type PodInfo } from '../../framework/types';
import { LayeredCounts } from '../../framework/layered-counts';

export const NAME = 'PodTopologySpread';
export const ERR_REASON_CONSTRAINTS_NOT_MATCH = "node(s) didn't match pod topology spread constraints";
export const ERR_REASON_NODE_LABEL_NOT_MATCH = `${ERR_REASON_CONSTRAINTS_NOT_MATCH} (missing required label)`;
export const HOSTNAME = 'kubernetes.io/hostname';
export const ZONE = 'topology.kubernetes.io/zone';

const constraintSchema = z.object({
  maxSkew: z.number().int().min(1),
  topologyKey: z.string().min(1),
  whenUnsatisfiable: z.enum(['DoNotSchedule', 'ScheduleAnyway']),
}).strict();
export const argsSchema = z.object({
  defaultConstraints: z.array(constraintSchema).default([]),
  defaultingType: z.enum(['System', 'List']).default('System'),
}).strict();

export const SYSTEM_DEFAULT_CONSTRAINTS = [
  { maxSkew: 3, topologyKey: HOSTNAME, whenUnsatisfiable: 'ScheduleAnyway' as const },
  { maxSkew: 5, topologyKey: ZONE, whenUnsatisfiable: 'ScheduleAnyway' as const },
];

export interface Constraint {
  maxSkew: number;
  minDomains: number;
  topologyKey: string;
  selector: Selector;
  honorNodeAffinity: boolean;
  honorNodeTaints: boolean;
}

/** Compiles the pod's own constraints of one kind; throws InvalidArgumentError naming the field. */
export function podConstraints(pod: core.Pod, hard: boolean): Constraint[] {
  const out: Constraint[] = [];
  (pod.spec?.topologySpreadConstraints ?? []).forEach((c, i) => {
    const f = `spec.topologySpreadConstraints[${i}]`;
    if (!(c.maxSkew >= 1)) throw new InvalidArgumentError(`${f}.maxSkew`, `must be greater than zero, got ${c.maxSkew}`);
    if (!c.topologyKey) throw new InvalidArgumentError(`${f}.topologyKey`, 'must not be empty');
    if (c.whenUnsatisfiable !== 'DoNotSchedule' && c.whenUnsatisfiable !== 'ScheduleAnyway') {
      throw new InvalidArgumentError(`${f}.whenUnsatisfiable`, `"${c.whenUnsatisfiable}" is not valid (DoNotSchedule, ScheduleAnyway)`);
    }
    if (c.minDomains !== undefined && (c.minDomains < 1 || c.whenUnsatisfiable !== 'DoNotSchedule')) {
      throw new InvalidArgumentError(`${f}.minDomains`, 'must be at least 1 and is only allowed with whenUnsatisfiable DoNotSchedule');
    }
    for (const [k, v] of [['nodeAffinityPolicy', c.nodeAffinityPolicy], ['nodeTaintsPolicy', c.nodeTaintsPolicy]] as const) {
      if (v !== undefined && v !== 'Honor' && v !== 'Ignore') throw new InvalidArgumentError(`${f}.${k}`, `"${v}" is not valid (Honor, Ignore)`);
    }
    if ((c.whenUnsatisfiable === 'DoNotSchedule') !== hard) return;
    const labels = pod.metadata?.labels ?? {};
    const extra: Requirement[] = [];
    for (const k of c.matchLabelKeys ?? []) if (labels[k] !== undefined) extra.push({ key: k, op: 'In', values: new Set([labels[k]]) });
    out.push({
      maxSkew: c.maxSkew,
      minDomains: c.minDomains ?? 1,
      topologyKey: c.topologyKey,
      selector: compileSelector(c.labelSelector, `${f}.labelSelector`, extra),
      honorNodeAffinity: (c.nodeAffinityPolicy ?? 'Honor') === 'Honor',
      honorNodeTaints: c.nodeTaintsPolicy === 'Honor',
    });
  });
  return out;
}

interface ConstraintCounts {
  c: Constraint;
  /** Matching pods per domain (value of the topology key), over eligible nodes. */
  counts: LayeredCounts;
  /** Eligible domains; null means every value of the key in the cache. */
  domains: Set<string> | null;
  /** Smallest count over the eligible domains (recomputed when counts change). */
  min: number;
  dirty: boolean;
  /** The incoming pod matches the constraint's selector (counts itself). */
  self: number;
  /** Per domain: passes this constraint; cleared whenever the counts change. */
  verdicts: Map<string, boolean>;
}

class PreFilterState implements StateData {
  constructor(readonly items: ConstraintCounts[], private readonly cache: SchedulerCache) {}
  domainCount(cc: ConstraintCounts): number { return cc.domains ? cc.domains.size : this.cache.domainCounts(cc.c.topologyKey)?.size ?? 0; }
  minMatch(cc: ConstraintCounts): number {
    if (cc.dirty) {
      const total = this.domainCount(cc);
      let min = Infinity;
      let withPods = 0;
      for (const v of cc.counts.values()) {
        const n = cc.counts.get(v);
        if (n <= 0 || (cc.domains && !cc.domains.has(v))) continue;
        withPods++;
        if (n < min) min = n;
      }
      cc.min = withPods < total || min === Infinity ? 0 : min;
      cc.dirty = false;
    }
    return this.domainCount(cc) < cc.c.minDomains ? 0 : cc.min;
  }
  clone() {
    return new PreFilterState(this.items.map((i) => ({ ...i, counts: i.counts.clone(), verdicts: new Map() })), this.cache);
  }
}

class PreScoreState implements StateData {
  constructor(
    readonly constraints: Constraint[],
    readonly ignored: Set<NodeInfo>,
    readonly weights: number[],
    /** Per constraint: domain -> matching pods; null for hostname (counted per node in Score). */
    readonly counts: (Map<string, number> | null)[],
    readonly requireAll: boolean,
  ) {}
  clone() { return this; }
}

const SKEWED = unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH).withPlugin(NAME);
const MISSING_LABEL = unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH).withPlugin(NAME);

const PRE_FILTER_KEY = `PreFilter${NAME}`;
const PRE_SCORE_KEY = `PreScore${NAME}`;
const INVALID = -1;

export class PodTopologySpread implements PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin, EnqueueExtensions {
  readonly name = NAME;
  private readonly args: z.infer<typeof argsSchema>;
  private readonly systemDefaulted: boolean;

  constructor(private readonly cache: SchedulerCache, input: z.input<typeof argsSchema> = {}) {
    this.args = argsSchema.parse(input);
    if (this.args.defaultingType === 'System' && this.args.defaultConstraints.length) {
      throw new InvalidArgumentError('defaultConstraints', 'must be empty when defaultingType is System');
    }
    this.systemDefaulted = this.args.defaultingType === 'System';
  }

  private constraints(pod: PodInfo, hard: boolean): Constraint[] {
    if (pod.pod.spec?.topologySpreadConstraints?.length) return podConstraints(pod.pod, hard);
    const defaults = this.systemDefaulted ? SYSTEM_DEFAULT_CONSTRAINTS : this.args.defaultConstraints;
    const wanted = defaults.filter((c) => (c.whenUnsatisfiable === 'DoNotSchedule') === hard);
    if (!wanted.length) return [];
    const selector = this.cache.defaultSpreadSelector(pod);
    if (!selector) return [];
    return wanted.map((c) => ({ maxSkew: c.maxSkew, minDomains: 1, topologyKey: c.topologyKey, selector, honorNodeAffinity: true, honorNodeTaints: false }));
  }

  private static hasAllKeys(node: NodeInfo, cs: readonly Constraint[]): boolean {
    for (const c of cs) if (node.labels[c.topologyKey] === undefined) return false;
    return true;
  }

  private static included(c: Constraint, pod: PodInfo, node: NodeInfo): boolean {
    if (c.honorNodeAffinity && !pod.requiredNodeAffinity.any && !pod.requiredNodeAffinity.match(node.labels, node.name)) return false;
    if (c.honorNodeTaints) {
      for (const t of node.taints) if ((t.effect === 'NoSchedule' || t.effect === 'NoExecute') && !tolerated(pod.tolerations, t)) return false;
    }
    return true;
  }

  private static counts(pod: PodInfo, other: PodInfo): boolean {
    return other.namespace === pod.namespace && !other.deleting;
  }

  preFilter(state: CycleState, pod: PodInfo): { status: MaybeStatus } {
    const cs = this.constraints(pod, true);
    if (!cs.length) return { status: SKIP };
    // Domains are narrowed node by node only when a policy makes some nodes with the key ineligible.
    const narrow = cs.some((c) => (c.honorNodeAffinity && !pod.requiredNodeAffinity.any) || c.honorNodeTaints) || new Set(cs.map((c) => c.topologyKey)).size > 1;
    const eligible: (Set<NodeInfo> | null)[] = cs.map(() => (narrow ? new Set<NodeInfo>() : null));
    const domains: (Set<string> | null)[] = cs.map(() => (narrow ? new Set<string>() : null));
    if (narrow) {
      for (const node of this.cache.nodes()) {
        if (!PodTopologySpread.hasAllKeys(node, cs)) continue;
        cs.forEach((c, i) => {
          if (!PodTopologySpread.included(c, pod, node)) return;
          eligible[i]!.add(node);
          domains[i]!.add(node.labels[c.topologyKey]);
        });
      }
    }
    const items: ConstraintCounts[] = cs.map((c, i) => {
      if (!narrow) {
        // Every node with the key is eligible: read the cache's live count index.
        const ns = pod.namespace;
        const base = this.cache.topologyCounts(`pts|${ns}|${c.selector.key}|${c.topologyKey}`, c.topologyKey, (p) => p.namespace === ns && !p.deleting && c.selector.matches(p.labels));
        return { c, counts: new LayeredCounts([base]), domains: null, min: 0, dirty: true, self: c.selector.matches(pod.labels) ? 1 : 0, verdicts: new Map() };
      }
      const counts = new LayeredCounts();
      this.cache.forEachMatching(c.selector, ({ info, node }) => {
        if (!node.node || !PodTopologySpread.counts(pod, info) || !eligible[i]!.has(node)) return;
        counts.add(node.labels[c.topologyKey], 1);
      });
      return { c, counts, domains: domains[i], min: 0, dirty: true, self: c.selector.matches(pod.labels) ? 1 : 0, verdicts: new Map() };
    });
    state.write(PRE_FILTER_KEY, new PreFilterState(items, this.cache));
    return { status: null };
  }

  private update(state: CycleState, pod: PodInfo, other: PodInfo, node: NodeInfo, sign: 1 | -1): MaybeStatus {
    const s = state.read<PreFilterState>(PRE_FILTER_KEY);
    if (!s || !PodTopologySpread.counts(pod, other)) return null;
    const cs = s.items.map((i) => i.c);
    if (!PodTopologySpread.hasAllKeys(node, cs)) return null;
    for (const cc of s.items) {
      if (!PodTopologySpread.included(cc.c, pod, node) || !cc.c.selector.matches(other.labels)) continue;
      cc.counts.add(node.labels[cc.c.topologyKey], sign);
      cc.dirty = true;
      cc.verdicts.clear();
    }
    return null;
  }
  addPod(state: CycleState, pod: PodInfo, add: PodInfo, node: NodeInfo): MaybeStatus { return this.update(state, pod, add, node, 1); }
  removePod(state: CycleState, pod: PodInfo, remove: PodInfo, node: NodeInfo): MaybeStatus { return this.update(state, pod, remove, node, -1); }

  filter(state: CycleState, pod: PodInfo, node: NodeInfo): MaybeStatus {
    const s = state.read<PreFilterState>(PRE_FILTER_KEY);
    if (!s) return null;
    for (const cc of s.items) {
      const v = node.labels[cc.c.topologyKey];
      if (v === undefined) return MISSING_LABEL;
      // The verdict depends only on the domain: decide each domain once per cycle.
      let ok = cc.verdicts.get(v);
      if (ok === undefined) {
        ok = cc.counts.get(v) + cc.self - s.minMatch(cc) <= cc.c.maxSkew;
        cc.verdicts.set(v, ok);
      }
      if (!ok) return SKEWED;
    }
    return null;
  }

  preScore(state: CycleState, pod: PodInfo, nodes: readonly NodeInfo[]): MaybeStatus {
    const cs = this.constraints(pod, false);
    if (!nodes.length || !cs.length) return SKIP;
    const requireAll = Boolean(pod.pod.spec?.topologySpreadConstraints?.length) || !this.systemDefaulted;
    const ignored = new Set<NodeInfo>();
    const present: Set<string>[] = cs.map(() => new Set());
    let scored = 0;
    for (const n of nodes) {
      if (requireAll && !PodTopologySpread.hasAllKeys(n, cs)) { ignored.add(n); continue; }
      scored++;
      cs.forEach((c, i) => { const v = n.labels[c.topologyKey]; if (v !== undefined) present[i].add(v); });
    }
    const weights = cs.map((c, i) => Math.log((c.topologyKey === HOSTNAME ? scored : present[i].size) + 2));
    const counts = cs.map((c, i) => {
      if (c.topologyKey === HOSTNAME) return null;
      const m = new Map<string, number>();
      const ok = new Map<NodeInfo, boolean>();
      this.cache.forEachMatching(c.selector, ({ info, node }) => {
        if (!node.node || !PodTopologySpread.counts(pod, info)) return;
        let include = ok.get(node);
        if (include === undefined) {
          include = !(requireAll && !PodTopologySpread.hasAllKeys(node, cs)) && PodTopologySpread.included(c, pod, node);
          ok.set(node, include);
        }
        const v = node.labels[c.topologyKey];
        if (!include || v === undefined || !present[i].has(v)) return;
        m.set(v, (m.get(v) ?? 0) + 1);
      });
      return m;
    });
    state.write(PRE_SCORE_KEY, new PreScoreState(cs, ignored, weights, counts, requireAll));
    return null;
  }

  score(state: CycleState, pod: PodInfo, node: NodeInfo): number {
    const s = state.read<PreScoreState>(PRE_SCORE_KEY)!;
    if (s.ignored.has(node)) return INVALID;
    let score = 0;
    s.constraints.forEach((c, i) => {
      const v = node.labels[c.topologyKey];
      if (v === undefined) return;
      let cnt = 0;
      const m = s.counts[i];
      if (m) cnt = m.get(v) ?? 0;
      else for (const p of node.pods) if (PodTopologySpread.counts(pod, p) && c.selector.matches(p.labels)) cnt++;
      score += cnt * s.weights[i] + (c.maxSkew - 1);
    });
    return Math.round(score);
  }

  normalizeScore(state: CycleState, _pod: PodInfo, scores: number[], nodes: readonly NodeInfo[]): MaybeStatus {
    const s = state.read<PreScoreState>(PRE_SCORE_KEY)!;
    let min = Infinity;
    let max = 0;
    for (let i = 0; i < scores.length; i++) {
      if (s.ignored.has(nodes[i])) { scores[i] = INVALID; continue; }
      if (scores[i] < min) min = scores[i];
      if (scores[i] > max) max = scores[i];
    }
    for (let i = 0; i < scores.length; i++) {
      if (scores[i] === INVALID) { scores[i] = 0; continue; }
      scores[i] = max === 0 ? MAX_NODE_SCORE : Math.trunc((MAX_NODE_SCORE * (max + min - scores[i])) / max);
    }
    return null;
  }

  events(): ClusterEvent[] { return ['AssignedPodAdd', 'AssignedPodDelete', 'AssignedPodUpdate', 'NodeAdd', 'NodeLabelChange', 'NodeTaintChange']; }
}
