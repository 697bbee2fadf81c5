// The sync loop: merges what should run (PodConfig updates from the Store and static sources)
// with what happens (runtime container events — the PLEG equivalent —, probe results) and time
// (a periodic resync, and requeues a sync asks for, e.g. when a crash-loop back-off ends), and
// hands each pod to its pod worker.
import type { core } from '@berth/api';
import type { Clock, Timer } from '../clock';
import type { ProbeUpdate } from '../probes/manager';
import type { PodConfig, PodUpdate } from './pod-config';
import { PodWorkers } from './pod-workers';

export type SyncReason = 'ADD' | 'UPDATE' | 'DELETE' | 'pleg' | 'probe' | 'resync' | 'requeue';

export interface SyncWork {
  pod: core.Pod;
  reason: SyncReason;
  /** The pod was removed from its source: tear it down. */
  deleted: boolean;
  /** When the loop handed the work to the pod's worker (ms): the wait for a worker is admission time. */
  queuedAt?: number;
}

/** A container life-cycle event from the runtime (RuntimeService.Events). */
export interface RuntimeEvent {
  podUid: string;
  containerId: string;
  type: 'created' | 'started' | 'exited' | 'deleted';
}

export interface SyncResult {
  /** Sync this pod again after this long (back-off expiry, pending probe...). */
  requeueAfterMs?: number;
}

export interface SyncLoopOptions {
  clock: Clock;
  config: PodConfig;
  syncPod: (work: SyncWork) => Promise<SyncResult | void>;
  runtimeEvents?: AsyncIterable<RuntimeEvent>;
  probeUpdates?: AsyncIterable<ProbeUpdate>;
  /** Every pod is synced at least this often (kubelet's syncFrequency: 1 min). */
  syncFrequencyMs?: number;
  /** How often the loop looks for pods due (1 s). */
  tickMs?: number;
  maxParallel?: number;
  /** A sync that threw is tried again after this long (2 s). */
  retryAfterErrorMs?: number;
  onError?: (uid: string, e: unknown) => void;
}

export class SyncLoop {
  readonly workers: PodWorkers<SyncWork>;
  private readonly pods = new Map<string, core.Pod>();
  private readonly deleted = new Set<string>();
  private readonly due = new Map<string, number>();
  /** Deleted pods whose tear-down failed: retried with the same pod. */
  private readonly deletedRetry = new Map<string, core.Pod>();
  private timer?: Timer;
  private stopped = false;
  private readonly pumps: Promise<void>[] = [];

  constructor(private readonly opts: SyncLoopOptions) {
    this.workers = new PodWorkers<SyncWork>(async (item) => {
      let r: SyncResult | void;
      try {
        r = await opts.syncPod(item.data);
      } catch (e) {
        // A failed sync (runtime or Store unreachable...) is tried again soon, not only at the
        // next resync or event.
        if (!item.data.deleted || this.deleted.has(item.uid)) this.due.set(item.uid, opts.clock.now() + (opts.retryAfterErrorMs ?? 2000));
        if (item.data.deleted) this.deletedRetry.set(item.uid, item.data.pod);
        throw e;
      }
      if (item.data.deleted) this.deletedRetry.delete(item.uid);
      const now = opts.clock.now();
      if (item.data.deleted) {
        this.due.delete(item.uid);
        this.pods.delete(item.uid);
        return;
      }
      const every = now + (opts.syncFrequencyMs ?? 60_000);
      this.due.set(item.uid, r && r.requeueAfterMs !== undefined ? Math.min(every, now + r.requeueAfterMs) : every);
    }, opts.maxParallel ?? 16, opts.onError);
  }

  start(): void {
    this.pumps.push(this.consume(this.opts.config.updates, (u) => this.onConfig(u)));
    if (this.opts.runtimeEvents) this.pumps.push(this.consume(this.opts.runtimeEvents, (e) => this.dispatch(e.podUid, 'pleg')));
    if (this.opts.probeUpdates) this.pumps.push(this.consume(this.opts.probeUpdates, (u) => this.dispatch(u.podUid, 'probe')));
    this.schedule();
  }

  private async consume<T>(src: AsyncIterable<T>, fn: (v: T) => void): Promise<void> {
    for await (const v of src) {
      if (this.stopped) return;
      fn(v);
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.opts.clock.setTimeout(() => {
      this.tick();
      this.schedule();
    }, this.opts.tickMs ?? 1000);
  }

  private tick(): void {
    const now = this.opts.clock.now();
    for (const [uid, at] of this.due) {
      if (at > now || this.workers.isBusy(uid)) continue;
      this.due.delete(uid);
      this.dispatch(uid, 'resync');
    }
    // Housekeeping: workers of pods that are gone and idle.
    for (const uid of this.workers.known()) if (!this.pods.has(uid)) this.workers.forget(uid);
  }

  private onConfig(u: PodUpdate): void {
    const uid = u.pod.metadata!.uid;
    if (u.op === 'DELETE') {
      this.deleted.add(uid);
      this.workers.update(uid, { pod: u.pod, reason: 'DELETE', deleted: true });
      return;
    }
    // A graceful delete arrives as an UPDATE with deletionTimestamp: the worker terminates it.
    this.deleted.delete(uid);
    this.pods.set(uid, u.pod);
    this.workers.update(uid, { pod: u.pod, reason: u.op, deleted: false, queuedAt: this.opts.clock.now() });
  }

  private dispatch(uid: string, reason: SyncReason): void {
    const gone = this.deletedRetry.get(uid);
    if (gone && this.deleted.has(uid)) {
      this.workers.update(uid, { pod: gone, reason: 'DELETE', deleted: true });
      return;
    }
    const pod = this.pods.get(uid);
    if (!pod || this.deleted.has(uid)) return; // not ours (or already going away)
    this.workers.update(uid, { pod, reason, deleted: false });
  }

  /** Pods the loop currently runs. */
  running(): core.Pod[] {
    return [...this.pods.values()];
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }
}
