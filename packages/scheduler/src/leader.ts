// Leader election through a Lease object in the Store, as Kubernetes' leaderelection package
// does: the holder renews spec.renewTime every retry period; a candidate takes the lease when
// it has not been renewed for leaseDurationSeconds; every write is a compare-and-swap on the
// lease's resourceVersion, so two candidates can never both win. A leader that cannot renew
// within renewDeadline steps down.
import { core } from '@berth/api';
import { isKind } from './errors';
import { kindInfo, unwrap, wrap, type StoreClient } from '@berth/apimachinery';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  onStartedLeading(): void;
  onStoppedLeading(): void;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

const LEASE = kindInfo('Lease')!;
const NAMESPACE = kindInfo('Namespace')!;
const microTime = (ms: number) => new Date(ms).toISOString().replace('Z', '000Z');

export class LeaderElector {
  leader = false;
  /** Holder of the lease as last observed. */
  observedHolder = '';
  private timer?: NodeJS.Timeout;
  private lastRenew = 0;
  private stopped = false;

  constructor(private readonly client: StoreClient, private readonly o: LeaderElectionOptions) {}

  async start(): Promise<void> {
    try {
      await this.client.create(wrap(NAMESPACE, core.Namespace.fromPartial({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: this.o.namespace } })));
    } catch (err) {
      if (!isKind(err, 'AlreadyExists') && !isKind(err, 'Conflict')) this.o.log?.('creating the lease namespace failed', { err: (err as Error).message });
    }
    const loop = async () => {
      if (this.stopped) return;
      await this.tryAcquireOrRenew().catch((err: Error) => this.o.log?.('lease update failed', { err: err.message }));
      if (this.leader && Date.now() - this.lastRenew > this.o.renewDeadlineMs) this.stepDown('renew deadline passed');
      if (!this.stopped) this.timer = setTimeout(loop, this.o.retryPeriodMs);
    };
    await loop();
  }

  /** Stops; a leader releases the lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.leader) {
      try {
        const cur = unwrap(await this.client.get('leases', this.o.namespace, this.o.name)).value as core.Lease;
        if (cur.spec?.holderIdentity === this.o.identity) {
          await this.client.update(wrap(LEASE, { ...cur, spec: { ...cur.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(Date.now()) } }));
        }
      } catch { /* best effort: the lease expires anyway */ }
      // A deliberate stop is not a lost election: no onStoppedLeading.
      this.leader = false;
    }
  }

  private stepDown(why: string): void {
    if (!this.leader) return;
    this.leader = false;
    this.o.log?.('lost leadership', { why });
    this.o.onStoppedLeading();
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const now = Date.now();
    const durationS = Math.max(1, Math.ceil(this.o.leaseDurationMs / 1000));
    let cur: core.Lease | undefined;
    try {
      cur = unwrap(await this.client.get('leases', this.o.namespace, this.o.name)).value as core.Lease;
    } catch (err) {
      if (!isKind(err, 'NotFound')) throw err;
    }
    if (!cur) {
      const lease = core.Lease.fromPartial({
        apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.o.name, namespace: this.o.namespace },
        spec: { holderIdentity: this.o.identity, leaseDurationSeconds: durationS, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 },
      });
      try {
        await this.client.create(wrap(LEASE, lease));
      } catch (err) {
        if (isKind(err, 'AlreadyExists') || isKind(err, 'Conflict')) return;
        throw err;
      }
      return this.won(now);
    }
    const spec = cur.spec ?? core.LeaseSpec.fromPartial({});
    const holder = spec.holderIdentity ?? '';
    this.observedHolder = holder;
    const renewed = Date.parse(spec.renewTime || '') || 0;
    const expired = renewed + (spec.leaseDurationSeconds ?? durationS) * 1000 <= now;
    if (holder && holder !== this.o.identity && !expired) {
      if (this.leader) this.stepDown(`lease held by ${holder}`);
      return;
    }
    const mine = holder === this.o.identity;
    const next = {
      ...cur,
      spec: {
        ...spec,
        holderIdentity: this.o.identity,
        leaseDurationSeconds: durationS,
        renewTime: microTime(now),
        acquireTime: mine ? spec.acquireTime : microTime(now),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (mine || !holder ? 0 : 1),
      },
    };
    try {
      await this.client.update(wrap(LEASE, next));
    } catch (err) {
      if (isKind(err, 'Conflict')) return;
      throw err;
    }
    this.won(now);
  }

  private won(now: number): void {
    this.lastRenew = now;
    this.observedHolder = this.o.identity;
    if (!this.leader) {
      this.leader = true;
      this.o.log?.('became leader', { identity: this.o.identity });
      this.o.onStartedLeading();
    }
  }
}
