// The node lifecycle controller in a real berth-etcd-client process on a real etcd, with the
// test playing the kubelet (lease renewals, Node status posts) over the Store API: a renewing
// node stays Ready; a silent one turns Unknown and unreachable-tainted after the grace period,
// its pods not Ready but not evicted, and it is untainted once it renews and posts Ready=True again; Ready=False brings the not-ready
// taints; of two berth-etcd-client only the elected one acts, and the other takes over.
// Pure-logic checks of the taint/condition rules sit at the end.
import { getEventListeners } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { core, store } from '@berth/api';
import { StoreClient, decodeObject } from '@berth/apimachinery';
import { startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EtcdWithClients, uniquePrefix, waitUntil } from '../v3/fixture';
import { EtcdV3Backend } from './backend-v3';
import { markUnknown, NodeLifecycleController, reconcileReadyTaints, TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE } from './node-lifecycle';
import { Registry } from './registry';

const bin = path.resolve(__dirname, '..', '..', 'dist', 'bin', 'berth-etcd-client.js');
const GRACE_MS = 2000;
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

const env = new EtcdWithClients();
beforeAll(() => env.start());
afterAll(() => env.destroy());

/** MicroTime, as a kubelet writes renewTime. */
const microNow = () => new Date().toISOString().replace(/Z$/, '000Z');

/** What a kubelet-agent does for its node, over the Store API. */
class FakeKubelet {
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly c: StoreClient, readonly name: string) {}

  async register(ready: 'True' | 'False' = 'True'): Promise<void> {
    await this.c.create(decodeObject({ apiVersion: 'v1', kind: 'Node', metadata: { name: this.name, labels: { 'kubernetes.io/hostname': this.name } } }));
    await this.c.create(decodeObject({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.name, namespace: 'kube-node-lease' }, spec: { holderIdentity: this.name, leaseDurationSeconds: 40, renewTime: microNow() } }));
    await this.postStatus(ready);
  }

  async postStatus(ready: 'True' | 'False'): Promise<void> {
    for (;;) {
      const n = await this.c.get('nodes', '', this.name);
      const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      const cond = (type: string, status: string, reason: string) => core.NodeCondition.fromPartial({ type, status, reason, message: reason, lastHeartbeatTime: now, lastTransitionTime: now });
      (n.node!.status ??= core.NodeStatus.fromPartial({})).conditions = [
        cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory'), cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
        cond('PIDPressure', 'False', 'KubeletHasSufficientPID'), cond('Ready', ready, ready === 'True' ? 'KubeletReady' : 'KubeletNotReady'),
      ];
      try { await this.c.updateStatus(n); return; } catch (e) { if (!/modified/.test(String(e))) throw e; }
    }
  }

  async renew(): Promise<void> {
    const l = await this.c.get('leases', 'kube-node-lease', this.name);
    l.lease!.spec!.renewTime = microNow();
    await this.c.update(l);
  }

  startRenewing(everyMs = 300): void {
    this.stopRenewing();
    this.timer = setInterval(() => void this.renew().catch(() => undefined), everyMs);
  }

  stopRenewing(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

describe('node lifecycle controller (berth-etcd-client process)', () => {
  let dir: string;
  let prefix: string;
  let procs: ServiceProcess[];
  let clients: StoreClient[];
  let kubelets: FakeKubelet[];
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-nlc-'));
    prefix = uniquePrefix('nlc');
    procs = [];
    clients = [];
    kubelets = [];
  });
  afterEach(async () => {
    for (const k of kubelets) k.stopRenewing();
    for (const c of clients) c.close();
    await Promise.all(procs.map((p) => p.stop()));
    await env.v3.delete(prefix, { prefix: true }).catch(() => undefined);
    await env.v3.delete(`/berth-leader-election${prefix}`, { prefix: true }).catch(() => undefined);
    await env.v2.delete(prefix, { recursive: true }).catch(() => undefined);
    await env.v2.delete(`/berth-leader-election${prefix}`, { recursive: true }).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function start(api: 'v3' | 'v2', tag = 'a', extra: string[] = []): Promise<{ proc: ServiceProcess; client: StoreClient }> {
    const sock = `unix://${path.join(dir, `${tag}.sock`)}`;
    const proc = startServiceProcess(bin, ['--listen', sock, '--state-dir', path.join(dir, `state-${tag}`), '--etcd-endpoints', env.etcd.endpoints.join(','), '--etcd-api', api,
      '--etcd-prefix', prefix, '--etcd-health-interval-ms', '200', '--node-monitor-grace-period', `${GRACE_MS}ms`, '--node-monitor-period', '200ms', '--leader-election-lease-duration', '3s', ...extra]);
    procs.push(proc);
    expect(await waitServing(sock), proc.output()).toBe('SERVING');
    const client = new StoreClient({ target: sock });
    clients.push(client);
    return { proc, client };
  }
  const kubelet = (c: StoreClient, name: string) => { const k = new FakeKubelet(c, name); kubelets.push(k); return k; };
  const node = async (c: StoreClient, name: string) => (await c.get('nodes', '', name)).node!;
  const ready = (n: core.Node) => n.status!.conditions.find((c) => c.type === 'Ready')!;
  const taints = (n: core.Node) => (n.spec?.taints ?? []).map((t) => `${t.key}:${t.effect}`).sort();

  it('keeps a renewing node Ready, marks it Unknown + unreachable when it goes silent, untaints it when it is back', async () => {
    const { client: c, proc } = await start('v3');
    const name = `node-${Math.random().toString(36).slice(2, 8)}`;
    const k = kubelet(c, name);
    await k.register('True');
    k.startRenewing();
    // A pod that tolerates unreachable, bound to the node: nothing touches it.
    const pod = await c.create(decodeObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'tolerant', namespace: 'default' }, spec: {
      nodeName: name, containers: [{ name: 'c', image: 'busybox:1.36' }],
      tolerations: [{ key: TAINT_NODE_UNREACHABLE, operator: 'Exists', effect: 'NoExecute' }, { key: TAINT_NODE_UNREACHABLE, operator: 'Exists', effect: 'NoSchedule' }],
    } }));
    pod.pod!.status = core.PodStatus.fromPartial({ phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }, { type: 'PodScheduled', status: 'True' }] });
    await c.updateStatus(pod);

    await new Promise((r) => setTimeout(r, 2 * GRACE_MS));
    let n = await node(c, name);
    expect(ready(n).status, proc.output()).toBe('True');
    expect(taints(n)).toEqual([]);
    expect((await c.get('pods', 'default', 'tolerant')).pod!.status!.conditions.find((x) => x.type === 'Ready')!.status).toBe('True');

    k.stopRenewing();
    const silentSince = Date.now();
    await waitUntil(async () => ready(await node(c, name)).status === 'Unknown', GRACE_MS + 3000, 'Ready=Unknown');
    expect(Date.now() - silentSince).toBeGreaterThanOrEqual(GRACE_MS - 400); // not before the grace period (less one renewal interval)
    await waitUntil(async () => taints(await node(c, name)).length === 2, 3000, 'unreachable taints');
    n = await node(c, name);
    for (const type of ['Ready', 'MemoryPressure', 'DiskPressure', 'PIDPressure']) {
      const cond = n.status!.conditions.find((x) => x.type === type)!;
      expect(cond, type).toMatchObject({ status: 'Unknown', reason: 'NodeStatusUnknown', message: 'Kubelet stopped posting node status.' });
      expect(cond.lastTransitionTime).toMatch(RFC3339);
    }
    expect(taints(n)).toEqual([`${TAINT_NODE_UNREACHABLE}:NoExecute`, `${TAINT_NODE_UNREACHABLE}:NoSchedule`]);
    expect(n.spec!.taints.find((t) => t.effect === 'NoExecute')!.timeAdded).toMatch(RFC3339);
    expect(n.spec!.taints.find((t) => t.effect === 'NoSchedule')!.timeAdded).toBe('');

    // Not evicted (NoExecute eviction is not done at all), but reported not Ready, as Kubernetes'
    // MarkPodsNotReady does; the kubelet makes it Ready again when it is back.
    await waitUntil(async () => (await c.get('pods', 'default', 'tolerant')).pod!.status!.conditions.find((x) => x.type === 'Ready')!.status === 'False', 3000, 'pod not Ready');
    const p = (await c.get('pods', 'default', 'tolerant')).pod!;
    expect(p.metadata!.deletionTimestamp).toBe('');
    expect(p.metadata!.uid).toBe(pod.pod!.metadata!.uid);
    expect(p.spec!.nodeName).toBe(name);
    expect(p.status!.phase).toBe('Running');
    expect(p.status!.conditions.find((x) => x.type === 'PodScheduled')!.status).toBe('True');

    // The lease alone does not clear the taints: the kubelet has to say it is Ready.
    k.startRenewing();
    await new Promise((r) => setTimeout(r, 1000));
    expect(taints(await node(c, name))).toEqual([`${TAINT_NODE_UNREACHABLE}:NoExecute`, `${TAINT_NODE_UNREACHABLE}:NoSchedule`]);
    await k.postStatus('True');
    await waitUntil(async () => taints(await node(c, name)).length === 0, 3000, 'taints removed');
    // And it stays Ready while it keeps renewing.
    await new Promise((r) => setTimeout(r, GRACE_MS + 500));
    n = await node(c, name);
    expect(ready(n).status).toBe('True');
    expect(taints(n)).toEqual([]);
    expect(proc.output()).toMatch(/kubelet stopped posting node status/);
  });

  it('taints a node that posts Ready=False not-ready, keeping other taints (v2 backend)', async () => {
    const { client: c } = await start('v2');
    const name = `node-${Math.random().toString(36).slice(2, 8)}`;
    const k = kubelet(c, name);
    await k.register('True');
    k.startRenewing();
    const n0 = (await c.get('nodes', '', name));
    (n0.node!.spec ??= core.NodeSpec.fromPartial({})).taints = [core.Taint.fromPartial({ key: 'example.com/dedicated', value: 'gpu', effect: 'NoSchedule' })];
    await c.update(n0);
    await k.postStatus('False');
    await waitUntil(async () => taints(await node(c, name)).length === 3, 3000, 'not-ready taints');
    const n = await node(c, name);
    expect(taints(n)).toEqual(['example.com/dedicated:NoSchedule', `${TAINT_NODE_NOT_READY}:NoExecute`, `${TAINT_NODE_NOT_READY}:NoSchedule`]);
    expect(ready(n).status).toBe('False'); // heard from: the kubelet's word stands
    await k.postStatus('True');
    await waitUntil(async () => taints(await node(c, name)).join() === 'example.com/dedicated:NoSchedule', 3000, 'not-ready taints removed');
  });

  it('acts from one berth-etcd-client only; another takes over when the leader stops', async () => {
    const a = await start('v3', 'a');
    const b = await start('v3', 'b');
    const leading = /node lifecycle controller: leading/;
    await waitUntil(() => leading.test(a.proc.output()) || leading.test(b.proc.output()), 5000, 'a leader');
    await new Promise((r) => setTimeout(r, 500));
    expect(leading.test(a.proc.output()) && leading.test(b.proc.output()), a.proc.output() + b.proc.output()).toBe(false);
    const [leader, follower] = leading.test(a.proc.output()) ? [a, b] : [b, a];
    // A node registered but never heard from again is marked by the leader alone.
    const first = kubelet(follower.client, `node-${Math.random().toString(36).slice(2, 8)}`);
    await first.register('True');
    await waitUntil(async () => ready(await node(follower.client, first.name)).status === 'Unknown', GRACE_MS + 3000, 'Ready=Unknown');
    expect(leader.proc.output()).toMatch(/kubelet stopped posting node status/);
    expect(follower.proc.output()).not.toMatch(/kubelet stopped posting node status/);

    expect(await leader.proc.stop()).toEqual({ code: 0, signal: null });
    // The leader resigned on SIGTERM: no lease TTL to wait for.
    await waitUntil(() => leading.test(follower.proc.output()), 4000, 'take-over');
    const second = kubelet(follower.client, `node-${Math.random().toString(36).slice(2, 8)}`);
    await second.register('True');
    await waitUntil(async () => ready(await node(follower.client, second.name)).status === 'Unknown', GRACE_MS + 3000, 'Ready=Unknown after take-over');
    expect(follower.proc.output()).toMatch(/kubelet stopped posting node status/);
  });

  it('rejects a malformed --node-monitor-grace-period naming the flag', async () => {
    const proc = startServiceProcess(bin, ['--listen', `unix://${path.join(dir, 'bad.sock')}`, '--node-monitor-grace-period', 'forty']);
    procs.push(proc);
    expect((await proc.exited).code).toBe(2);
    expect(proc.output()).toMatch(/--node-monitor-grace-period: expected a duration like 40s/);
  });
});

const admin = { name: 'admin', groups: ['system:masters', 'system:authenticated'], authenticator: 'test' };

/** A controller in this process on a Registry of its own under a fresh prefix; close() removes it all. */
async function inProcess(name: string, o: { gracePeriodMs: number; monitorPeriodMs: number }): Promise<{ reg: Registry; ctl: NodeLifecycleController; close: () => Promise<void> }> {
  const prefix = uniquePrefix(name);
  const reg = new Registry(new EtcdV3Backend(env.v3), { prefix });
  await reg.start();
  const ctl = new NodeLifecycleController(reg, o);
  return { reg, ctl, close: async () => { await ctl.close(); reg.close(); await env.v3.delete(prefix, { prefix: true }); } };
}

describe('node lifecycle controller under write contention (in-process, real etcd)', () => {
  it('retries resourceVersion conflicts and never overwrites a concurrent status write', async () => {
    const { reg, ctl, close } = await inProcess('nlc-conflict', { gracePeriodMs: 500, monitorPeriodMs: 50 });
    let writing = true;
    try {
      await reg.create(decodeObject({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'busy' } }), admin);
      ctl.start();
      // Another writer keeps changing the node's status (not a heartbeat) as fast as it can.
      let last = 0;
      const seen: number[] = [];
      const writer = (async () => {
        while (writing) {
          const n = await reg.get(store.GetRequest.fromPartial({ resource: 'nodes', name: 'busy' }), admin);
          // A controller write made from a stale read would bring an older value back.
          seen.push(Number(n.node!.status?.capacity.pods ?? 0) - last);
          (n.node!.status ??= core.NodeStatus.fromPartial({})).capacity = { pods: String(++last) };
          try { await reg.updateStatus(n, admin); } catch (e) { last--; if (!/modified/.test(String(e))) throw e; }
        }
      })();
      await waitUntil(async () => (await reg.get(store.GetRequest.fromPartial({ resource: 'nodes', name: 'busy' }), admin)).node!.status?.conditions.find((c) => c.type === 'Ready')?.status === 'Unknown', 5000, 'Ready=Unknown under contention');
      await waitUntil(async () => ((await reg.get(store.GetRequest.fromPartial({ resource: 'nodes', name: 'busy' }), admin)).node!.spec?.taints.length ?? 0) === 2, 5000, 'taints under contention');
      // (a loaded machine gets few writes in: the contention must have been real before we stop)
      await waitUntil(async () => seen.length > 10, 20_000, 'more than ten concurrent status writes');
      writing = false;
      await writer;
      const n = (await reg.get(store.GetRequest.fromPartial({ resource: 'nodes', name: 'busy' }), admin)).node!;
      expect(n.status!.capacity).toEqual({ pods: String(last) }); // the other writer's last word stands
      expect(seen.length).toBeGreaterThan(10);
      expect(seen.filter((d) => d !== 0)).toEqual([]);
      expect(n.status!.conditions.map((c) => `${c.type}=${c.status}`).sort()).toEqual(['DiskPressure=Unknown', 'MemoryPressure=Unknown', 'PIDPressure=Unknown', 'Ready=Unknown']);
      expect(n.status!.conditions.find((c) => c.type === 'Ready')!.reason).toBe('NodeStatusNeverUpdated');
    } finally {
      writing = false;
      await close();
    }
  });
});

describe('node lifecycle controller over many periods (in-process, real etcd)', () => {
  it('adds no abort listener per node and period: its signals hold a constant few', async () => {
    const { reg, ctl, close } = await inProcess('nlc-listeners', { gracePeriodMs: 60_000, monitorPeriodMs: 10 });
    // Every AbortSignal the controller listens on, with the most listeners each ever had.
    const most = new Map<AbortSignal, number>();
    const add = AbortSignal.prototype.addEventListener;
    AbortSignal.prototype.addEventListener = function (this: AbortSignal, ...args: Parameters<typeof add>) {
      add.apply(this, args);
      most.set(this, Math.max(most.get(this) ?? 0, getEventListeners(this, 'abort').length));
    } as typeof add;
    try {
      for (const name of ['n1', 'n2', 'n3']) await reg.create(decodeObject({ apiVersion: 'v1', kind: 'Node', metadata: { name } }), admin);
      ctl.start();
      // ~100 monitor periods over three nodes.
      await new Promise((r) => setTimeout(r, 1500));
      expect(most.size).toBeGreaterThan(0);
      expect(Math.max(...most.values())).toBeLessThanOrEqual(5);
    } finally {
      AbortSignal.prototype.addEventListener = add;
      await close();
    }
  });
});

describe('node lifecycle rules', () => {
  const t = (key: string, effect: string, timeAdded = '') => core.Taint.fromPartial({ key, effect, timeAdded });
  it('swaps not-ready for unreachable, keeps timeAdded of taints already there and foreign taints', () => {
    const now = Date.parse('2026-01-02T03:04:05.678Z');
    expect(reconcileReadyTaints([], 'True', now)).toBeUndefined();
    expect(reconcileReadyTaints([t('x', 'NoSchedule')], undefined, now)).toBeUndefined();
    expect(reconcileReadyTaints([t(TAINT_NODE_NOT_READY, 'NoSchedule'), t('x', 'NoExecute')], 'Unknown', now)).toEqual([t('x', 'NoExecute'), t(TAINT_NODE_UNREACHABLE, 'NoSchedule'), t(TAINT_NODE_UNREACHABLE, 'NoExecute', '2026-01-02T03:04:05Z')]);
    const both = [t(TAINT_NODE_UNREACHABLE, 'NoSchedule'), t(TAINT_NODE_UNREACHABLE, 'NoExecute', '2020-01-01T00:00:00Z')];
    expect(reconcileReadyTaints(both, 'Unknown', now)).toBeUndefined();
    expect(reconcileReadyTaints(both, 'True', now)).toEqual([]);
    // A PreferNoSchedule taint of the same key is someone else's.
    expect(reconcileReadyTaints([t(TAINT_NODE_UNREACHABLE, 'PreferNoSchedule')], 'True', now)).toBeUndefined();
  });
  it('marks kubelet conditions Unknown once and adds those never posted', () => {
    const now = Date.parse('2026-01-02T03:04:05Z');
    const c = (type: string, status: string) => core.NodeCondition.fromPartial({ type, status, reason: 'r', lastHeartbeatTime: 'hb' });
    const next = markUnknown([c('Ready', 'True'), c('MemoryPressure', 'False'), c('NetworkUnavailable', 'False')], 'created', now)!;
    expect(next.map((x) => [x.type, x.status, x.reason])).toEqual([['Ready', 'Unknown', 'NodeStatusUnknown'], ['MemoryPressure', 'Unknown', 'NodeStatusUnknown'], ['NetworkUnavailable', 'False', 'r'], ['DiskPressure', 'Unknown', 'NodeStatusNeverUpdated'], ['PIDPressure', 'Unknown', 'NodeStatusNeverUpdated']]);
    expect(next[0].lastHeartbeatTime).toBe('hb');
    expect(next[3].lastHeartbeatTime).toBe('created');
    expect(markUnknown(next, 'created', now)).toBeUndefined();
  });
});
