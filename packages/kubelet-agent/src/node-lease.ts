// The node's heartbeat: a Lease in kube-node-lease named after the node, renewed every 10 s
// with a 40 s duration (the control plane declares the node lost when it lapses). Failed renewals
// retry quickly with a doubling back-off (200 ms up to 7 s) instead of waiting a whole period.
import { core } from '@berth/api';
import type { Clock, Timer } from './clock';

export const NODE_LEASE_NAMESPACE = 'kube-node-lease';

export interface LeaseStore {
  getLease(namespace: string, name: string): Promise<core.Lease | undefined>;
  createLease(l: core.Lease): Promise<core.Lease>;
  /** With metadata.resourceVersion as precondition. */
  updateLease(l: core.Lease): Promise<core.Lease>;
}

export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export interface NodeLeaseOptions {
  clock: Clock;
  store: LeaseStore;
  nodeName: string;
  nodeUid?: string;
  durationSeconds?: number;
  renewIntervalMs?: number;
  onError?: (e: unknown) => void;
}

export class NodeLease {
  private timer?: Timer;
  private stopped = false;
  private retryMs = 0;
  renewals = 0;
  readonly durationSeconds: number;
  readonly renewIntervalMs: number;

  constructor(private readonly opts: NodeLeaseOptions) {
    this.durationSeconds = opts.durationSeconds ?? 40;
    this.renewIntervalMs = opts.renewIntervalMs ?? Math.round(this.durationSeconds * 250); // 25 % of the duration
  }

  start(): void {
    void this.tick();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  /** One renewal; creates the lease the first time. */
  async renew(): Promise<core.Lease> {
    const { store, nodeName, clock } = this.opts;
    const now = microTime(clock.now());
    const cur = await store.getLease(NODE_LEASE_NAMESPACE, nodeName);
    if (!cur) {
      return store.createLease(core.Lease.fromPartial({
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: {
          name: nodeName,
          namespace: NODE_LEASE_NAMESPACE,
          ownerReferences: this.opts.nodeUid ? [{ apiVersion: 'v1', kind: 'Node', name: nodeName, uid: this.opts.nodeUid }] : [],
        },
        spec: { holderIdentity: nodeName, leaseDurationSeconds: this.durationSeconds, renewTime: now, acquireTime: now },
      }));
    }
    return store.updateLease({ ...cur, spec: { ...core.LeaseSpec.fromPartial(cur.spec ?? {}), holderIdentity: nodeName, leaseDurationSeconds: this.durationSeconds, renewTime: now } });
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    let next = this.renewIntervalMs;
    try {
      await this.renew();
      this.renewals++;
      this.retryMs = 0;
    } catch (e) {
      this.opts.onError?.(e);
      this.retryMs = this.retryMs ? Math.min(this.retryMs * 2, 7000) : 200;
      next = this.retryMs;
    }
    if (!this.stopped) this.timer = this.opts.clock.setTimeout(() => void this.tick(), next);
  }
}
