// The scheduler's cache of nodes and placed pods, including pods it has assumed onto a node
// before the bind is observed, so that decisions made in the meantime count them.
// It doubles as the snapshot the plugins read, and keeps the indexes that make the pod
// (anti-)affinity and topology-spread plugins cheap at 5000 nodes:
//  - placed pods by label (key=value -> pods), to start from a short posting list;
//  - existing pods' affinity terms grouped by identical term, with a count per topology value,
//    so the symmetry checks cost O(distinct terms), not O(pods);
//  - node counts per topology value, and how many nodes hold each image.
import type { core } from '@berth/api';
import { selectorFromRequirements, type Labels, type Selector } from './labels';
import { NodeInfo, PodInfo, lenientPodInfo, type AffinityTerm, type NamespaceLabels } from './framework/types';

export interface PlacedPod {
  info: PodInfo;
  node: NodeInfo;
}

export type TermKind = 'requiredAffinity' | 'requiredAntiAffinity' | 'preferredAffinity' | 'preferredAntiAffinity';

/** Identical affinity terms of placed pods, with how many such pods sit in each topology domain. */
export interface TermGroup {
  term: AffinityTerm;
  weight: number;
  /** Topology value (of term.topologyKey on the pod's node) -> number of pods. */
  counts: Map<string, number>;
  pods: number;
}

/** Pods matching a predicate, counted per value of a topology key on their node (kept up to date). */
interface CountIndex {
  topologyKey: string;
  matches: (p: PodInfo) => boolean;
  counts: Map<string, number>;
  used: number;
}

/** At most this many count indexes are kept; the least recently used is dropped first. */
const MAX_COUNT_INDEXES = 256;

interface PodState {
  placed: PlacedPod;
  assumed: boolean;
  bindingFinished: boolean;
  /** ms since epoch after which an assumed pod whose bind finished but was never observed expires; 0 = never. */
  deadline: number;
}

export interface CacheOptions {
  now?: () => number;
  /** How long an assumed pod may stay unobserved after its bind finished (0 = forever). */
  assumedPodTtlMs?: number;
}

function sameLabels(a: Labels, b: Labels | undefined): boolean {
  const ka = Object.keys(a);
  const kb = Object.keys(b ?? {});
  if (ka.length !== kb.length) return false;
  for (const k of ka) if (a[k] !== b![k]) return false;
  return true;
}

export class SchedulerCache {
  private readonly nodeInfos = new Map<string, NodeInfo>();
  private list: NodeInfo[] = [];
  private readonly podStates = new Map<string, PodState>();
  private readonly namespaces = new Map<string, Labels>();
  private readonly byLabel = new Map<string, Set<PlacedPod>>();
  private readonly allPlaced = new Set<PlacedPod>();
  private readonly groups: Record<TermKind, Map<string, TermGroup>> = {
    requiredAffinity: new Map(), requiredAntiAffinity: new Map(), preferredAffinity: new Map(), preferredAntiAffinity: new Map(),
  };
  /** topology key -> value -> number of nodes with that label value. */
  private readonly domains = new Map<string, Map<string, number>>();
  /** normalized image -> number of nodes holding it. */
  private readonly imageNodes = new Map<string, number>();
  private readonly now: () => number;
  private readonly ttl: number;
  readonly nsLabels: NamespaceLabels = (ns) => this.namespaces.get(ns);
  private readonly countIndexes = new Map<string, CountIndex>();
  private useClock = 0;

  constructor(opts: CacheOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.ttl = opts.assumedPodTtlMs ?? 0;
  }

  // ---- reading (the snapshot) ----

  /** Nodes with a known Node object, in a stable order. */
  nodes(): readonly NodeInfo[] { return this.list; }
  get(name: string): NodeInfo | undefined { const n = this.nodeInfos.get(name); return n?.node ? n : undefined; }
  nodeCount(): number { return this.list.length; }
  podCount(): number { return this.podStates.size; }
  isAssumed(key: string): boolean { return this.podStates.get(key)?.assumed ?? false; }
  placedPod(key: string): PlacedPod | undefined { return this.podStates.get(key)?.placed; }
  termGroups(kind: TermKind): ReadonlyMap<string, TermGroup> { return this.groups[kind]; }
  domainCounts(key: string): ReadonlyMap<string, number> | undefined { return this.domains.get(key); }
  imageNodeCount(image: string): number { return this.imageNodes.get(image) ?? 0; }
  namespaceNames(): string[] { return [...this.namespaces.keys()]; }

  /** Calls fn for every placed pod the selector matches, starting from the narrowest posting list. */
  forEachMatching(selector: Selector, fn: (p: PlacedPod) => void): void {
    if (selector.nothing) return;
    const hint = selector.hint;
    if (!hint) {
      for (const p of this.allPlaced) if (selector.matches(p.info.labels)) fn(p);
      return;
    }
    for (const v of hint.values) {
      const set = this.byLabel.get(`${hint.key}=${v}`);
      if (!set) continue;
      // Other requirements still apply; the hint only narrowed the candidates.
      if (selector.requirements.length === 1) for (const p of set) fn(p);
      else for (const p of set) if (selector.matches(p.info.labels)) fn(p);
    }
  }

  /**
   * Placed pods matching `matches`, counted per value of `topologyKey` on their node. `key` must
   * identify the predicate. Built once with a scan, then kept current on every pod and node
   * change, so repeated cycles of pods with the same terms cost O(domains) instead of O(pods).
   * The map is live: callers must not change it.
   */
  topologyCounts(key: string, topologyKey: string, matches: (p: PodInfo) => boolean): ReadonlyMap<string, number> {
    let ix = this.countIndexes.get(key);
    if (!ix) {
      if (this.countIndexes.size >= MAX_COUNT_INDEXES) {
        let oldest: string | undefined;
        let min = Infinity;
        for (const [k, v] of this.countIndexes) if (v.used < min) { min = v.used; oldest = k; }
        this.countIndexes.delete(oldest!);
      }
      ix = { topologyKey, matches, counts: new Map(), used: 0 };
      for (const p of this.allPlaced) {
        const v = p.node.node ? p.node.labels[topologyKey] : undefined;
        if (v !== undefined && matches(p.info)) ix.counts.set(v, (ix.counts.get(v) ?? 0) + 1);
      }
      this.countIndexes.set(key, ix);
    }
    ix.used = ++this.useClock;
    return ix.counts;
  }

  private countPod(info: PodInfo, ni: NodeInfo, sign: 1 | -1): void {
    if (!this.countIndexes.size || !ni.node) return;
    for (const ix of this.countIndexes.values()) {
      const v = ni.labels[ix.topologyKey];
      if (v === undefined || !ix.matches(info)) continue;
      const c = (ix.counts.get(v) ?? 0) + sign;
      if (c > 0) ix.counts.set(v, c); else ix.counts.delete(v);
    }
  }

  // ---- workload selectors (Services, ReplicaSets, StatefulSets...) for default spreading ----

  private readonly workloads = new Map<string, Map<string, Selector>>();

  /** Records the pod selector of a workload (e.g. a Service) in a namespace; null removes it. */
  setWorkloadSelector(namespace: string, id: string, selector: Selector | null): void {
    let m = this.workloads.get(namespace);
    if (!m) this.workloads.set(namespace, (m = new Map()));
    if (selector) m.set(id, selector); else m.delete(id);
  }

  /** The selectors of every workload that selects the pod, ANDed (Kubernetes' DefaultSelector); null if none. */
  defaultSpreadSelector(pod: PodInfo): Selector | null {
    const m = this.workloads.get(pod.namespace);
    if (!m) return null;
    const reqs = [];
    for (const sel of m.values()) if (!sel.everything && !sel.nothing && sel.matches(pod.labels)) reqs.push(...sel.requirements);
    return reqs.length ? selectorFromRequirements(reqs) : null;
  }

  // ---- namespaces ----

  setNamespace(ns: core.Namespace | { name: string; labels?: Labels }): void {
    // Namespace selectors may match differently now.
    this.countIndexes.clear();
    const plain = ns as { name?: string; labels?: Labels; metadata?: core.ObjectMeta };
    const name = plain.metadata ? plain.metadata.name ?? '' : plain.name ?? '';
    const labels = plain.metadata ? plain.metadata.labels ?? {} : plain.labels ?? {};
    this.namespaces.set(name, labels);
  }
  removeNamespace(name: string): void { this.namespaces.delete(name); }

  // ---- nodes ----

  addOrUpdateNode(node: core.Node): NodeInfo {
    const name = node.metadata?.name ?? '';
    let ni = this.nodeInfos.get(name);
    if (!ni) { ni = new NodeInfo(name); this.nodeInfos.set(name, ni); }
    const hadNode = Boolean(ni.node);
    if (hadNode) this.unindexNode(ni);
    // Pods' term counts depend on node labels: take them out and put them back around the change.
    for (const p of ni.pods) { this.unindexPodTerms(p, ni); this.countPod(p, ni, -1); }
    ni.setNode(node);
    for (const p of ni.pods) { this.indexPodTerms(p, ni); this.countPod(p, ni, 1); }
    this.indexNode(ni);
    if (!hadNode) { ni.index = this.list.length; this.list.push(ni); }
    return ni;
  }

  removeNode(name: string): void {
    const ni = this.nodeInfos.get(name);
    if (!ni?.node) return;
    this.unindexNode(ni);
    for (const p of ni.pods) { this.unindexPodTerms(p, ni); this.countPod(p, ni, -1); }
    ni.labels = {};
    for (const p of ni.pods) this.indexPodTerms(p, ni);
    this.list.splice(ni.index, 1);
    this.list.forEach((n, i) => (n.index = i));
    ni.index = -1;
    ni.node = undefined;
    // Pods still bound to a deleted node stay accounted (Kubernetes keeps the NodeInfo) until removed.
    if (!ni.pods.length) this.nodeInfos.delete(name);
  }

  private indexNode(ni: NodeInfo): void {
    for (const [k, v] of Object.entries(ni.labels)) {
      let m = this.domains.get(k);
      if (!m) this.domains.set(k, (m = new Map()));
      m.set(v, (m.get(v) ?? 0) + 1);
    }
    for (const img of ni.images.keys()) this.imageNodes.set(img, (this.imageNodes.get(img) ?? 0) + 1);
  }

  private unindexNode(ni: NodeInfo): void {
    for (const [k, v] of Object.entries(ni.labels)) {
      const m = this.domains.get(k);
      if (!m) continue;
      const c = (m.get(v) ?? 0) - 1;
      if (c > 0) m.set(v, c); else m.delete(v);
      if (!m.size) this.domains.delete(k);
    }
    for (const img of ni.images.keys()) {
      const c = (this.imageNodes.get(img) ?? 0) - 1;
      if (c > 0) this.imageNodes.set(img, c); else this.imageNodes.delete(img);
    }
  }

  // ---- pods ----

  /** Counts the pod on nodeName before its bind is observed. */
  assumePod(pod: core.Pod | PodInfo, nodeName: string): PodInfo {
    const base = pod instanceof PodInfo ? pod.pod : pod;
    const info = lenientPodInfo({ ...base, spec: base.spec ? { ...base.spec, nodeName } : undefined });
    if (this.podStates.has(info.key)) throw new Error(`pod ${info.key} is already in the cache`);
    this.place(info, nodeName, true);
    return info;
  }

  /** The bind call returned; start the expiry clock of the assumed pod. */
  finishBinding(key: string): void {
    const s = this.podStates.get(key);
    if (!s?.assumed) return;
    s.bindingFinished = true;
    s.deadline = this.ttl > 0 ? this.now() + this.ttl : 0;
  }

  /** Un-assumes a pod whose bind failed. */
  forgetPod(key: string): void {
    const s = this.podStates.get(key);
    if (s?.assumed) this.unplace(key);
  }

  /** A pod bound to a node was observed (informer add/update). Confirms an assumed pod. */
  addOrUpdatePod(pod: core.Pod): void {
    const nodeName = pod.spec?.nodeName;
    const terminal = pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
    const key = `${pod.metadata?.namespace || 'default'}/${pod.metadata?.name ?? ''}`;
    const s = this.podStates.get(key);
    // The bind of an assumed pod was observed: confirm it, keeping the compiled PodInfo.
    if (s?.assumed && !terminal && s.placed.node.name === nodeName && s.placed.info.uid === (pod.metadata?.uid || key)
      && sameLabels(s.placed.info.labels, pod.metadata?.labels)) {
      s.assumed = false;
      return;
    }
    const info = lenientPodInfo(pod);
    if (s) this.unplace(info.key);
    if (!nodeName || terminal) return;
    this.place(info, nodeName, false);
  }

  removePod(key: string): void {
    if (this.podStates.has(key)) this.unplace(key);
  }

  /** Drops assumed pods whose bind finished long ago but were never observed; returns their keys. */
  cleanupExpiredAssumedPods(): string[] {
    const now = this.now();
    const out: string[] = [];
    for (const [k, s] of this.podStates) {
      if (s.assumed && s.bindingFinished && s.deadline > 0 && now >= s.deadline) { this.unplace(k); out.push(k); }
    }
    return out;
  }

  private place(info: PodInfo, nodeName: string, assumed: boolean): void {
    let ni = this.nodeInfos.get(nodeName);
    if (!ni) { ni = new NodeInfo(nodeName); this.nodeInfos.set(nodeName, ni); }
    const placed: PlacedPod = { info, node: ni };
    this.podStates.set(info.key, { placed, assumed, bindingFinished: false, deadline: 0 });
    ni.addPod(info);
    this.countPod(info, ni, 1);
    this.allPlaced.add(placed);
    for (const [k, v] of Object.entries(info.labels)) {
      const lk = `${k}=${v}`;
      let s = this.byLabel.get(lk);
      if (!s) this.byLabel.set(lk, (s = new Set()));
      s.add(placed);
    }
    this.indexPodTerms(info, ni);
  }

  private unplace(key: string): void {
    const s = this.podStates.get(key)!;
    this.podStates.delete(key);
    const { info, node } = s.placed;
    node.removePod(key);
    this.countPod(info, node, -1);
    this.allPlaced.delete(s.placed);
    for (const [k, v] of Object.entries(info.labels)) {
      const lk = `${k}=${v}`;
      const set = this.byLabel.get(lk);
      set?.delete(s.placed);
      if (set && !set.size) this.byLabel.delete(lk);
    }
    this.unindexPodTerms(info, node);
    if (!node.node && !node.pods.length) this.nodeInfos.delete(node.name);
  }

  private indexPodTerms(p: PodInfo, ni: NodeInfo, sign: 1 | -1 = 1): void {
    if (!p.hasAffinity) return;
    const apply = (kind: TermKind, terms: readonly AffinityTerm[], weightOf: (t: AffinityTerm) => number) => {
      for (const t of terms) {
        const w = weightOf(t);
        const gk = `${w}|${t.key}`;
        const groups = this.groups[kind];
        let g = groups.get(gk);
        if (!g) { if (sign < 0) continue; groups.set(gk, (g = { term: t, weight: w, counts: new Map(), pods: 0 })); }
        g.pods += sign;
        const v = ni.labels[t.topologyKey];
        if (v !== undefined) {
          const c = (g.counts.get(v) ?? 0) + sign;
          if (c > 0) g.counts.set(v, c); else g.counts.delete(v);
        }
        if (g.pods <= 0) groups.delete(gk);
      }
    };
    apply('requiredAffinity', p.requiredAffinityTerms, () => 0);
    apply('requiredAntiAffinity', p.requiredAntiAffinityTerms, () => 0);
    apply('preferredAffinity', p.preferredAffinityTerms, (t) => (t as unknown as { weight: number }).weight);
    apply('preferredAntiAffinity', p.preferredAntiAffinityTerms, (t) => (t as unknown as { weight: number }).weight);
  }

  private unindexPodTerms(p: PodInfo, ni: NodeInfo): void { this.indexPodTerms(p, ni, -1); }
}
