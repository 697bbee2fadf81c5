// The status manager: pod workers hand it the status they computed; it writes to the Store only
// what changed, in batches, re-reading and retrying on resourceVersion conflicts, and merging
// with what the Store holds so that a status never goes backwards (also after an agent restart).
import type { core } from '@berth/api';
import { ConflictError, NotFoundError } from '@berth/common';
import type { Clock, Timer } from '../clock';
import type { PodStatusStore } from '../seams';
import { CONFIG_MIRROR_ANNOTATION } from '../sync/pod-config';
import { mergeNoRegress, rfc3339, statusEqual } from './compute';

/** The pod conditions the kubelet owns: another writer's different value for one of them is re-posted. */
export const KUBELET_CONDITIONS = ['Initialized', 'ContainersReady', 'Ready'] as const;

export interface StatusManagerOptions {
  clock: Clock;
  store: PodStatusStore;
  /** Writes are gathered for this long before a batch goes out (default 10 ms). */
  batchMs?: number;
  maxConflictRetries?: number;
  /** Writes in flight at once per batch (default 8). */
  concurrency?: number;
  onError?: (pod: string, err: unknown) => void;
}

interface Pending {
  namespace: string;
  name: string;
  uid: string;
  status: core.PodStatus;
}

const isConflict = (e: unknown) => e instanceof ConflictError || (e as { kind?: string })?.kind === 'Conflict' || (e as { code?: number })?.code === 10;
const isNotFound = (e: unknown) => e instanceof NotFoundError || (e as { kind?: string })?.kind === 'NotFound' || (e as { code?: number })?.code === 5;
/**
 * The Store's Node authorizer forbids a node the status of a pod that is not bound to it: the pod
 * was deleted (its teardown still runs here) or bound elsewhere. Either way the write is not
 * ours to retry; a later change or resync posts again if the pod is still ours.
 */
const isForbidden = (e: unknown) => (e as { kind?: string })?.kind === 'PermissionDenied' || (e as { code?: number })?.code === 7;

export class StatusManager {
  private readonly pending = new Map<string, Pending>();
  /** Last status known to be in the Store, per pod uid. */
  private readonly written = new Map<string, core.PodStatus>();
  /** The pod as last seen in the Store (write result or informer): the first write tries its
   *  resourceVersion directly, and re-reads only on a conflict — one round trip, not two. */
  private readonly latest = new Map<string, core.Pod>();
  /** The status the pod worker last computed, per pod uid: the agent's own view, kept when
   *  someone else (the node lifecycle controller) overwrites it in the Store. */
  private readonly desired = new Map<string, core.PodStatus>();
  /** Pods whose status write is out now, with that status. */
  private readonly inFlight = new Map<string, core.PodStatus>();
  private timer?: Timer;
  /** Retries failed writes on their own, backing off; apart from `timer`, so that new statuses
   *  still go out after `batchMs` while one pod's writes keep failing. */
  private retryTimer?: Timer;
  private flushing?: Promise<void>;
  private readonly batchMs: number;
  private retryMs = 0;
  private closed = false;
  writes = 0;

  constructor(private readonly opts: StatusManagerOptions) {
    this.batchMs = opts.batchMs ?? 10;
  }

  /** Seeds what the Store holds (from the informer), so unchanged statuses are not rewritten. */
  observe(pod: core.Pod): void {
    const uid = pod.metadata?.uid;
    if (uid && pod.status) this.written.set(uid, pod.status);
    if (uid && pod.metadata?.resourceVersion) {
      const had = this.latest.get(uid);
      if (!had || Number(had.metadata!.resourceVersion) < Number(pod.metadata.resourceVersion)) this.latest.set(uid, pod);
    }
  }

  /**
   * The newest status of a pod: pending, being written (not what the Store held before: a pod
   * worker must not see its Failed go back to Pending while the write is out), or written.
   */
  current(uid: string): core.PodStatus | undefined {
    return this.pending.get(uid)?.status ?? this.inFlight.get(uid) ?? this.written.get(uid);
  }

  setStatus(pod: core.Pod, status: core.PodStatus): void {
    const meta = pod.metadata;
    if (!meta?.uid || !meta.name) throw new TypeError('pod.metadata.uid and name: required to write a status');
    this.desired.set(meta.uid, status);
    const base = this.written.get(meta.uid);
    if (base && statusEqual(base, status)) {
      this.pending.delete(meta.uid);
      return;
    }
    this.pending.set(meta.uid, { namespace: meta.namespace || 'default', name: meta.name, uid: meta.uid, status });
    if (!this.timer) this.timer = this.opts.clock.setTimeout(() => { this.timer = undefined; void this.flush(); }, this.batchMs);
  }

  /**
   * A pod as the Store has it now (the informer's update): when another writer changed a
   * condition the kubelet owns (the node lifecycle controller's Ready=False while this node was
   * not heard) and the agent's own view says otherwise, the own view is posted again now, as the
   * kubelet's status manager does, instead of at the pod's next resync. Returns whether it did.
   */
  reconcile(pod: core.Pod): boolean {
    const meta = pod.metadata;
    if (!meta?.uid || !meta.name || !pod.status) return false;
    const seen = this.latest.get(meta.uid);
    this.observe(pod);
    // A stale event (older than a write of ours) says nothing about the Store now; a pending
    // write goes out anyway.
    if (seen && Number(seen.metadata!.resourceVersion) > Number(meta.resourceVersion)) return false;
    const mine = this.desired.get(meta.uid);
    // A write of ours still on its way (its echo may come after an older one) is not overruled.
    if (!mine || this.pending.has(meta.uid) || this.inFlight.has(meta.uid)) return false;
    const theirs = new Map(pod.status.conditions.map((c) => [c.type, c]));
    const differs = mine.conditions.filter((c) => (KUBELET_CONDITIONS as readonly string[]).includes(c.type) && theirs.get(c.type) && theirs.get(c.type)!.status !== c.status);
    if (!differs.length) return false;
    // The conditions flip back in the Store now: that is their transition time.
    const now = rfc3339(this.opts.clock.now());
    const status = { ...mine, conditions: mine.conditions.map((c) => (differs.includes(c) ? { ...c, lastTransitionTime: now } : c)) };
    this.setStatus(pod, status);
    return true;
  }

  forget(uid: string): void {
    this.desired.delete(uid);
    this.pending.delete(uid);
    this.written.delete(uid);
    this.latest.delete(uid);
  }

  /** Writes everything pending now; resolves when the batch is done. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (!this.pending.size) return;
    const batch = [...this.pending.values()];
    this.pending.clear();
    this.flushing = this.writeAll(batch).finally(() => { this.flushing = undefined; });
    await this.flushing;
  }

  private async writeAll(batch: Pending[]): Promise<void> {
    const n = this.opts.concurrency ?? 8;
    let i = 0;
    const worker = async () => {
      while (i < batch.length) {
        const p = batch[i++];
        this.inFlight.set(p.uid, p.status);
        try {
          await this.writeOne(p);
        } catch (e) {
          // Keep the newest status pending (unless a newer one arrived meanwhile): the next
          // flush tries again, so a Store that is away for a while is caught up later.
          const gone = isNotFound(e) || isForbidden(e);
          if (!gone && !this.pending.has(p.uid)) this.pending.set(p.uid, p);
          this.opts.onError?.(`${p.namespace}/${p.name}`, e);
        } finally {
          this.inFlight.delete(p.uid);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(n, batch.length) }, worker));
    // Failed writes (Store away) are retried on their own, backing off to 10 s, without waiting
    // for the pod to change again.
    if (this.pending.size && !this.retryTimer && !this.closed) {
      this.retryMs = Math.min(this.retryMs ? this.retryMs * 2 : 500, 10_000);
      this.retryTimer = this.opts.clock.setTimeout(() => { this.retryTimer = undefined; void this.flush(); }, this.retryMs);
    } else if (!this.pending.size) this.retryMs = 0;
  }

  private async writeOne(p: Pending): Promise<void> {
    const retries = this.opts.maxConflictRetries ?? 5;
    for (let attempt = 0; ; attempt++) {
      const cached = attempt === 0 ? this.latest.get(p.uid) : undefined;
      const cur = cached ?? (await this.opts.store.getPod(p.namespace, p.name));
      // A static pod's status goes to its mirror pod, which names the static pod's uid.
      const mine = cur && (cur.metadata?.uid === p.uid || cur.metadata?.annotations?.[CONFIG_MIRROR_ANNOTATION] === p.uid);
      if (!cur || !mine) throw new NotFoundError(`pod ${p.namespace}/${p.name} with uid ${p.uid} is gone`);
      const merged = mergeNoRegress(cur.status ?? p.status, p.status);
      if (cur.status && statusEqual(cur.status, merged)) {
        this.written.set(p.uid, cur.status);
        return;
      }
      try {
        const saved = await this.opts.store.updatePodStatus({ ...cur, status: merged });
        this.writes++;
        this.written.set(p.uid, saved.status ?? merged);
        if (saved.metadata?.resourceVersion) this.latest.set(p.uid, saved);
        return;
      } catch (e) {
        if (!isConflict(e) || attempt >= retries) throw e;
      }
    }
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.retryTimer?.cancel();
  }
}
