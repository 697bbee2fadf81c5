// What the scheduler needs from the cluster, as two small interfaces so that the Store-backed
// informers and writer (issue #4) plug in without touching the scheduling logic:
//  - ClusterSource feeds node, pod and namespace events (list then watch) into the scheduler;
//  - ClusterWriter binds, evicts preemption victims, writes pod status and records events.
// MemoryCluster implements both in process: the benchmark's store and the pure-logic tests' fake.
import type { core } from '@berth/api';
import { ConflictError, NotFoundError } from '@berth/common';

export type WatchType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface ClusterEventHandler {
  onNode(type: WatchType, node: core.Node): void;
  onPod(type: WatchType, pod: core.Pod): void;
  onNamespace(type: WatchType, ns: core.Namespace): void;
}

export interface ClusterSource {
  /** Lists everything into the handler, then keeps it up to date until stop(). */
  start(handler: ClusterEventHandler): Promise<void>;
  stop(): Promise<void>;
}

export interface PodStatusPatch {
  /** Replaces the condition of the same type. */
  condition?: core.PodCondition;
  /** Set ('' clears) status.nominatedNodeName. */
  nominatedNodeName?: string;
}

export interface ClusterWriter {
  /** Binds the pod (compare-and-swap on its uid and an empty nodeName); ConflictError when that fails. */
  bind(pod: core.Pod, nodeName: string): Promise<void>;
  /** Deletes a pod (preemption). */
  deletePod(pod: core.Pod, reason: string): Promise<void>;
  updatePodStatus(pod: core.Pod, patch: PodStatusPatch): Promise<void>;
  /** Records an event about the pod ("Scheduled", "FailedScheduling", "Preempted"). */
  recordEvent(pod: core.Pod, type: 'Normal' | 'Warning', reason: string, message: string): void;
}

export interface RecordedEvent { namespace: string; name: string; type: string; reason: string; message: string }

const keyOf = (p: core.Pod) => `${p.metadata?.namespace || 'default'}/${p.metadata?.name ?? ''}`;

/** An in-process cluster: a map of objects whose writes are delivered to the watcher like a watch. */
export class MemoryCluster implements ClusterSource, ClusterWriter {
  readonly nodes = new Map<string, core.Node>();
  readonly pods = new Map<string, core.Pod>();
  readonly namespaces = new Map<string, core.Namespace>();
  readonly events: RecordedEvent[] = [];
  private handler?: ClusterEventHandler;
  /** Deliver watch events on a microtask (like a real watch) rather than inside the write. */
  constructor(private readonly async = true) {}

  private emit(fn: (h: ClusterEventHandler) => void): void {
    const h = this.handler;
    if (!h) return;
    if (this.async) queueMicrotask(() => fn(h)); else fn(h);
  }

  async start(handler: ClusterEventHandler): Promise<void> {
    this.handler = handler;
    for (const ns of this.namespaces.values()) handler.onNamespace('ADDED', ns);
    for (const n of this.nodes.values()) handler.onNode('ADDED', n);
    for (const p of this.pods.values()) handler.onPod('ADDED', p);
  }
  async stop(): Promise<void> { this.handler = undefined; }

  putNode(node: core.Node): void {
    const name = node.metadata?.name ?? '';
    const type = this.nodes.has(name) ? 'MODIFIED' : 'ADDED';
    this.nodes.set(name, node);
    this.emit((h) => h.onNode(type, node));
  }
  deleteNode(name: string): void {
    const n = this.nodes.get(name);
    if (!n) return;
    this.nodes.delete(name);
    this.emit((h) => h.onNode('DELETED', n));
  }
  putPod(pod: core.Pod): void {
    const k = keyOf(pod);
    const type = this.pods.has(k) ? 'MODIFIED' : 'ADDED';
    this.pods.set(k, pod);
    this.emit((h) => h.onPod(type, pod));
  }
  putNamespace(ns: core.Namespace): void {
    const name = ns.metadata?.name ?? '';
    const type = this.namespaces.has(name) ? 'MODIFIED' : 'ADDED';
    this.namespaces.set(name, ns);
    this.emit((h) => h.onNamespace(type, ns));
  }

  async bind(pod: core.Pod, nodeName: string): Promise<void> {
    const k = keyOf(pod);
    const cur = this.pods.get(k);
    if (!cur) throw new NotFoundError(`pod ${k} not found`);
    if (cur.metadata?.uid !== pod.metadata?.uid) throw new ConflictError(`pod ${k}: uid changed`);
    if (cur.spec?.nodeName) throw new ConflictError(`pod ${k} is already assigned to node "${cur.spec.nodeName}"`);
    if (!this.nodes.has(nodeName)) throw new NotFoundError(`node ${nodeName} not found`);
    const bound: core.Pod = {
      ...cur,
      spec: { ...cur.spec!, nodeName },
      status: { ...(cur.status as core.PodStatus), conditions: [...(cur.status?.conditions ?? []).filter((c) => c.type !== 'PodScheduled'), { type: 'PodScheduled', status: 'True', reason: '', message: '', lastProbeTime: '', lastTransitionTime: new Date().toISOString() }] },
    };
    this.pods.set(k, bound);
    this.emit((h) => h.onPod('MODIFIED', bound));
  }

  async deletePod(pod: core.Pod): Promise<void> {
    const k = keyOf(pod);
    const cur = this.pods.get(k);
    if (!cur) return;
    this.pods.delete(k);
    this.emit((h) => h.onPod('DELETED', cur));
  }

  async updatePodStatus(pod: core.Pod, patch: PodStatusPatch): Promise<void> {
    const k = keyOf(pod);
    const cur = this.pods.get(k);
    if (!cur) return;
    const status = { ...(cur.status ?? ({} as core.PodStatus)) } as core.PodStatus;
    if (patch.condition) status.conditions = [...(status.conditions ?? []).filter((c) => c.type !== patch.condition!.type), patch.condition];
    if (patch.nominatedNodeName !== undefined) status.nominatedNodeName = patch.nominatedNodeName;
    const next = { ...cur, status };
    this.pods.set(k, next);
    this.emit((h) => h.onPod('MODIFIED', next));
  }

  recordEvent(pod: core.Pod, type: 'Normal' | 'Warning', reason: string, message: string): void {
    this.events.push({ namespace: pod.metadata?.namespace || 'default', name: pod.metadata?.name ?? '', type, reason, message });
  }
}
