// The agent's Store seams over the shared typed Store client (@berth/apimachinery): pod status
// writes, ConfigMaps/Secrets, events, the node lease, node registration, and the informer of the
// pods bound to this node feeding the PodConfig.
import { core } from '@berth/api';
import { Informer, kindInfo, unwrap, wrap, type StoreClient } from '@berth/apimachinery';
import type { LeaseStore } from './node-lease';
import type { NodeStatusWriter } from './node-status';
import type { ConfigSource, EventSink, PodStatusStore } from './seams';
import { CONFIG_MIRROR_ANNOTATION as CONFIG_MIRROR, type PodConfig } from './sync/pod-config';

const POD = kindInfo('Pod')!;
const EVENT = kindInfo('Event')!;
const LEASE = kindInfo('Lease')!;
const NODE = kindInfo('Node')!;

/** Matches domain errors by kind: the class may come from another copy of @berth/common. */
export function isKind(e: unknown, kind: 'NotFound' | 'AlreadyExists' | 'Conflict' | 'PermissionDenied'): boolean {
  return (e as { kind?: string } | null)?.kind === kind;
}

async function orUndefined<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    if (isKind(e, 'NotFound')) return undefined;
    throw e;
  }
}

export class StoreSeams implements PodStatusStore, ConfigSource, EventSink, LeaseStore, NodeStatusWriter {
  constructor(readonly client: StoreClient) {}

  async getPod(namespace: string, name: string): Promise<core.Pod | undefined> {
    const o = await orUndefined(this.client.get('pods', namespace, name));
    return o?.pod;
  }
  async updatePodStatus(pod: core.Pod): Promise<core.Pod> {
    return (await this.client.updateStatus(wrap(POD, pod))).pod!;
  }
  async getConfigMap(namespace: string, name: string): Promise<core.ConfigMap | undefined> {
    return (await orUndefined(this.client.get('configmaps', namespace, name)))?.configMap;
  }
  async getSecret(namespace: string, name: string): Promise<core.Secret | undefined> {
    return (await orUndefined(this.client.get('secrets', namespace, name)))?.secret;
  }
  async create(ev: core.Event): Promise<core.Event> {
    return (await this.client.create(wrap(EVENT, ev))).event!;
  }
  async update(ev: core.Event): Promise<core.Event> {
    // The recorder only knows the event it created, not its current resourceVersion: read it
    // and bump count/lastTimestamp/message on the stored copy.
    const cur = (await this.client.get('events', ev.metadata!.namespace, ev.metadata!.name)).event!;
    const next: core.Event = { ...cur, count: ev.count, lastTimestamp: ev.lastTimestamp, message: ev.message };
    return (await this.client.update(wrap(EVENT, next))).event!;
  }
  async getLease(namespace: string, name: string): Promise<core.Lease | undefined> {
    return (await orUndefined(this.client.get('leases', namespace, name)))?.lease;
  }
  async createLease(l: core.Lease): Promise<core.Lease> {
    return (await this.client.create(wrap(LEASE, l))).lease!;
  }
  async updateLease(l: core.Lease): Promise<core.Lease> {
    return (await this.client.update(wrap(LEASE, l))).lease!;
  }

  async getNode(name: string): Promise<core.Node | undefined> {
    return (await orUndefined(this.client.get('nodes', '', name)))?.node;
  }
  async updateNodeStatus(node: core.Node): Promise<core.Node> {
    return (await this.client.updateStatus(wrap(NODE, node))).node!;
  }

  /**
   * Reflects a static pod into the Store as its mirror pod (created once; replaced when the
   * manifest changed, i.e. the mirror annotation no longer names the static pod's uid).
   */
  async syncMirrorPod(staticPod: core.Pod, mirror: core.Pod): Promise<core.Pod> {
    const m = mirror.metadata!;
    const cur = await this.getPod(m.namespace || 'default', m.name);
    if (cur && cur.metadata?.annotations?.[CONFIG_MIRROR] === staticPod.metadata!.uid) return cur;
    if (cur) await this.client.delete({ resource: 'pods', namespace: m.namespace || 'default', name: m.name, gracePeriodSeconds: 0 });
    return (await this.client.create(wrap(POD, { ...mirror, status: undefined }))).pod!;
  }

  async deleteMirrorPod(namespace: string, name: string): Promise<void> {
    try {
      await this.client.delete({ resource: 'pods', namespace, name, gracePeriodSeconds: 0 });
    } catch (e) {
      if (!isKind(e, 'NotFound')) throw e;
    }
  }

  /** Creates the Node (or takes over an existing one) and writes its status. */
  async registerNode(node: core.Node): Promise<core.Node> {
    let cur: core.Node;
    try {
      cur = (await this.client.create(wrap(NODE, { ...node, status: undefined }))).node!;
    } catch (e) {
      if (!isKind(e, 'AlreadyExists')) throw e;
      cur = (await this.client.get('nodes', '', node.metadata!.name)).node!;
      // Keep what others set (taints by admins, podCIDR by the allocator); refresh our labels.
      // Our --pod-cidr fills spec.podCIDR(s) only while it is empty: like Kubernetes, the value
      // is set once and never changed (the caller warns about a different one).
      const spec = cur.spec ?? core.NodeSpec.fromPartial({});
      const fill = !spec.podCIDR && node.spec?.podCIDR ? { podCIDR: node.spec.podCIDR, podCIDRs: node.spec.podCIDRs } : {};
      cur = (await this.client.update(wrap(NODE, { ...cur, spec: { ...spec, ...fill }, metadata: { ...cur.metadata!, labels: { ...cur.metadata!.labels, ...node.metadata!.labels } } }))).node!;
    }
    return this.updateNodeStatus({ ...cur, status: node.status });
  }

  /**
   * Feeds PodConfig with the pods bound to `nodeName`; resolves once the first list is in.
   * `onUpdate` sees every changed pod, status-only changes too (PodConfig ignores those).
   */
  async watchNodePods(nodeName: string, config: PodConfig, onUpdate?: (pod: core.Pod) => void): Promise<Informer> {
    const inf = new Informer(this.client, { resource: 'pods', fieldSelector: `spec.nodeName=${nodeName}` });
    const pod = (o: core.Object) => unwrap(o).value as core.Pod;
    inf.on('add', (o) => config.apply('store', 'ADD', pod(o)));
    inf.on('update', (_old, o) => {
      config.apply('store', 'UPDATE', pod(o));
      onUpdate?.(pod(o));
    });
    inf.on('delete', (o) => config.apply('store', 'DELETE', pod(o)));
    await inf.start();
    return inf;
  }
}
