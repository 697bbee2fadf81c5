// The node lifecycle controller (the health part of kube-controller-manager's nodelifecycle):
//   - follows Nodes and the node Leases (kube-node-lease/<node>) through watches; a node is heard
//     from when its lease's renewTime or its Ready condition's lastHeartbeatTime changes. The time
//     of hearing is this process's own clock, never the kubelet's timestamps, so clock skew
//     between machines cannot make a node look alive or dead;
//   - a node not heard from for the grace period gets Ready/MemoryPressure/DiskPressure/PIDPressure
//     set to Unknown ("Kubelet stopped posting node status."), and the pods bound to it Ready=False
//     (its kubelet sets them Ready again when it is back);
//   - keeps the taints that follow the Ready condition: Unknown -> node.kubernetes.io/unreachable,
//     False -> node.kubernetes.io/not-ready (NoSchedule, and NoExecute with timeAdded), True -> none.
// Evicting pods from NoExecute-tainted nodes (the taint manager) is not done here.
// With several berth-etcd-client running, only the leader of an etcd election acts.
import { core, store } from '@berth/api';
import type { UserInfo } from '@berth/apimachinery';
import { ConflictError, NotFoundError, type Logger } from '@berth/common';
import type { Candidate } from '../recipes';
import type { Registry } from './registry';

const NODE_CONTROLLER: UserInfo = { name: 'system:serviceaccount:kube-system:node-controller', groups: ['system:masters', 'system:authenticated'], authenticator: 'internal' };

export const TAINT_NODE_UNREACHABLE = 'node.kubernetes.io/unreachable';
export const TAINT_NODE_NOT_READY = 'node.kubernetes.io/not-ready';
export const NODE_LEASE_NAMESPACE = 'kube-node-lease';
/** The conditions the kubelet owns and the controller marks Unknown when it goes silent. */
const KUBELET_CONDITIONS = ['Ready', 'MemoryPressure', 'DiskPressure', 'PIDPressure'];

export interface NodeLifecycleOptions {
  logger?: Logger;
  /** How long a node may stay silent before it is marked Unknown (default 40 s). */
  gracePeriodMs?: number;
  /** How often node health is checked (default 5 s). */
  monitorPeriodMs?: number;
  /** A fresh election candidate per campaign; without it this controller always acts. */
  candidate?: () => Candidate;
  /** Who campaigns (shown as the leader's value). */
  identity?: string;
}

interface Health {
  /** Our clock when the node was last heard from. */
  probeMs: number;
  heartbeat: string;
  renewTime: string;
}

/**
 * `p`, or undefined as soon as `signal` aborts. The abort listener goes when `p` settles: the
 * signal lives as long as the controller (a term), and one listener per node and period kept
 * every closure alive (Node's MaxListenersExceededWarning in the test runs).
 */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  p.catch(() => undefined);
  if (signal.aborted) return Promise.resolve(undefined);
  let onAbort!: () => void;
  const aborted = new Promise<undefined>((r) => {
    onAbort = () => r(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([p, aborted]).finally(() => signal.removeEventListener('abort', onAbort));
}

/** RFC3339 with seconds, as Kubernetes writes metav1.Time. */
function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

/**
 * The taints the Ready condition calls for, keeping every other taint and the timeAdded of those
 * already there. Returns undefined when nothing changes.
 */
export function reconcileReadyTaints(taints: core.Taint[], ready: string | undefined, nowMs: number): core.Taint[] | undefined {
  const want = ready === 'False' ? TAINT_NODE_NOT_READY : ready === 'Unknown' ? TAINT_NODE_UNREACHABLE : undefined;
  const ours = (t: core.Taint) => (t.key === TAINT_NODE_UNREACHABLE || t.key === TAINT_NODE_NOT_READY) && (t.effect === 'NoSchedule' || t.effect === 'NoExecute');
  const keep = taints.filter((t) => !ours(t) || t.key === want);
  const next = [...keep];
  if (want) {
    for (const effect of ['NoSchedule', 'NoExecute']) {
      if (!keep.some((t) => t.key === want && t.effect === effect)) next.push(core.Taint.fromPartial({ key: want, effect, timeAdded: effect === 'NoExecute' ? rfc3339(nowMs) : '' }));
    }
  }
  return next.length === taints.length && keep.length === taints.length ? undefined : next;
}

/**
 * The conditions of a node nobody has heard from: kubelet conditions not yet Unknown become
 * Unknown (missing ones are added as never posted). Returns undefined when nothing changes.
 */
export function markUnknown(conditions: core.NodeCondition[], created: string, nowMs: number): core.NodeCondition[] | undefined {
  const now = rfc3339(nowMs);
  let changed = false;
  const next = conditions.map((c) => {
    if (!KUBELET_CONDITIONS.includes(c.type) || c.status === 'Unknown') return c;
    changed = true;
    return { ...c, status: 'Unknown', reason: 'NodeStatusUnknown', message: 'Kubelet stopped posting node status.', lastTransitionTime: now };
  });
  for (const type of KUBELET_CONDITIONS) {
    if (conditions.some((c) => c.type === type)) continue;
    changed = true;
    next.push(core.NodeCondition.fromPartial({ type, status: 'Unknown', reason: 'NodeStatusNeverUpdated', message: 'Kubelet never posted node status.', lastHeartbeatTime: created, lastTransitionTime: now }));
  }
  return changed ? next : undefined;
}

export class NodeLifecycleController {
  private readonly ac = new AbortController();
  private running: Promise<void> | undefined;
  private readonly grace: number;
  private readonly period: number;
  /** Nodes that went Unknown whose pods are still to be marked not Ready. */
  private readonly podsToMark = new Set<string>();

  constructor(private readonly registry: Registry, private readonly o: NodeLifecycleOptions = {}) {
    this.grace = o.gracePeriodMs ?? 40_000;
    this.period = o.monitorPeriodMs ?? 5_000;
  }

  start(): void {
    this.running ??= this.campaign();
  }

  async close(): Promise<void> {
    this.ac.abort();
    await this.running;
  }

  private async campaign(): Promise<void> {
    const signal = this.ac.signal;
    while (!signal.aborted) {
      const candidate = this.o.candidate?.();
      try {
        if (candidate) {
          // With etcd unreachable the candidate may not notice the abort: shutdown never waits on it.
          await untilAborted(candidate.campaign(this.o.identity ?? `pid-${process.pid}`, signal), signal);
          if (signal.aborted) break;
          this.o.logger?.info({ identity: this.o.identity }, 'node lifecycle controller: leading');
        }
        const term = new AbortController();
        const stop = () => term.abort();
        signal.addEventListener('abort', stop, { once: true });
        void candidate?.lost.then((err) => {
          if (!signal.aborted) this.o.logger?.warn({ err: String(err) }, 'node lifecycle controller: leadership lost; campaigning again');
          stop();
        });
        try {
          await this.lead(term.signal);
        } finally {
          signal.removeEventListener('abort', stop);
          term.abort();
        }
      } catch (err) {
        if (!signal.aborted) this.o.logger?.warn({ err: String(err) }, 'node lifecycle controller: election failed; retrying');
      } finally {
        // Resigning at once lets another berth-etcd-client take over without waiting for the TTL.
        if (candidate) await Promise.race([candidate.resign().catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
      }
      if (!signal.aborted) await new Promise((r) => setTimeout(r, 1000));
    }
  }

  /** One term as leader: fresh caches, so every node gets a full grace period from now. */
  private async lead(signal: AbortSignal): Promise<void> {
    const nodes = new Map<string, core.Node>();
    const health = new Map<string, Health>();
    const renewals = new Map<string, string>();
    let wake: (() => void) | undefined;
    let kicked = false;
    const kick = () => { kicked = true; wake?.(); };
    const heard = (name: string, heartbeat: string | undefined, renewTime: string | undefined) => {
      const h = health.get(name);
      if (!h) { health.set(name, { probeMs: Date.now(), heartbeat: heartbeat ?? '', renewTime: renewTime ?? '' }); return; }
      if (heartbeat !== undefined && heartbeat !== h.heartbeat) { h.heartbeat = heartbeat; h.probeMs = Date.now(); }
      if (renewTime !== undefined && renewTime !== h.renewTime) { h.renewTime = renewTime; h.probeMs = Date.now(); }
    };
    const onNode = (type: string, n: core.Node) => {
      const name = n.metadata!.name;
      if (type === 'DELETED') { nodes.delete(name); health.delete(name); return; }
      nodes.set(name, n);
      heard(name, n.status?.conditions.find((c) => c.type === 'Ready')?.lastHeartbeatTime ?? '', renewals.get(name));
      kick();
    };
    const onLease = (type: string, l: core.Lease) => {
      const name = l.metadata!.name;
      if (type === 'DELETED') { renewals.delete(name); return; }
      renewals.set(name, l.spec?.renewTime ?? '');
      if (nodes.has(name)) heard(name, undefined, l.spec?.renewTime ?? '');
    };
    let listedNodes!: () => void;
    const nodesListed = new Promise<void>((r) => { listedNodes = r; });
    let listedLeases!: () => void;
    const leasesListed = new Promise<void>((r) => { listedLeases = r; });
    const follows = [
      this.follow('leases', NODE_LEASE_NAMESPACE, signal, (t, o) => o.lease && onLease(t, o.lease), listedLeases),
      this.follow('nodes', '', signal, (t, o) => o.node && onNode(t, o.node), listedNodes),
    ];
    const aborted = new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    await Promise.race([Promise.all([nodesListed, leasesListed]), aborted]);
    while (!signal.aborted) {
      kicked = false;
      for (const [name, n] of [...nodes]) {
        if (signal.aborted) break;
        try {
          await untilAborted(this.monitor(name, n, health.get(name)), signal);
        } catch (err) {
          if (!signal.aborted) this.o.logger?.warn({ err: String(err), node: name }, 'node lifecycle controller: node update failed; retrying next period');
        }
      }
      if (kicked || signal.aborted) continue;
      await new Promise<void>((r) => {
        // One way out of the wait (the period, a kick or the abort), and its listener goes with it.
        const done = (): void => {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          r();
        };
        const t = setTimeout(done, this.period);
        wake = done;
        signal.addEventListener('abort', done, { once: true });
      });
      wake = undefined;
    }
    await Promise.all(follows);
  }

  private async monitor(name: string, cached: core.Node, h: Health | undefined): Promise<void> {
    const silent = h !== undefined && Date.now() - h.probeMs > this.grace;
    const ready = cached.status?.conditions.find((c) => c.type === 'Ready')?.status;
    if (silent && markUnknown(cached.status?.conditions ?? [], '', 0)) {
      const wasReady = ready === 'True';
      await this.retryOnConflict('nodes', '', name, 'status', (o) => {
        const n = o.node!;
        const next = markUnknown(n.status?.conditions ?? [], n.metadata!.creationTimestamp, Date.now());
        if (!next) return false;
        (n.status ??= core.NodeStatus.fromPartial({})).conditions = next;
        this.o.logger?.warn({ node: name, silentMs: Date.now() - h.probeMs }, 'node lifecycle controller: kubelet stopped posting node status; conditions Unknown');
        return true;
      });
      if (wasReady) this.podsToMark.add(name);
    }
    if (this.podsToMark.has(name)) {
      await this.markPodsNotReady(name);
      this.podsToMark.delete(name);
    }
    const want = silent ? 'Unknown' : ready;
    if (!reconcileReadyTaints(cached.spec?.taints ?? [], want, 0)) return;
    await this.retryOnConflict('nodes', '', name, '', (o) => {
      const n = o.node!;
      const r = n.status?.conditions.find((c) => c.type === 'Ready')?.status;
      const next = reconcileReadyTaints(n.spec?.taints ?? [], r, Date.now());
      if (!next) return false;
      (n.spec ??= core.NodeSpec.fromPartial({})).taints = next;
      this.o.logger?.info({ node: name, ready: r, taints: next.map((t) => `${t.key}:${t.effect}`) }, 'node lifecycle controller: taints follow the Ready condition');
      return true;
    });
  }

  /**
   * Reads the node, lets `change` edit it and writes it back conditionally on its
   * resourceVersion, so a kubelet's concurrent status post is never overwritten: a conflict
   * reads again and decides again.
   */
  private async retryOnConflict(resource: string, namespace: string, name: string, subresource: '' | 'status', change: (o: core.Object) => boolean): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      let obj: core.Object;
      try {
        obj = await this.registry.get(store.GetRequest.fromPartial({ resource, namespace, name }), NODE_CONTROLLER);
      } catch (e) {
        if (e instanceof NotFoundError) return;
        throw e;
      }
      if (!change(obj)) return;
      try {
        await (subresource === 'status' ? this.registry.updateStatus(obj, NODE_CONTROLLER) : this.registry.update(obj, NODE_CONTROLLER));
        return;
      } catch (e) {
        if (!(e instanceof ConflictError) || attempt >= 5) throw e;
      }
    }
  }

  /** MarkPodsNotReady: the pods of a node that went silent are not Ready, whatever they last said. */
  private async markPodsNotReady(node: string): Promise<void> {
    const l = await this.registry.list(store.ListRequest.fromPartial({ resource: 'pods', fieldSelector: `spec.nodeName=${node}` }), NODE_CONTROLLER);
    for (const item of l.items) {
      const m = item.pod!.metadata!;
      await this.retryOnConflict('pods', m.namespace, m.name, 'status', (o) => {
        const p = o.pod!;
        if (p.metadata!.uid !== m.uid || p.spec?.nodeName !== node || p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') return false;
        const cond = p.status?.conditions.find((c) => c.type === 'Ready');
        if (!cond || cond.status === 'False') return false;
        cond.status = 'False';
        cond.lastTransitionTime = rfc3339(Date.now());
        this.o.logger?.info({ node, pod: `${m.namespace}/${m.name}` }, 'node lifecycle controller: pod of an unreachable node marked not Ready');
        return true;
      });
    }
  }

  private async follow(resource: string, namespace: string, signal: AbortSignal, on: (type: string, o: core.Object) => void, listed: () => void): Promise<void> {
    while (!signal.aborted) {
      try {
        const l = await this.registry.list(store.ListRequest.fromPartial({ resource, namespace }), NODE_CONTROLLER);
        for (const o of l.items) on('ADDED', o);
        listed();
        if (signal.aborted) return;
        for await (const e of this.registry.watch(store.WatchRequest.fromPartial({ resource, namespace, resourceVersion: l.resourceVersion }), NODE_CONTROLLER, signal)) {
          if (e.type === 'ERROR') break; // too old: relist
          if (e.object && (e.type === 'ADDED' || e.type === 'MODIFIED' || e.type === 'DELETED')) on(e.type, e.object);
        }
      } catch (err) {
        if (signal.aborted) return;
        this.o.logger?.warn({ err: String(err), resource }, 'node lifecycle controller: watch broke; relisting');
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

