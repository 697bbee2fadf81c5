// The node lease on a fake clock: created on the first beat, renewed every 10 s with a 40 s
// duration, quick doubling retries while the Store is away, back to 10 s once it returns.
import { core } from '@berth/api';
import { ConflictError, UnavailableError } from '@berth/common';
import { describe, expect, it } from 'vitest';
import { FakeClock } from './clock';
import { NodeLease, microTime, type LeaseStore } from './node-lease';

class MemoryLeases implements LeaseStore {
  lease?: core.Lease;
  down = false;
  calls: string[] = [];
  private rv = 0;
  async getLease() {
    this.calls.push('get');
    if (this.down) throw new UnavailableError('store is unreachable');
    return this.lease && core.Lease.fromPartial(this.lease);
  }
  async createLease(l: core.Lease) {
    this.calls.push('create');
    this.lease = { ...l, metadata: { ...l.metadata!, resourceVersion: String(++this.rv) } };
    return this.lease;
  }
  async updateLease(l: core.Lease) {
    this.calls.push('update');
    if (l.metadata!.resourceVersion !== this.lease!.metadata!.resourceVersion) throw new ConflictError('stale');
    this.lease = { ...l, metadata: { ...l.metadata!, resourceVersion: String(++this.rv) } };
    return this.lease;
  }
}

describe('NodeLease', () => {
  it('creates, renews every 10 s, backs off quickly while the Store is down', async () => {
    const t0 = Date.parse('2026-07-01T00:00:00Z');
    const clock = new FakeClock(t0);
    const store = new MemoryLeases();
    const errors: string[] = [];
    const lease = new NodeLease({ clock, store, nodeName: 'node-a', nodeUid: 'n-uid', onError: (e) => errors.push((e as Error).message) });
    lease.start();
    await clock.advance(0);
    expect(store.lease).toMatchObject({
      apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
      metadata: { name: 'node-a', namespace: 'kube-node-lease', ownerReferences: [{ kind: 'Node', name: 'node-a', uid: 'n-uid' }] },
      spec: { holderIdentity: 'node-a', leaseDurationSeconds: 40, renewTime: '2026-07-01T00:00:00.000000Z' },
    });
    await clock.advance(10_000);
    expect(store.lease!.spec!.renewTime).toBe(microTime(t0 + 10_000));
    expect(store.calls).toEqual(['get', 'create', 'get', 'update']);

    store.down = true;
    store.calls = [];
    // Beats at +20 s (fails), then retries after 0.2, 0.4, 0.8, 1.6 s...
    await clock.advance(10_000);
    for (const d of [200, 400, 800, 1600]) await clock.advance(d);
    expect(errors).toHaveLength(5);
    expect(store.calls).toEqual(['get', 'get', 'get', 'get', 'get']);
    store.down = false;
    await clock.advance(3200);
    expect(store.lease!.spec!.renewTime).toBe(microTime(clock.now()));
    const at = clock.now();
    await clock.advance(9_999);
    expect(store.lease!.spec!.renewTime).toBe(microTime(at));
    await clock.advance(1);
    expect(store.lease!.spec!.renewTime).toBe(microTime(at + 10_000));
    expect(lease.renewals).toBe(4);
    lease.stop();
    expect(clock.pending()).toBe(0);
  });
});
