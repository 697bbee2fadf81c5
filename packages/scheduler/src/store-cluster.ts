// The ClusterSource and ClusterWriter over the Store API (berth.store.v1.Store, issue #4):
// informers on nodes, namespaces and pods feed the scheduler; binds go through Store.Bind
// (compare-and-swap on the pod's uid; a conflict surfaces as ConflictError), victims are deleted
// with a uid precondition, pod status is written with UpdateStatus (retried on conflicts), and
// events are created as core/v1 Events.
import { core } from '@berth/api';
import { isKind } from './errors';
import { Informer, kindInfo, unwrap, wrap, type StoreClient } from '@berth/apimachinery';
import type { ClusterEventHandler, ClusterSource, ClusterWriter, PodStatusPatch, WatchType } from './cluster';

export interface StoreClusterOptions {
  /** Reported as the event source, e.g. "default-scheduler". */
  component?: string;
  /** This replica's identity (events' reportingInstance). */
  instance?: string;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

const POD = kindInfo('Pod')!;
const EVENT = kindInfo('Event')!;

export class StoreCluster implements ClusterSource, ClusterWriter {
  private informers: Informer[] = [];
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void;

  constructor(readonly client: StoreClient, private readonly opts: StoreClusterOptions = {}) {
    this.log = opts.log ?? (() => undefined);
  }

  async start(handler: ClusterEventHandler): Promise<void> {
    const make = (resource: string, deliver: (type: WatchType, v: unknown) => void) => {
      const inf = new Informer(this.client, { resource });
      inf.on('add', (o) => deliver('ADDED', unwrap(o).value));
      inf.on('update', (_old, o) => deliver('MODIFIED', unwrap(o).value));
      inf.on('delete', (o) => deliver('DELETED', unwrap(o).value));
      inf.on('error', (err) => this.log(`${resource} watch failed; retrying`, { err: err.message }));
      this.informers.push(inf);
      return inf;
    };
    // Namespaces and nodes first, so pods find what they refer to in the cache.
    await make('namespaces', (t, v) => handler.onNamespace(t, v as core.Namespace)).start();
    await make('nodes', (t, v) => handler.onNode(t, v as core.Node)).start();
    await make('pods', (t, v) => handler.onPod(t, v as core.Pod)).start();
  }

  async stop(): Promise<void> {
    for (const i of this.informers) i.stop();
    this.informers = [];
  }

  async bind(pod: core.Pod, nodeName: string): Promise<void> {
    const md = pod.metadata!;
    await this.client.bind({ namespace: md.namespace || 'default', name: md.name, uid: md.uid, nodeName });
  }

  async deletePod(pod: core.Pod): Promise<void> {
    const md = pod.metadata!;
    try {
      await this.client.delete({ resource: 'pods', namespace: md.namespace || 'default', name: md.name, preconditions: { uid: md.uid, resourceVersion: '' } });
    } catch (err) {
      if (!(isKind(err, 'NotFound'))) throw err;
    }
  }

  async updatePodStatus(pod: core.Pod, patch: PodStatusPatch): Promise<void> {
    const md = pod.metadata!;
    for (let attempt = 0; ; attempt++) {
      let cur: core.Pod;
      try {
        cur = unwrap(await this.client.get('pods', md.namespace || 'default', md.name)).value as core.Pod;
      } catch (err) {
        if (isKind(err, 'NotFound')) return;
        throw err;
      }
      if (cur.metadata?.uid !== md.uid) return;
      const status = core.PodStatus.fromPartial(cur.status ?? {});
      if (patch.condition) {
        const old = status.conditions.find((c) => c.type === patch.condition!.type);
        // Keep the transition time when the status did not change (Kubernetes' convention).
        const cond = old && old.status === patch.condition.status ? { ...patch.condition, lastTransitionTime: old.lastTransitionTime } : patch.condition;
        status.conditions = [...status.conditions.filter((c) => c.type !== cond.type), cond];
      }
      if (patch.nominatedNodeName !== undefined) status.nominatedNodeName = patch.nominatedNodeName;
      try {
        await this.client.updateStatus(wrap(POD, { ...cur, status }));
        return;
      } catch (err) {
        if (isKind(err, 'Conflict') && attempt < 5) continue;
        throw err;
      }
    }
  }

  recordEvent(pod: core.Pod, type: 'Normal' | 'Warning', reason: string, message: string): void {
    const md = pod.metadata!;
    const now = new Date().toISOString();
    const ev = core.Event.fromPartial({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${md.name}.${Date.now().toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`, namespace: md.namespace || 'default' },
      involvedObject: { kind: 'Pod', apiVersion: 'v1', namespace: md.namespace || 'default', name: md.name, uid: md.uid },
      reason,
      message,
      type,
      source: { component: this.opts.component ?? 'default-scheduler' },
      firstTimestamp: now,
      lastTimestamp: now,
      eventTime: now,
      count: 1,
      action: 'Scheduling',
      reportingComponent: this.opts.component ?? 'default-scheduler',
      reportingInstance: this.opts.instance ?? '',
    });
    this.client.create(wrap(EVENT, ev)).catch((err: Error) => this.log('recording event failed', { reason, pod: md.name, err: err.message }));
  }
}
