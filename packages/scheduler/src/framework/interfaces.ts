// The scheduling framework's extension points, as in kube-scheduler: each plugin implements
// the interfaces of the points it takes part in, and the registry maps its name to a factory.
import type { SchedulerCache } from '../cache';
import type { MaybeStatus, Status } from './status';
import type { NodeStatusReader } from './schedule';
import type { NodeInfo, PodInfo } from './types';

export const EXTENSION_POINTS = [
  'preEnqueue', 'queueSort', 'preFilter', 'filter', 'postFilter', 'preScore', 'score',
  'reserve', 'permit', 'preBind', 'bind', 'postBind',
] as const;
export type ExtensionPoint = (typeof EXTENSION_POINTS)[number];

/** Per-cycle scratch space shared by a pod's plugin calls; cloned for preemption's what-ifs. */
export class CycleState {
  private readonly data = new Map<string, StateData>();
  /** Set while preemption simulates; plugins may skip work that only matters for real cycles. */
  skipFilterPlugins = new Set<string>();
  skipScorePlugins = new Set<string>();
  /** The filter plugins left after PreFilter's Skips (set by the framework; null = all). */
  activeFilters: readonly FilterPlugin[] | null = null;
  read<T extends StateData>(key: string): T | undefined { return this.data.get(key) as T | undefined; }
  write(key: string, value: StateData): void { this.data.set(key, value); }
  clone(): CycleState {
    const c = new CycleState();
    for (const [k, v] of this.data) c.data.set(k, v.clone());
    c.skipFilterPlugins = new Set(this.skipFilterPlugins);
    c.skipScorePlugins = new Set(this.skipScorePlugins);
    c.activeFilters = this.activeFilters;
    return c;
  }
}

export interface StateData { clone(): StateData }

/** A pod as the queue holds it. */
export interface QueuedPodInfo {
  info: PodInfo;
  /** ms; when the pod was (last) added to the queue. */
  timestamp: number;
  /** ms; when the pod first entered the queue. */
  initialAttemptTimestamp: number;
  attempts: number;
  unschedulablePlugins: Set<string>;
  pendingPlugins: Set<string>;
  lastFailure: string;
  /** Gated by a PreEnqueue plugin (e.g. schedulingGates). */
  gated: boolean;
}

/** What the framework offers plugins besides the pod and node: the snapshot and the cluster. */
export interface Handle {
  readonly snapshot: SchedulerCache;
  /** Pods nominated to run on a node (by preemption), in any profile. */
  nominatedPodsForNode(nodeName: string): readonly PodInfo[];
  /** Binds the pod to the node through the cluster (DefaultBinder). */
  bindPod(pod: PodInfo, nodeName: string): Promise<void>;
  /** Evicts a victim of preemption (deletes it through the cluster). */
  deletePod(pod: PodInfo, reason: string): Promise<void>;
  /** Clears status.nominatedNodeName of a pod that lost its nomination. */
  clearNomination(pod: PodInfo): Promise<void>;
  /** Runs the profile's filter plugins for a pod against a node (preemption uses it). */
  runFilterPluginsWithNominatedPods(state: CycleState, pod: PodInfo, node: NodeInfo): MaybeStatus;
  runPreFilterExtensionAddPod(state: CycleState, pod: PodInfo, add: PodInfo, node: NodeInfo): MaybeStatus;
  runPreFilterExtensionRemovePod(state: CycleState, pod: PodInfo, remove: PodInfo, node: NodeInfo): MaybeStatus;
  now(): number;
  /** Random source; seeded in tests. */
  random(): number;
}

export interface Plugin { readonly name: string }

/** Cluster events a plugin's rejection may be lifted by (queueing hints, coarse). */
export type ClusterEvent =
  | 'NodeAdd' | 'NodeDelete' | 'NodeLabelChange' | 'NodeTaintChange' | 'NodeAllocatableChange' | 'NodeSpecUnschedulableChange' | 'NodeImageChange'
  | 'PodAdd' | 'PodDelete' | 'PodLabelChange' | 'PodRequestScaledDown' | 'AssignedPodAdd' | 'AssignedPodDelete' | 'AssignedPodUpdate'
  | 'NamespaceChange' | 'UnscheduledPodUpdate';

export interface EnqueueExtensions { events(): ClusterEvent[] }

export interface PreEnqueuePlugin extends Plugin { preEnqueue(pod: PodInfo): MaybeStatus }
export interface QueueSortPlugin extends Plugin { less(a: QueuedPodInfo, b: QueuedPodInfo): boolean }

export interface PreFilterResult {
  /** Only these nodes can fit; undefined = all. */
  nodeNames?: ReadonlySet<string>;
}
export interface PreFilterPlugin extends Plugin {
  preFilter(state: CycleState, pod: PodInfo, nodes: readonly NodeInfo[]): { status: MaybeStatus; result?: PreFilterResult };
  /** PreFilterExtensions: keep the precomputed state right when preemption adds/removes pods. */
  addPod?(state: CycleState, pod: PodInfo, add: PodInfo, node: NodeInfo): MaybeStatus;
  removePod?(state: CycleState, pod: PodInfo, remove: PodInfo, node: NodeInfo): MaybeStatus;
}
export interface FilterPlugin extends Plugin { filter(state: CycleState, pod: PodInfo, node: NodeInfo): MaybeStatus }
export interface PostFilterResult { nominatedNodeName?: string; status: Status; message?: string }
export interface PostFilterPlugin extends Plugin {
  postFilter(state: CycleState, pod: PodInfo, statuses: NodeStatusReader, opts: { dryRun: boolean }): Promise<PostFilterResult>;
}
export interface PreScorePlugin extends Plugin { preScore(state: CycleState, pod: PodInfo, nodes: readonly NodeInfo[]): MaybeStatus }
export interface ScorePlugin extends Plugin {
  score(state: CycleState, pod: PodInfo, node: NodeInfo): number;
  /** Rescales raw scores (aligned with nodes) to 0-100 in place. */
  normalizeScore?(state: CycleState, pod: PodInfo, scores: number[], nodes: readonly NodeInfo[]): MaybeStatus;
}
export interface ReservePlugin extends Plugin {
  reserve(state: CycleState, pod: PodInfo, nodeName: string): MaybeStatus;
  unreserve(state: CycleState, pod: PodInfo, nodeName: string): void;
}
export interface PermitPlugin extends Plugin { permit(state: CycleState, pod: PodInfo, nodeName: string): { status: MaybeStatus; timeoutMs?: number } }
export interface PreBindPlugin extends Plugin { preBind(state: CycleState, pod: PodInfo, nodeName: string): Promise<MaybeStatus> }
/** Bind returns Skip to let the next bind plugin do it. */
export interface BindPlugin extends Plugin { bind(state: CycleState, pod: PodInfo, nodeName: string): Promise<MaybeStatus> }
export interface PostBindPlugin extends Plugin { postBind(state: CycleState, pod: PodInfo, nodeName: string): void }

/** Which extension points a plugin object implements. */
export function pointsOf(p: Plugin): ExtensionPoint[] {
  const o = p as unknown as Record<string, unknown>;
  const has = (m: string) => typeof o[m] === 'function';
  const out: ExtensionPoint[] = [];
  if (has('preEnqueue')) out.push('preEnqueue');
  if (has('less')) out.push('queueSort');
  if (has('preFilter')) out.push('preFilter');
  if (has('filter')) out.push('filter');
  if (has('postFilter')) out.push('postFilter');
  if (has('preScore')) out.push('preScore');
  if (has('score')) out.push('score');
  if (has('reserve')) out.push('reserve');
  if (has('permit')) out.push('permit');
  if (has('preBind')) out.push('preBind');
  if (has('bind')) out.push('bind');
  if (has('postBind')) out.push('postBind');
  return out;
}

/** Builds a plugin from its (validated) args. */
export type PluginFactory = (args: unknown, handle: Handle) => Plugin;

export interface PluginRegistration {
  factory: PluginFactory;
  /** Validates args (throws with a message naming the field); returns the defaulted args. */
  parseArgs?(args: unknown, field: string): unknown;
  /** Extension points it implements (out-of-tree plugins; in-tree ones are listed in config.ts). */
  points?: ExtensionPoint[];
}
