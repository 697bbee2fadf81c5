// The scheduling queue, as kube-scheduler's: activeQ (ordered by the QueueSort plugin: priority,
// then time), backoffQ (pods that failed wait initial*2^(attempts-1), capped), and the
// unschedulable pods, which move back only on a cluster event that could make them fit (or
// after a long stay). It also remembers which pods preemption nominated to which node.
import type { ClusterEvent, QueuedPodInfo } from './framework/interfaces';
import type { MaybeStatus } from './framework/status';
import type { PodInfo } from './framework/types';
import { KeyedHeap } from './heap';

export interface QueueOptions {
  now?: () => number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Unschedulable pods are retried after this long even without an event (Kubernetes: 5 min). */
  maxInUnschedulableMs?: number;
  less: (a: QueuedPodInfo, b: QueuedPodInfo) => boolean;
  /** PreEnqueue plugins of the pod's profile; a rejection parks the pod as gated. */
  preEnqueue?: (pod: PodInfo) => MaybeStatus;
  /** Whether an event may help a pod rejected by these plugins (from the plugins' EnqueueExtensions). */
  helps?: (pod: QueuedPodInfo, event: ClusterEvent) => boolean;
}

const NONE: readonly PodInfo[] = [];

/** Whether an update touched what scheduling reads (spec, labels), as Kubernetes' isPodUpdated. */
function schedulingInputsChanged(a: PodInfo, b: PodInfo): boolean {
  return JSON.stringify(a.pod.spec) !== JSON.stringify(b.pod.spec) || JSON.stringify(a.labels) !== JSON.stringify(b.labels);
}

export type QueueName = 'active' | 'backoff' | 'unschedulable';

export class SchedulingQueue {
  private readonly now: () => number;
  private readonly initialBackoff: number;
  private readonly maxBackoff: number;
  private readonly maxInUnschedulable: number;
  private readonly activeQ: KeyedHeap<QueuedPodInfo>;
  private readonly backoffQ: KeyedHeap<QueuedPodInfo>;
  private readonly unschedulable = new Map<string, QueuedPodInfo>();
  /** Pods popped and being scheduled. */
  private readonly inFlight = new Map<string, QueuedPodInfo>();
  private readonly waiters: ((q: QueuedPodInfo | undefined) => void)[] = [];
  private closed = false;
  /** Bumped on every pop; a move request during a pod's cycle sends it to backoff, not unschedulable. */
  schedulingCycle = 0;
  private moveRequestCycle = -1;
  private readonly nominated = new Map<string, PodInfo[]>();
  private readonly nominatedNodeOf = new Map<string, string>();

  constructor(private readonly opts: QueueOptions) {
    this.now = opts.now ?? Date.now;
    this.initialBackoff = opts.initialBackoffMs ?? 1000;
    this.maxBackoff = opts.maxBackoffMs ?? 10_000;
    this.maxInUnschedulable = opts.maxInUnschedulableMs ?? 5 * 60_000;
    this.activeQ = new KeyedHeap((q) => q.info.key, opts.less);
    this.backoffQ = new KeyedHeap((q) => q.info.key, (a, b) => this.backoffExpiry(a) < this.backoffExpiry(b));
  }

  /** Backoff of a pod that failed `attempts` times: initial * 2^(attempts-1), at most max. */
  backoffDuration(attempts: number): number {
    let d = this.initialBackoff;
    for (let i = 1; i < attempts; i++) {
      d *= 2;
      if (d >= this.maxBackoff) return this.maxBackoff;
    }
    return Math.min(d, this.maxBackoff);
  }

  backoffExpiry(q: QueuedPodInfo): number { return q.timestamp + this.backoffDuration(q.attempts); }

  private isBackingOff(q: QueuedPodInfo): boolean { return q.attempts > 0 && this.backoffExpiry(q) > this.now(); }

  has(key: string): boolean {
    return this.activeQ.has(key) || this.backoffQ.has(key) || this.unschedulable.has(key) || this.inFlight.has(key);
  }

  where(key: string): QueueName | 'inFlight' | undefined {
    if (this.activeQ.has(key)) return 'active';
    if (this.backoffQ.has(key)) return 'backoff';
    if (this.unschedulable.has(key)) return 'unschedulable';
    if (this.inFlight.has(key)) return 'inFlight';
    return undefined;
  }

  /** A new pending pod. */
  add(info: PodInfo): void {
    if (this.has(info.key)) { this.update(info); return; }
    const now = this.now();
    const q: QueuedPodInfo = { info, timestamp: now, initialAttemptTimestamp: now, attempts: 0, unschedulablePlugins: new Set(), pendingPlugins: new Set(), lastFailure: '', gated: false };
    this.toActiveOrGated(q);
    if (info.pod.status?.nominatedNodeName) this.addNominated(info, info.pod.status.nominatedNodeName);
  }

  private toActiveOrGated(q: QueuedPodInfo): void {
    const s = this.opts.preEnqueue?.(q.info);
    if (s) {
      q.gated = true;
      q.lastFailure = s.message;
      q.unschedulablePlugins = new Set([s.plugin]);
      this.unschedulable.set(q.info.key, q);
      return;
    }
    q.gated = false;
    this.activeQ.push(q);
    this.wake();
  }

  /** The pod object changed while pending. */
  update(info: PodInfo): void {
    const key = info.key;
    const inActive = this.activeQ.get(key) ?? this.backoffQ.get(key) ?? this.inFlight.get(key);
    if (inActive) {
      inActive.info = info;
      if (this.activeQ.has(key)) this.activeQ.push(inActive);
      else if (this.backoffQ.has(key)) this.backoffQ.push(inActive);
      return;
    }
    const u = this.unschedulable.get(key);
    if (u) {
      // Status-only updates (our own PodScheduled condition, nominatedNodeName) change nothing.
      if (!schedulingInputsChanged(u.info, info)) { u.info = info; return; }
      // An update may remove gates or relax constraints: give it another go (through backoff).
      u.info = info;
      this.unschedulable.delete(key);
      if (u.gated) { u.timestamp = this.now(); this.toActiveOrGated(u); return; }
      if (this.isBackingOff(u)) this.backoffQ.push(u); else { this.activeQ.push(u); this.wake(); }
      return;
    }
    this.add(info);
  }

  delete(key: string): void {
    this.activeQ.delete(key);
    this.backoffQ.delete(key);
    this.unschedulable.delete(key);
    this.inFlight.delete(key);
    this.deleteNominated(key);
  }

  /** Takes the next pod, or undefined when the queue is empty. */
  tryPop(): QueuedPodInfo | undefined {
    const q = this.activeQ.pop();
    if (!q) return undefined;
    q.attempts++;
    this.schedulingCycle++;
    this.inFlight.set(q.info.key, q);
    return q;
  }

  /** Waits for the next pod; resolves undefined once the queue is closed. */
  pop(): Promise<QueuedPodInfo | undefined> {
    const q = this.tryPop();
    if (q || this.closed) return Promise.resolve(q);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    while (this.waiters.length && this.activeQ.size) this.waiters.shift()!(this.tryPop());
  }

  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w(undefined);
  }

  /** The cycle of a popped pod ended (bound or given up on). */
  done(key: string): void { this.inFlight.delete(key); }

  /**
   * A popped pod did not fit (or failed). It waits in unschedulable for a helpful event, or in
   * backoff if a move request came in while it was being scheduled or the failure was an error.
   */
  addUnschedulable(q: QueuedPodInfo, podSchedulingCycle: number, error = false): void {
    const key = q.info.key;
    if (!this.inFlight.has(key) && this.has(key)) return;
    this.inFlight.delete(key);
    q.timestamp = this.now();
    if (error || this.moveRequestCycle >= podSchedulingCycle || !q.unschedulablePlugins.size) this.backoffQ.push(q);
    else this.unschedulable.set(key, q);
  }

  /** Moves backoff pods whose backoff expired to activeQ (Kubernetes runs this every second). */
  flushBackoffCompleted(): void {
    for (;;) {
      const q = this.backoffQ.peek();
      if (!q || this.isBackingOff(q)) break;
      this.backoffQ.pop();
      this.activeQ.push(q);
    }
    this.wake();
  }

  /** Moves pods that stayed unschedulable too long (Kubernetes runs this every 30 s). */
  flushUnschedulableLeftover(): void {
    const now = this.now();
    const stale = [...this.unschedulable.values()].filter((q) => !q.gated && now - q.timestamp >= this.maxInUnschedulable);
    for (const q of stale) this.requeue(q);
    this.wake();
  }

  private requeue(q: QueuedPodInfo): void {
    this.unschedulable.delete(q.info.key);
    if (this.isBackingOff(q)) this.backoffQ.push(q); else this.activeQ.push(q);
  }

  /** A cluster event happened: unschedulable pods it may help go back to active (or backoff). */
  moveAllToActiveOrBackoff(event: ClusterEvent, filter?: (q: QueuedPodInfo) => boolean): number {
    let moved = 0;
    for (const q of [...this.unschedulable.values()]) {
      if (q.gated) continue;
      if (filter && !filter(q)) continue;
      if (q.unschedulablePlugins.size && this.opts.helps && !this.opts.helps(q, event)) continue;
      this.requeue(q);
      moved++;
    }
    this.moveRequestCycle = this.schedulingCycle;
    this.wake();
    return moved;
  }

  // ---- nominated pods (preemption) ----

  addNominated(info: PodInfo, nodeName: string): void {
    this.deleteNominated(info.key);
    // Arrays, replaced rather than mutated: filters read them on every node evaluation.
    this.nominated.set(nodeName, [...(this.nominated.get(nodeName) ?? []), info]);
    this.nominatedNodeOf.set(info.key, nodeName);
  }

  deleteNominated(key: string): void {
    const node = this.nominatedNodeOf.get(key);
    if (node === undefined) return;
    this.nominatedNodeOf.delete(key);
    const rest = (this.nominated.get(node) ?? []).filter((p) => p.key !== key);
    if (rest.length) this.nominated.set(node, rest); else this.nominated.delete(node);
  }

  nominatedPodsForNode(nodeName: string): readonly PodInfo[] {
    if (!this.nominated.size) return NONE;
    return this.nominated.get(nodeName) ?? NONE;
  }

  // ---- reporting ----

  counts(): { active: number; backoff: number; unschedulable: number } {
    return { active: this.activeQ.size + this.inFlight.size, backoff: this.backoffQ.size, unschedulable: this.unschedulable.size };
  }

  list(): { q: QueuedPodInfo; queue: QueueName }[] {
    return [
      ...[...this.activeQ.values(), ...this.inFlight.values()].map((q) => ({ q, queue: 'active' as const })),
      ...this.backoffQ.values().map((q) => ({ q, queue: 'backoff' as const })),
      ...[...this.unschedulable.values()].map((q) => ({ q, queue: 'unschedulable' as const })),
    ];
  }
}
