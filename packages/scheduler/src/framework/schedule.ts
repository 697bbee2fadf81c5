// One scheduling cycle's algorithm (schedulePod): PreFilter, Filter over a sample of nodes
// (percentageOfNodesToScore, round-robin start), extenders, Score, and the pick of the best node.
import type { SchedulerCache } from '../cache';
import type { Extender } from '../extender';
import type { Framework, PluginScores } from './framework';
import { CycleState } from './interfaces';
import { Code, Status, type MaybeStatus } from './status';
import { MAX_NODE_SCORE, type NodeInfo, type PodInfo } from './types';

const MIN_FEASIBLE_NODES_TO_FIND = 100;
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5;
const MAX_EXTENDER_PRIORITY = 10;

/** How many feasible nodes to look for before scoring (Kubernetes' adaptive formula). */
export function numFeasibleNodesToFind(percentage: number, numAllNodes: number): number {
  if (numAllNodes < MIN_FEASIBLE_NODES_TO_FIND) return numAllNodes;
  let adaptive = percentage;
  if (adaptive <= 0) {
    adaptive = 50 - Math.trunc(numAllNodes / 125);
    if (adaptive < MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND) adaptive = MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND;
  }
  if (adaptive >= 100) return numAllNodes;
  const n = Math.trunc((numAllNodes * adaptive) / 100);
  return n < MIN_FEASIBLE_NODES_TO_FIND ? MIN_FEASIBLE_NODES_TO_FIND : n;
}

/** The statuses of rejected nodes, by node name (a Map works; the scheduler uses Rejections). */
export interface NodeStatusReader {
  get(name: string): Status | undefined;
  values(): Iterable<Status>;
  readonly size: number;
}

/** No node fits: carries every node's status for the FailedScheduling message and the queue. */
export class FitError extends Error {
  postFilterMsg = '';
  constructor(
    readonly pod: PodInfo,
    readonly numAllNodes: number,
    readonly statuses: NodeStatusReader,
    readonly preFilterMsg = '',
  ) {
    super(`0/${numAllNodes} nodes are available`);
  }

  /** Plugins that rejected some node: only events relevant to them can help the pod. */
  unschedulablePlugins(): Set<string> {
    const out = new Set<string>();
    for (const s of this.distinct().keys()) if (s.plugin) out.add(s.plugin);
    return out;
  }

  /** Rejections share Status objects: count each once, then expand its reasons. */
  private counted?: Map<Status, number>;
  private distinct(): Map<Status, number> {
    if (this.counted) return this.counted;
    const m = new Map<Status, number>();
    for (const s of this.statuses.values()) m.set(s, (m.get(s) ?? 0) + 1);
    return (this.counted = m);
  }

  /** "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {k: v}." */
  summary(): string {
    let msg = `0/${this.numAllNodes} nodes are available:`;
    if (this.preFilterMsg) msg += ` ${this.preFilterMsg}.`;
    else {
      const hist = new Map<string, number>();
      for (const [s, n] of this.distinct()) for (const r of s.reasons) hist.set(r, (hist.get(r) ?? 0) + n);
      const parts = [...hist].map(([r, n]) => `${n} ${r}`).sort();
      if (parts.length) msg += ` ${parts.join(', ')}.`;
    }
    if (this.postFilterMsg) msg += ` ${this.postFilterMsg}`;
    return msg;
  }
}

export interface ScheduleOptions {
  extenders?: readonly Extender[];
  /** Round-robin position to start filtering at. */
  startIndex?: number;
  /** Evaluate and report every node (Explain); ties go to the first node instead of a random one. */
  explain?: boolean;
  random?: () => number;
}

export interface NodeReport {
  node: NodeInfo;
  status: MaybeStatus;
  scores?: { plugin: string; score: number; weight: number }[];
  total?: number;
}

export interface ScheduleResult {
  suggestedHost: string;
  evaluatedNodes: number;
  feasibleNodes: number;
  /** Nodes looked at, for the next cycle's round-robin start. */
  processed: number;
  reports?: NodeReport[];
}

/** Rejected nodes, indexed by the node's position in the cache (cheaper than a Map on the hot path). */
class Rejections implements NodeStatusReader {
  private readonly list: Status[] = [];
  private readonly byIndex: (Status | undefined)[] = [];
  private extra?: Map<string, Status>;
  constructor(private readonly cache: SchedulerCache) {}
  add(node: NodeInfo, s: Status): void {
    this.list.push(s);
    if (node.index >= 0) this.byIndex[node.index] = s;
    else (this.extra ??= new Map()).set(node.name, s);
  }
  get(name: string): Status | undefined {
    const n = this.cache.get(name);
    return n && n.index >= 0 ? this.byIndex[n.index] : this.extra?.get(name);
  }
  values(): Iterable<Status> { return this.list; }
  get size(): number { return this.list.length; }
}

/** Runs the filters over nodes from the round-robin start until enough feasible ones are found. */
function findNodesThatFit(
  fwk: Framework, state: CycleState, pod: PodInfo, nodes: readonly NodeInfo[], rejected: Rejections, want: number, start: number,
): { feasible: NodeInfo[]; processed: number } {
  const feasible: NodeInfo[] = [];
  let processed = 0;
  const n = nodes.length;
  for (let i = 0; i < n && feasible.length < want; i++) {
    const node = nodes[(start + i) % n];
    processed++;
    const s = fwk.runFilterWithNominatedPods(state, pod, node);
    if (s === null) feasible.push(node);
    else if (s.code === Code.Error) throw new Error(`running filter plugin ${s.plugin} on node ${node.name}: ${s.message}`);
    else rejected.add(node, s);
  }
  return { feasible, processed };
}

export async function schedulePod(fwk: Framework, state: CycleState, pod: PodInfo, cache: SchedulerCache, opts: ScheduleOptions = {}): Promise<ScheduleResult> {
  const all = cache.nodes();
  if (!all.length) throw new FitError(pod, 0, new Map());
  const rejected = new Rejections(cache);
  const pre = fwk.runPreFilter(state, pod, all);
  if (pre.status) {
    if (pre.status.code === Code.Error) throw new Error(`running PreFilter plugin ${pre.status.plugin}: ${pre.status.message}`);
    for (const n of all) rejected.add(n, pre.status);
    throw new FitError(pod, all.length, rejected, pre.status.message);
  }
  let candidates: readonly NodeInfo[] = all;
  if (pre.nodeNames) {
    candidates = all.filter((n) => pre.nodeNames!.has(n.name));
    const outside = new Status(Code.UnschedulableAndUnresolvable, ["node(s) didn't satisfy plugin(s) [NodeAffinity]"]).withPlugin('NodeAffinity');
    for (const n of all) if (!pre.nodeNames.has(n.name)) rejected.add(n, outside);
  }
  const extenders = (opts.extenders ?? []).filter((e) => e.isInterested(pod));
  let feasible: NodeInfo[] = [];
  let processed = 0;
  // A pod nominated by preemption tries its nominated node first.
  const nominated = pod.pod.status?.nominatedNodeName;
  const nominatedNode = nominated && !opts.explain ? cache.get(nominated) : undefined;
  if (nominatedNode && (!pre.nodeNames || pre.nodeNames.has(nominatedNode.name)) && fwk.runFilterWithNominatedPods(state, pod, nominatedNode) === null) {
    feasible = [nominatedNode];
  } else {
    const want = opts.explain ? candidates.length : numFeasibleNodesToFind(fwk.percentageOfNodesToScore, candidates.length);
    const start = candidates === all ? (opts.startIndex ?? 0) % candidates.length : 0;
    ({ feasible, processed } = findNodesThatFit(fwk, state, pod, candidates, rejected, want, start));
  }
  for (const ext of extenders) {
    if (!feasible.length || !ext.config.filterVerb) break;
    const r = await ext.filter(pod, feasible);
    if (r.ignored) continue;
    const byName = new Map(feasible.map((n) => [n.name, n]));
    for (const [name, reason] of r.failed) if (byName.has(name)) rejected.add(byName.get(name)!, new Status(Code.Unschedulable, [reason]).withPlugin(ext.name));
    for (const [name, reason] of r.failedAndUnresolvable) if (byName.has(name)) rejected.add(byName.get(name)!, new Status(Code.UnschedulableAndUnresolvable, [reason]).withPlugin(ext.name));
    feasible = r.nodes;
  }
  const evaluated = feasible.length + rejected.size;
  if (!feasible.length) throw new FitError(pod, all.length, rejected);
  if (feasible.length === 1 && !opts.explain) {
    return { suggestedHost: feasible[0].name, evaluatedNodes: evaluated, feasibleNodes: 1, processed };
  }
  const scored = fwk.runScore(state, pod, feasible);
  if (scored.error) throw new Error(`running score plugin ${scored.error.plugin}: ${scored.error.message}`);
  const totals = scored.totals;
  const extScores: PluginScores[] = [];
  for (const ext of extenders) {
    if (!ext.config.prioritizeVerb) continue;
    const r = await ext.prioritize(pod, feasible);
    if (!r) continue;
    const scores = feasible.map((n) => Math.trunc(((r.get(n.name) ?? 0) * MAX_NODE_SCORE) / MAX_EXTENDER_PRIORITY));
    scores.forEach((s, i) => (totals[i] += s * ext.config.weight));
    extScores.push({ plugin: ext.name, weight: ext.config.weight, scores });
  }
  const host = selectHost(feasible, totals, opts.explain ? undefined : opts.random ?? Math.random);
  const result: ScheduleResult = { suggestedHost: host, evaluatedNodes: evaluated, feasibleNodes: feasible.length, processed };
  if (opts.explain) {
    const per = [...scored.perPlugin, ...extScores];
    const byNode = new Map(feasible.map((n, i) => [n, i]));
    const statuses = rejected;
    result.reports = all.map((node) => {
      const i = byNode.get(node);
      if (i === undefined) return { node, status: statuses.get(node.name) ?? null };
      return { node, status: null, scores: per.map((p) => ({ plugin: p.plugin, score: p.scores[i], weight: p.weight })), total: totals[i] };
    });
  }
  return result;
}

/** The node with the highest total; ties broken at random (reservoir sampling), or by order without a random source. */
export function selectHost(nodes: readonly NodeInfo[], totals: readonly number[], random?: () => number): string {
  let best = 0;
  let ties = 1;
  for (let i = 1; i < nodes.length; i++) {
    if (totals[i] > totals[best]) { best = i; ties = 1; }
    else if (totals[i] === totals[best] && random) {
      ties++;
      if (random() * ties < 1) best = i;
    }
  }
  return nodes[best].name;
}

export { CycleState };
