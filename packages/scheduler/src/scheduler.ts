// The scheduler: cluster events feed the cache and the queue; one pod at a time is popped,
// run through its profile's framework (schedulePod), assumed in the cache, and bound
// asynchronously, so the next pod's decision already counts it.
import type { core } from '@berth/api';
import type { ClusterEvent, Handle, QueuedPodInfo } from './framework/interfaces';
import { CycleState } from './framework/interfaces';
import { SchedulerCache } from './cache';
import type { ClusterEventHandler, ClusterWriter, WatchType } from './cluster';
import { loadConfigFile, resolveConfig, type SchedulerConfig } from './config';
import { Extender } from './extender';
import { Framework } from './framework/framework';
import { inTreeRegistry, type Registry } from './framework/registry';
import { FitError, schedulePod } from './framework/schedule';
import { Code } from './framework/status';
import { PodInfo, type NodeInfo } from './framework/types';
import { SchedulingQueue } from './queue';

export interface SchedulerOptions {
  config?: SchedulerConfig;
  registry?: Registry;
  now?: () => number;
  random?: () => number;
  /** Called with internal errors worth logging. */
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export interface SchedulerCounters { scheduled: number; unschedulable: number; errors: number; attempts: number }

/** Time a scheduling attempt took, for the benchmark's latency percentiles. */
export type AttemptObserver = (pod: PodInfo, result: 'scheduled' | 'unschedulable' | 'error', ms: number) => void;

export class Scheduler implements ClusterEventHandler {
  readonly cache: SchedulerCache;
  readonly queue: SchedulingQueue;
  readonly profiles = new Map<string, Framework>();
  readonly extenders: Extender[];
  readonly counters: SchedulerCounters = { scheduled: 0, unschedulable: 0, errors: 0, attempts: 0 };
  readonly config: SchedulerConfig;
  readonly startTime = new Date();
  observer?: AttemptObserver;
  private nextStartIndex = 0;
  private running = false;
  private readonly binding = new Set<Promise<void>>();
  private timers: NodeJS.Timeout[] = [];
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void;

  constructor(readonly writer: ClusterWriter, opts: SchedulerOptions = {}) {
    this.config = opts.config ?? resolveConfig({});
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.log = opts.log ?? (() => undefined);
    this.cache = new SchedulerCache({ now: this.now });
    const registry = opts.registry ?? inTreeRegistry();
    for (const p of this.config.profiles) this.profiles.set(p.schedulerName, new Framework(p, registry, this.handleFor(() => this.profiles.get(p.schedulerName)!)));
    const sorts = new Set([...this.profiles.values()].map((f) => f.queueSort.name));
    if (sorts.size > 1) throw new Error(`profiles: all profiles must use the same queueSort plugin, got ${[...sorts].join(', ')}`);
    const first = [...this.profiles.values()][0];
    this.queue = new SchedulingQueue({
      now: this.now,
      initialBackoffMs: this.config.podInitialBackoffMs,
      maxBackoffMs: this.config.podMaxBackoffMs,
      less: (a, b) => first.queueSort.less(a, b),
      preEnqueue: (pod) => this.profiles.get(pod.schedulerName)?.runPreEnqueue(pod) ?? null,
      helps: (q, event) => {
        const fwk = this.profiles.get(q.info.schedulerName);
        if (!fwk) return false;
        for (const p of q.unschedulablePlugins) if (!fwk.events.has(p) || fwk.events.get(p)!.has(event)) return true;
        return false;
      },
    });
    this.extenders = this.config.extenders.map((e) => new Extender(e));
  }

  static fromFile(file: string, writer: ClusterWriter, opts: SchedulerOptions = {}): Scheduler {
    return new Scheduler(writer, { ...opts, config: loadConfigFile(file) });
  }

  /** The framework Handle of one profile: the snapshot, the nominator and the cluster writes. */
  handleFor(fwk: () => Framework, cache?: SchedulerCache, dry = false): Handle {
    const self = this;
    return {
      get snapshot() { return cache ?? self.cache; },
      nominatedPodsForNode: (n) => (dry ? [] : this.queue.nominatedPodsForNode(n)),
      bindPod: (pod, node) => this.writer.bind(pod.pod, node),
      deletePod: async (pod, reason) => {
        this.writer.recordEvent(pod.pod, 'Normal', 'Preempted', reason);
        await this.writer.deletePod(pod.pod, reason);
      },
      clearNomination: async (pod) => {
        this.queue.deleteNominated(pod.key);
        await this.writer.updatePodStatus(pod.pod, { nominatedNodeName: '' });
      },
      runFilterPluginsWithNominatedPods: (s, pod, node) => fwk().runFilterWithNominatedPods(s, pod, node),
      runPreFilterExtensionAddPod: (s, pod, add, node) => fwk().runPreFilterAddPod(s, pod, add, node),
      runPreFilterExtensionRemovePod: (s, pod, rm, node) => fwk().runPreFilterRemovePod(s, pod, rm, node),
      now: () => this.now(),
      random: () => this.random(),
    };
  }

  /** Whether this scheduler places the pod (a profile is named by its spec.schedulerName). */
  responsibleFor(pod: core.Pod): boolean {
    return this.profiles.has(pod.spec?.schedulerName || 'default-scheduler');
  }

  // ---- cluster events ----

  onNamespace(type: WatchType, ns: core.Namespace): void {
    if (type === 'DELETED') this.cache.removeNamespace(ns.metadata?.name ?? '');
    else this.cache.setNamespace(ns);
    this.queue.moveAllToActiveOrBackoff('NamespaceChange');
  }

  onNode(type: WatchType, node: core.Node): void {
    const name = node.metadata?.name ?? '';
    if (type === 'DELETED') { this.cache.removeNode(name); return; }
    const old = this.cache.get(name);
    const before = old ? { labels: JSON.stringify(old.labels), taints: JSON.stringify(old.taints), unsched: old.unschedulable, alloc: JSON.stringify(old.node?.status?.allocatable), images: old.images.size } : undefined;
    const ni = this.cache.addOrUpdateNode(node);
    const events: ClusterEvent[] = [];
    if (!before) events.push('NodeAdd');
    else {
      if (before.labels !== JSON.stringify(ni.labels)) events.push('NodeLabelChange');
      if (before.taints !== JSON.stringify(ni.taints)) events.push('NodeTaintChange');
      if (before.unsched !== ni.unschedulable) events.push('NodeSpecUnschedulableChange');
      if (before.alloc !== JSON.stringify(node.status?.allocatable)) events.push('NodeAllocatableChange');
      if (before.images !== ni.images.size) events.push('NodeImageChange');
    }
    for (const e of events) this.queue.moveAllToActiveOrBackoff(e);
  }

  onPod(type: WatchType, pod: core.Pod): void {
    const key = `${pod.metadata?.namespace || 'default'}/${pod.metadata?.name ?? ''}`;
    if (type === 'DELETED') {
      this.queue.delete(key);
      if (this.cache.placedPod(key)) {
        this.cache.removePod(key);
        this.queue.moveAllToActiveOrBackoff('AssignedPodDelete');
      }
      return;
    }
    if (pod.spec?.nodeName) {
      const known = this.cache.placedPod(key);
      const wasAssumed = this.cache.isAssumed(key);
      this.cache.addOrUpdatePod(pod);
      if (this.queue.where(key) !== 'inFlight') this.queue.delete(key);
      this.queue.deleteNominated(key);
      if (!known) this.queue.moveAllToActiveOrBackoff('AssignedPodAdd');
      else if (!wasAssumed) this.queue.moveAllToActiveOrBackoff('AssignedPodUpdate');
      return;
    }
    if (!this.responsibleFor(pod) || pod.metadata?.deletionTimestamp) return;
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return;
    let info: PodInfo;
    try {
      info = new PodInfo(pod);
    } catch (err) {
      // Invalid constraints: tell the user through an event; the scheduler keeps serving the rest.
      this.queue.delete(key);
      this.writer.recordEvent(pod, 'Warning', 'FailedScheduling', `invalid pod: ${(err as Error).message}`);
      this.counters.errors++;
      return;
    }
    if (type === 'ADDED' || !this.queue.has(key)) this.queue.add(info);
    else this.queue.update(info);
  }

  // ---- the loop ----

  /** Starts popping and scheduling pods until stop(). */
  run(): void {
    if (this.running) return;
    this.running = true;
    this.timers.push(setInterval(() => this.queue.flushBackoffCompleted(), 1000));
    this.timers.push(setInterval(() => this.queue.flushUnschedulableLeftover(), 30_000));
    void (async () => {
      while (this.running) {
        const q = await this.queue.pop();
        if (!q) break;
        try {
          await this.scheduleOne(q);
        } catch (err) {
          // One pod's failure must not stop the loop.
          this.log('scheduling cycle failed', { pod: q.info.key, err: (err as Error).message });
          this.handleError(q, `scheduling: ${(err as Error).message}`, this.queue.schedulingCycle);
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.queue.close();
    await Promise.allSettled([...this.binding]);
    for (const e of this.extenders) e.close();
  }

  /** Waits for the binding cycles in flight. */
  async drainBindings(): Promise<void> { while (this.binding.size) await Promise.allSettled([...this.binding]); }

  /** One scheduling cycle for a popped pod. */
  async scheduleOne(q: QueuedPodInfo): Promise<void> {
    const pod = q.info;
    const fwk = this.profiles.get(pod.schedulerName);
    const cycle = this.queue.schedulingCycle;
    if (!fwk || this.cache.placedPod(pod.key)) { this.queue.done(pod.key); return; }
    const start = performance.now();
    this.counters.attempts++;
    const state = new CycleState();
    let host: string;
    try {
      const r = await schedulePod(fwk, state, pod, this.cache, { extenders: this.extenders, startIndex: this.nextStartIndex, random: this.random });
      if (this.cache.nodeCount()) this.nextStartIndex = (this.nextStartIndex + r.processed) % this.cache.nodeCount();
      host = r.suggestedHost;
    } catch (err) {
      if (err instanceof FitError) await this.handleFitError(fwk, state, q, err, cycle);
      else this.handleError(q, `scheduling: ${(err as Error).message}`, cycle);
      this.observer?.(pod, err instanceof FitError ? 'unschedulable' : 'error', performance.now() - start);
      return;
    }
    // The pod may have been bound or deleted by someone else while we decided.
    if (this.cache.placedPod(pod.key) || !this.queue.has(pod.key)) { this.queue.done(pod.key); return; }
    // Assume: the cache counts the pod on the node before the bind is observed.
    const assumed = this.cache.assumePod(pod, host);
    const reserve = fwk.runReserve(state, assumed, host);
    if (reserve) {
      fwk.runUnreserve(state, assumed, host);
      this.cache.forgetPod(pod.key);
      this.handleError(q, `running Reserve plugin ${reserve.plugin}: ${reserve.message}`, cycle);
      return;
    }
    this.observer?.(pod, 'scheduled', performance.now() - start);
    const p = this.bindingCycle(fwk, state, q, assumed, host, cycle).finally(() => this.binding.delete(p));
    this.binding.add(p);
  }

  private async bindingCycle(fwk: Framework, state: CycleState, q: QueuedPodInfo, pod: PodInfo, host: string, cycle: number): Promise<void> {
    let failure: string | undefined;
    try {
      const permit = await fwk.runPermit(state, pod, host);
      if (permit) failure = `running Permit plugin ${permit.plugin}: ${permit.message}`;
      if (!failure) {
        const pre = await fwk.runPreBind(state, pod, host);
        if (pre) failure = `running PreBind plugin ${pre.plugin}: ${pre.message}`;
      }
      if (!failure) {
        const binder = this.extenders.find((e) => e.config.bindVerb && e.isInterested(pod));
        if (binder) await binder.bind(pod, host);
        else {
          const b = await fwk.runBind(state, pod, host);
          if (b) failure = `Binding rejected: ${b.message}`;
        }
      }
    } catch (err) {
      failure = `Binding rejected: ${(err as Error).message}`;
    }
    if (failure) {
      fwk.runUnreserve(state, pod, host);
      this.cache.forgetPod(pod.key);
      // The assumed pod's resources are free again: others may fit now.
      this.queue.moveAllToActiveOrBackoff('AssignedPodDelete');
      this.handleError(q, failure, cycle);
      return;
    }
    this.cache.finishBinding(pod.key);
    this.queue.done(pod.key);
    this.queue.deleteNominated(pod.key);
    fwk.runPostBind(state, pod, host);
    this.counters.scheduled++;
    this.writer.recordEvent(q.info.pod, 'Normal', 'Scheduled', `Successfully assigned ${pod.key} to ${host}`);
  }

  private async handleFitError(fwk: Framework, state: CycleState, q: QueuedPodInfo, err: FitError, cycle: number): Promise<void> {
    const pod = q.info;
    let nominated: string | undefined;
    if (fwk.postFilter.length && err.numAllNodes > 0) {
      try {
        const r = await fwk.runPostFilter(state, pod, err.statuses, false);
        if (r?.message) err.postFilterMsg = r.message;
        if (r?.status.code === Code.Success && r.nominatedNodeName) nominated = r.nominatedNodeName;
      } catch (e) {
        this.log('preemption failed', { pod: pod.key, err: (e as Error).message });
      }
    }
    const message = err.summary();
    q.unschedulablePlugins = err.unschedulablePlugins();
    q.lastFailure = message;
    this.counters.unschedulable++;
    this.writer.recordEvent(pod.pod, 'Warning', 'FailedScheduling', message);
    const patch = {
      condition: { type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message, lastProbeTime: '', lastTransitionTime: new Date(this.now()).toISOString() },
      ...(nominated ? { nominatedNodeName: nominated } : {}),
    };
    if (nominated) this.queue.addNominated(pod, nominated);
    this.queue.addUnschedulable(q, cycle);
    await this.writer.updatePodStatus(pod.pod, patch).catch((e: Error) => this.log('updating pod status failed', { pod: pod.key, err: e.message }));
  }

  private handleError(q: QueuedPodInfo, message: string, cycle: number): void {
    this.counters.errors++;
    q.lastFailure = message;
    q.unschedulablePlugins = new Set();
    this.writer.recordEvent(q.info.pod, 'Warning', 'FailedScheduling', message);
    this.queue.addUnschedulable(q, cycle, true);
  }

  /** Schedules until the queue has nothing active (tests and the benchmark drive it this way). */
  async scheduleUntilIdle(): Promise<void> {
    for (;;) {
      const q = this.queue.tryPop();
      if (!q) {
        if (!this.binding.size) return;
        await this.drainBindings();
        await new Promise((r) => setImmediate(r));
        continue;
      }
      await this.scheduleOne(q);
    }
  }

  nodeInfo(name: string): NodeInfo | undefined { return this.cache.get(name); }
}
