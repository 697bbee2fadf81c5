// The probe manager: one worker per (pod, container, probe kind), probing every periodSeconds
// after initialDelaySeconds, turning attempts into a result only after successThreshold /
// failureThreshold consecutive attempts agree, with the startup probe gating liveness and
// readiness. Changes go out on a result channel (what the pod workers and the status manager
// consume); periods run on a Clock so tests drive them with a fake one.
import type { core } from '@berth/api';
import type { Clock, Timer } from '../clock';
import { runProbe, type ContainerExec, type ProbeOutcome, type ProbeResult } from './prober';

export type ProbeKind = 'liveness' | 'readiness' | 'startup';

export interface ProbeUpdate {
  podUid: string;
  container: string;
  containerId: string;
  kind: ProbeKind;
  result: 'success' | 'failure';
  output: string;
}

/** What the manager knows of a container: set by the sync loop from runtime events. */
export interface ContainerRunState {
  id: string;
  running: boolean;
  /** ms since epoch. */
  startedAt: number;
}

type Runner = (probe: core.Probe, target: { podIP: string; containerId: string; container: core.Container }, field: string) => Promise<ProbeOutcome>;

/** An unbounded FIFO that can be consumed with for-await and closed. */
export class ResultChannel<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiters: ((r: IteratorResult<T>) => void)[] = [];
  private closed = false;

  push(v: T): void {
    if (this.closed) return;
    const w = this.waiters.shift();
    if (w) w({ value: v, done: false });
    else this.items.push(v);
  }
  close(): void {
    this.closed = true;
    for (const w of this.waiters) w({ value: undefined as never, done: true });
    this.waiters = [];
  }
  /** Takes what is queued now without waiting. */
  drain(): T[] {
    return this.items.splice(0);
  }
  next(): Promise<IteratorResult<T>> {
    if (this.items.length) return Promise.resolve({ value: this.items.shift()!, done: false });
    if (this.closed) return Promise.resolve({ value: undefined as never, done: true });
    return new Promise((r) => this.waiters.push(r));
  }
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return { next: () => this.next() };
  }
}

interface WorkerKey {
  podUid: string;
  container: string;
  kind: ProbeKind;
}

class ProbeWorker {
  private timer?: Timer;
  private stopped = false;
  private inFlight = false;
  /** Published result; liveness starts successful, readiness failed, startup unknown. */
  result: ProbeResult;
  private lastAttempt: ProbeResult = 'unknown';
  private run = 0;
  /** After a liveness/startup failure, hold until the container is replaced (new id). */
  private onHoldFor?: string;
  private lastContainerId?: string;
  /** The container instance `result` was established for. */
  private resultContainerId?: string;

  constructor(
    private readonly mgr: ProbeManager,
    readonly key: WorkerKey,
    private readonly pod: () => { podIP: string },
    readonly container: core.Container,
    readonly probe: core.Probe,
  ) {
    this.result = key.kind === 'liveness' ? 'success' : key.kind === 'readiness' ? 'failure' : 'unknown';
  }

  /** The result for a given container instance: a new instance starts from the kind's default. */
  resultFor(containerId: string | undefined): ProbeResult {
    if (containerId !== undefined && containerId === this.resultContainerId) return this.result;
    return this.key.kind === 'liveness' ? 'success' : this.key.kind === 'readiness' ? 'failure' : 'unknown';
  }

  get periodMs(): number {
    return (this.probe.periodSeconds > 0 ? this.probe.periodSeconds : 10) * 1000;
  }

  start(): void {
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = this.mgr.clock.setTimeout(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    // One attempt at a time: a slow probe delays the next period instead of piling up.
    if (!this.inFlight) {
      this.inFlight = true;
      this.mgr.attemptStarted();
      try {
        await this.attempt();
      } finally {
        this.inFlight = false;
        this.mgr.attemptEnded();
      }
    }
    this.schedule(this.periodMs);
  }

  private resetFor(containerId: string | undefined): void {
    this.lastContainerId = containerId;
    this.resultContainerId = containerId;
    this.run = 0;
    this.lastAttempt = 'unknown';
    this.result = this.key.kind === 'liveness' ? 'success' : this.key.kind === 'readiness' ? 'failure' : 'unknown';
  }

  private async attempt(): Promise<void> {
    const st = this.mgr.containerState(this.key.podUid, this.key.container);
    if (!st || !st.running) {
      // Not running: readiness is false, nothing else to say; start over when it comes back.
      if (this.key.kind === 'readiness' && this.result !== 'failure' && st) this.publish('failure', 'container is not running', st.id);
      if (st?.id !== this.lastContainerId) this.resetFor(st?.id);
      return;
    }
    if (st.id !== this.lastContainerId) this.resetFor(st.id);
    if (this.onHoldFor === st.id) return;
    const started = this.mgr.isStarted(this.key.podUid, this.key.container);
    if (this.key.kind === 'startup' && started) return;
    if (this.key.kind !== 'startup' && !started) return;
    if (this.mgr.clock.now() - st.startedAt < this.probe.initialDelaySeconds * 1000) return;

    const out = await this.mgr.runner(this.probe, { podIP: this.pod().podIP, containerId: st.id, container: this.container }, `${this.key.kind}Probe`);
    if (this.stopped) return;
    if (out.result === 'unknown') return; // neither counts towards a threshold
    if (out.result === this.lastAttempt) this.run++;
    else {
      this.lastAttempt = out.result;
      this.run = 1;
    }
    const successThreshold = this.probe.successThreshold > 0 ? this.probe.successThreshold : 1;
    const failureThreshold = this.probe.failureThreshold > 0 ? this.probe.failureThreshold : 3;
    if (out.result === 'failure' && this.run < failureThreshold) return;
    if (out.result === 'success' && this.run < successThreshold) return;
    if (out.result !== this.result) this.publish(out.result, out.output, st.id);
    if (out.result === 'failure' && this.key.kind !== 'readiness') {
      // The container will be killed: stop probing it, and let the next one start clean.
      this.onHoldFor = st.id;
      this.run = 0;
    }
  }

  private publish(result: 'success' | 'failure', output: string, containerId: string): void {
    this.result = result;
    this.resultContainerId = containerId;
    this.mgr.emit({ ...this.key, containerId, result, output });
  }
}

export interface ProbeManagerOptions {
  clock: Clock;
  exec: ContainerExec;
  /** Replaces the probe runner (a seam for pure-logic tests of the thresholds). */
  runner?: Runner;
}

export class ProbeManager {
  readonly clock: Clock;
  readonly runner: Runner;
  readonly updates = new ResultChannel<ProbeUpdate>();
  private readonly workers = new Map<string, ProbeWorker>();
  private readonly states = new Map<string, ContainerRunState>();
  private readonly pods = new Map<string, { podIP: string; startupProbes: Set<string> }>();

  constructor(opts: ProbeManagerOptions) {
    this.clock = opts.clock;
    this.runner = opts.runner ?? ((probe, target, field) => runProbe(probe, target, opts.exec, field));
  }

  private static id(k: WorkerKey): string {
    return `${k.podUid}/${k.container}/${k.kind}`;
  }

  /** Starts workers for every probe of the pod's containers (and sidecars). Idempotent. */
  addPod(pod: core.Pod, podIP = ''): void {
    const uid = pod.metadata?.uid;
    if (!uid || !pod.spec) throw new TypeError('pod.metadata.uid and pod.spec: required to probe a pod');
    const entry = this.pods.get(uid) ?? { podIP, startupProbes: new Set<string>() };
    if (podIP) entry.podIP = podIP;
    this.pods.set(uid, entry);
    const containers = [...pod.spec.initContainers.filter((c) => c.restartPolicy === 'Always'), ...pod.spec.containers];
    for (const c of containers) {
      const probes: [ProbeKind, core.Probe | undefined][] = [['startup', c.startupProbe], ['liveness', c.livenessProbe], ['readiness', c.readinessProbe]];
      for (const [kind, probe] of probes) {
        if (!probe) continue;
        if (kind === 'startup') entry.startupProbes.add(c.name);
        const key = { podUid: uid, container: c.name, kind };
        const id = ProbeManager.id(key);
        if (this.workers.has(id)) continue;
        const w = new ProbeWorker(this, key, () => this.pods.get(uid) ?? { podIP: '' }, c, probe);
        this.workers.set(id, w);
        w.start();
      }
    }
  }

  setPodIP(podUid: string, ip: string): void {
    const p = this.pods.get(podUid);
    if (p) p.podIP = ip;
  }

  removePod(podUid: string): void {
    for (const [id, w] of this.workers) if (w.key.podUid === podUid) { w.stop(); this.workers.delete(id); }
    for (const k of this.states.keys()) if (k.startsWith(`${podUid}/`)) this.states.delete(k);
    this.pods.delete(podUid);
  }

  setContainerState(podUid: string, container: string, st: ContainerRunState | undefined): void {
    if (st) this.states.set(`${podUid}/${container}`, st);
    else this.states.delete(`${podUid}/${container}`);
  }

  containerState(podUid: string, container: string): ContainerRunState | undefined {
    return this.states.get(`${podUid}/${container}`);
  }

  private result(podUid: string, container: string, kind: ProbeKind): ProbeResult | undefined {
    return this.workers.get(ProbeManager.id({ podUid, container, kind }))?.resultFor(this.containerState(podUid, container)?.id);
  }

  /** Started: the startup probe succeeded, or there is none and the container runs. */
  isStarted(podUid: string, container: string): boolean {
    const st = this.containerState(podUid, container);
    if (!st?.running) return false;
    const r = this.result(podUid, container, 'startup');
    return r === undefined || r === 'success';
  }

  /** Ready: running, started, and the readiness probe (if any) succeeded. */
  isReady(podUid: string, container: string): boolean {
    if (!this.isStarted(podUid, container)) return false;
    const r = this.result(podUid, container, 'readiness');
    return r === undefined || r === 'success';
  }

  /** Liveness (or startup) failed for the current container instance: kill and restart it. */
  livenessFailed(podUid: string): Set<string> {
    const out = new Set<string>();
    for (const w of this.workers.values()) {
      if (w.key.podUid !== podUid || w.key.kind === 'readiness') continue;
      if (w.resultFor(this.containerState(podUid, w.key.container)?.id) === 'failure') out.add(w.key.container);
    }
    return out;
  }

  private inFlight = 0;
  private settledWaiters: (() => void)[] = [];
  attemptStarted(): void {
    this.inFlight++;
  }
  attemptEnded(): void {
    if (--this.inFlight === 0) for (const w of this.settledWaiters.splice(0)) w();
  }
  /** Resolves once no probe attempt is in flight (tests advance a fake clock, then wait here). */
  settled(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.settledWaiters.push(r));
  }

  emit(u: ProbeUpdate): void {
    this.updates.push(u);
  }

  close(): void {
    for (const w of this.workers.values()) w.stop();
    this.workers.clear();
    this.updates.close();
  }
}
