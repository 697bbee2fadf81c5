// The framework runtime of one profile: it builds the profile's plugins from the registry and
// runs them at each extension point in order, short-circuiting on the first rejection.
import type { ProfileConfig } from '../config';
import type { Registry } from './registry';
import {
  CycleState, type BindPlugin, type ClusterEvent, type EnqueueExtensions, type ExtensionPoint, type FilterPlugin, type Handle, type PermitPlugin,
  type Plugin, type PostBindPlugin, type PostFilterPlugin, type PostFilterResult, type PreBindPlugin, type PreEnqueuePlugin, type PreFilterPlugin,
  type PreScorePlugin, type QueueSortPlugin, type ReservePlugin, type ScorePlugin,
} from './interfaces';
import { Code, Status, asError, type MaybeStatus } from './status';
import type { NodeStatusReader } from './schedule';
import { MAX_NODE_SCORE, type NodeInfo, type PodInfo } from './types';

export interface PluginScores { plugin: string; weight: number; scores: number[] }

export class Framework {
  readonly name: string;
  readonly percentageOfNodesToScore: number;
  readonly preEnqueue: PreEnqueuePlugin[];
  readonly queueSort: QueueSortPlugin;
  readonly preFilter: PreFilterPlugin[];
  readonly filter: FilterPlugin[];
  readonly postFilter: PostFilterPlugin[];
  readonly preScore: PreScorePlugin[];
  readonly score: ScorePlugin[];
  readonly weights: Map<string, number>;
  readonly reserve: ReservePlugin[];
  readonly permit: PermitPlugin[];
  readonly preBind: PreBindPlugin[];
  readonly bind: BindPlugin[];
  readonly postBind: PostBindPlugin[];
  /** Plugin name -> cluster events that may make a pod it rejected schedulable. */
  readonly events = new Map<string, Set<ClusterEvent>>();

  constructor(cfg: ProfileConfig, registry: Registry, readonly handle: Handle) {
    this.name = cfg.schedulerName;
    this.percentageOfNodesToScore = cfg.percentageOfNodesToScore;
    this.weights = cfg.weights;
    const built = new Map<string, Plugin>();
    const get = <T>(point: ExtensionPoint): T[] => cfg.points[point].map((ref) => {
      let p = built.get(ref.name);
      if (!p) {
        p = registry.get(ref.name)!.factory(cfg.args.get(ref.name), handle);
        built.set(ref.name, p);
      }
      return p as unknown as T;
    });
    this.preEnqueue = get('preEnqueue');
    this.queueSort = get<QueueSortPlugin>('queueSort')[0];
    this.preFilter = get('preFilter');
    this.filter = get('filter');
    this.postFilter = get('postFilter');
    this.preScore = get('preScore');
    this.score = get('score');
    this.reserve = get('reserve');
    this.permit = get('permit');
    this.preBind = get('preBind');
    this.bind = get('bind');
    this.postBind = get('postBind');
    for (const p of built.values()) {
      const ev = (p as Partial<EnqueueExtensions>).events?.();
      this.events.set(p.name, new Set(ev ?? []));
    }
  }

  runPreEnqueue(pod: PodInfo): MaybeStatus {
    for (const p of this.preEnqueue) {
      const s = p.preEnqueue(pod);
      if (s && s.code !== Code.Success) return s.withPlugin(p.name);
    }
    return null;
  }

  /** Runs PreFilter; returns the status (first rejection) and the intersection of node-name results. */
  runPreFilter(state: CycleState, pod: PodInfo, nodes: readonly NodeInfo[]): { status: MaybeStatus; nodeNames?: Set<string> } {
    let names: Set<string> | undefined;
    state.skipFilterPlugins.clear();
    state.activeFilters = null;
    for (const p of this.preFilter) {
      const { status, result } = p.preFilter(state, pod, nodes);
      if (status?.code === Code.Skip) { state.skipFilterPlugins.add(p.name); continue; }
      if (status && status.code !== Code.Success) return { status: status.withPlugin(p.name) };
      if (result?.nodeNames) {
        names = names ? new Set([...names].filter((n) => result.nodeNames!.has(n))) : new Set(result.nodeNames);
        if (!names.size) return { status: new Status(Code.UnschedulableAndUnresolvable, [`node(s) didn't satisfy plugin(s) [${p.name}] simultaneously`]).withPlugin(p.name), nodeNames: names };
      }
    }
    const skip = state.skipFilterPlugins;
    state.activeFilters = skip.size ? this.filter.filter((p) => !skip.has(p.name)) : this.filter;
    return { status: null, nodeNames: names };
  }

  runFilter(state: CycleState, pod: PodInfo, node: NodeInfo): MaybeStatus {
    const plugins = state.activeFilters ?? this.filter;
    for (let i = 0; i < plugins.length; i++) {
      const p = plugins[i];
      const s = p.filter(state, pod, node);
      if (s !== null && s.code !== Code.Success) return s.withPlugin(p.name);
    }
    return null;
  }

  /**
   * Filters with the pods nominated to this node (of equal or higher priority) counted as if
   * placed, and — when there were any — again without them, so a pod fits only if it fits either way.
   */
  runFilterWithNominatedPods(state: CycleState, pod: PodInfo, node: NodeInfo): MaybeStatus {
    const nominated = this.handle.nominatedPodsForNode(node.name);
    if (nominated.length) {
      let added = false;
      let ni = node;
      let st = state;
      for (const np of nominated) {
        if (np.priority < pod.priority || np.key === pod.key) continue;
        if (!added) { ni = node.clone(); st = state.clone(); added = true; }
        ni.addPod(np);
        const s = this.runPreFilterAddPod(st, pod, np, ni);
        if (s) return s;
      }
      if (added) {
        const s = this.runFilter(st, pod, ni);
        if (s) return s;
      }
    }
    return this.runFilter(state, pod, node);
  }

  runPreFilterAddPod(state: CycleState, pod: PodInfo, add: PodInfo, node: NodeInfo): MaybeStatus {
    for (const p of this.preFilter) {
      if (state.skipFilterPlugins.has(p.name) || !p.addPod) continue;
      const s = p.addPod(state, pod, add, node);
      if (s && s.code !== Code.Success) return s.withPlugin(p.name);
    }
    return null;
  }

  runPreFilterRemovePod(state: CycleState, pod: PodInfo, remove: PodInfo, node: NodeInfo): MaybeStatus {
    for (const p of this.preFilter) {
      if (state.skipFilterPlugins.has(p.name) || !p.removePod) continue;
      const s = p.removePod(state, pod, remove, node);
      if (s && s.code !== Code.Success) return s.withPlugin(p.name);
    }
    return null;
  }

  async runPostFilter(state: CycleState, pod: PodInfo, statuses: NodeStatusReader, dryRun: boolean): Promise<PostFilterResult | undefined> {
    let last: PostFilterResult | undefined;
    for (const p of this.postFilter) {
      const r = await p.postFilter(state, pod, statuses, { dryRun });
      if (r.status.code === Code.Success || r.status.code === Code.Error) return r;
      last = r;
    }
    return last;
  }

  /** PreScore, Score, NormalizeScore and weights; per-plugin normalized scores aligned with nodes. */
  runScore(state: CycleState, pod: PodInfo, nodes: readonly NodeInfo[]): { perPlugin: PluginScores[]; totals: number[]; error?: Status } {
    state.skipScorePlugins.clear();
    for (const p of this.preScore) {
      const s = p.preScore(state, pod, nodes);
      if (s?.code === Code.Skip) { state.skipScorePlugins.add(p.name); continue; }
      if (s && s.code !== Code.Success) return { perPlugin: [], totals: [], error: s.withPlugin(p.name) };
    }
    const totals = new Array<number>(nodes.length).fill(0);
    const perPlugin: PluginScores[] = [];
    for (const p of this.score) {
      if (state.skipScorePlugins.has(p.name)) continue;
      const weight = this.weights.get(p.name) ?? 1;
      const scores = new Array<number>(nodes.length);
      for (let i = 0; i < nodes.length; i++) scores[i] = p.score(state, pod, nodes[i]);
      const s = p.normalizeScore?.(state, pod, scores, nodes);
      if (s && s.code !== Code.Success) return { perPlugin: [], totals: [], error: s.withPlugin(p.name) };
      for (let i = 0; i < scores.length; i++) {
        if (scores[i] > MAX_NODE_SCORE || scores[i] < 0) {
          return { perPlugin: [], totals: [], error: asError(`plugin ${p.name} returns an invalid score ${scores[i]}, it should be in the range of [0, ${MAX_NODE_SCORE}] after normalizing`) };
        }
        totals[i] += scores[i] * weight;
      }
      perPlugin.push({ plugin: p.name, weight, scores });
    }
    return { perPlugin, totals };
  }

  runReserve(state: CycleState, pod: PodInfo, nodeName: string): MaybeStatus {
    for (const p of this.reserve) {
      const s = p.reserve(state, pod, nodeName);
      if (s && s.code !== Code.Success) return s.withPlugin(p.name);
    }
    return null;
  }

  runUnreserve(state: CycleState, pod: PodInfo, nodeName: string): void {
    for (const p of [...this.reserve].reverse()) p.unreserve(state, pod, nodeName);
  }

  /** Permit: a rejection fails the pod; Wait is honoured up to the longest timeout the plugins give. */
  async runPermit(state: CycleState, pod: PodInfo, nodeName: string): Promise<MaybeStatus> {
    let waitMs = 0;
    for (const p of this.permit) {
      const { status, timeoutMs } = p.permit(state, pod, nodeName);
      if (status?.code === Code.Wait) { waitMs = Math.max(waitMs, timeoutMs ?? 0); continue; }
      if (status && status.code !== Code.Success) return status.withPlugin(p.name);
    }
    if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
    return null;
  }

  async runPreBind(state: CycleState, pod: PodInfo, nodeName: string): Promise<MaybeStatus> {
    for (const p of this.preBind) {
      const s = await p.preBind(state, pod, nodeName);
      if (s && s.code !== Code.Success) return s.withPlugin(p.name);
    }
    return null;
  }

  async runBind(state: CycleState, pod: PodInfo, nodeName: string): Promise<MaybeStatus> {
    for (const p of this.bind) {
      const s = await p.bind(state, pod, nodeName);
      if (s?.code === Code.Skip) continue;
      return s ? s.withPlugin(p.name) : null;
    }
    return asError('no bind plugin bound the pod');
  }

  runPostBind(state: CycleState, pod: PodInfo, nodeName: string): void {
    for (const p of this.postBind) p.postBind(state, pod, nodeName);
  }
}
