// The scheduler wired to the real Store: a real etcd, the real berth-etcd-client process serving
// the Store API on a unix socket, and two berth-scheduler replicas electing a leader through a
// Lease. 100 pods with mixed constraints on 20 nodes land where the rules say; the ones that fit
// nowhere get FailedScheduling events and PodScheduled=False/Unschedulable, and are scheduled
// when a fitting node appears; killing the leader hands scheduling to the other replica.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { core, scheduler } from '@berth/api';
import { StoreClient, kindInfo, unwrap, wrap } from '@berth/apimachinery';
import { EtcdCluster, callUnary, createClient, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { node, pod, term } from './testing/builders';

// The Store is a peer process here (not a code dependency): its built binary in the workspace.
const storeBin = path.resolve(__dirname, '..', '..', 'etcd-client', 'dist', 'bin', 'berth-etcd-client.js');
const schedBin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth-scheduler.js');
const ZONE = 'topology.kubernetes.io/zone';
const HOST = 'kubernetes.io/hostname';
const POD = kindInfo('Pod')!;
const NODE = kindInfo('Node')!;
const NS = kindInfo('Namespace')!;

let dir: string;
let etcd: EtcdCluster;
let store: ServiceProcess;
let client: StoreClient;
const replicas = new Map<string, ServiceProcess>();
const suffix = Math.random().toString(36).slice(2, 8);
const nsName = `sched-${suffix}`;

const until = async <T>(what: string, fn: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> => {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

async function putNode(n: core.Node): Promise<void> {
  const created = unwrap(await client.create(wrap(NODE, { ...n, apiVersion: 'v1', kind: 'Node', status: undefined }))).value as core.Node;
  await client.updateStatus(wrap(NODE, { ...created, status: n.status }));
}

function startReplica(id: string): ServiceProcess {
  const sock = path.join(dir, `sched-${id}.sock`);
  const p = startServiceProcess(schedBin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, `state-${id}`), '--store', `unix://${path.join(dir, 'store.sock')}`,
    '--identity', id, '--leader-elect-lease-duration-ms', '3000', '--leader-elect-renew-deadline-ms', '2000', '--leader-elect-retry-period-ms', '300']);
  replicas.set(id, p);
  return p;
}

async function status(id: string): Promise<scheduler.StatusResponse> {
  const c = createClient(scheduler.SchedulerClient, { target: `unix://${path.join(dir, `sched-${id}.sock`)}`, defaultDeadlineMs: 2000 });
  try {
    return await callUnary<scheduler.StatusRequest, scheduler.StatusResponse>(c.status.bind(c), {});
  } finally {
    c.close();
  }
}

const pods = async () => (await client.listAll({ resource: 'pods', namespace: nsName })).items.map((o) => unwrap(o).value as core.Pod);

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-sched-store-'));
  etcd = await EtcdCluster.start({ dataRoot: path.join(dir, 'etcd'), removeDataOnDestroy: true });
  store = startServiceProcess(storeBin, ['--listen', `unix://${path.join(dir, 'store.sock')}`, '--state-dir', path.join(dir, 'store-state'), '--etcd-endpoints', etcd.endpoints.join(',')]);
  expect(await waitServing(`unix://${path.join(dir, 'store.sock')}`, 30_000), store.output()).toBe('SERVING');
  client = new StoreClient({ target: `unix://${path.join(dir, 'store.sock')}` });
  await client.create(wrap(NS, core.Namespace.fromPartial({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: nsName } })));
}, 90_000);

afterAll(async () => {
  for (const p of replicas.values()) await p.stop().catch(() => undefined);
  client?.raw.close();
  await store?.stop();
  await etcd?.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('berth-scheduler on the real Store', () => {
  it('schedules 100 pods on 20 nodes by the rules, reports the rest, and fails over to the standby', async () => {
    for (let i = 0; i < 20; i++) {
      await putNode(node(`n${i}-${suffix}`, {
        labels: { [ZONE]: `z${i % 4}`, ...(i >= 15 ? { gpu: 'true' } : {}) },
        taints: i >= 15 ? [{ key: 'gpu', value: 'true', effect: 'NoSchedule' }] : [],
        // No "pods": the Store's validation rejects that key today (see the report); 110 is assumed.
        alloc: { cpu: '8', memory: '16Gi' },
      }));
    }
    startReplica('a');
    await until('replica a leads', async () => (await status('a')).leader).catch((e: Error) => { throw new Error(`${e.message}\n${replicas.get('a')!.output()}`); });
    startReplica('b');
    expect(await waitServing(`unix://${path.join(dir, 'sched-b.sock')}`, 30_000), replicas.get('b')!.output()).toBe('SERVING');
    await until('replica b sees the leader', async () => (await status('b')).leaderIdentity === 'a');
    expect((await status('b')).leader).toBe(false);

    const specs = [
      ...Array.from({ length: 15 }, (_, i) => pod(`web-${i}`, { labels: { app: 'web' }, req: { cpu: '500m' }, affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term({ app: 'web' }, HOST)], preferredDuringSchedulingIgnoredDuringExecution: [] } } as core.Affinity })),
      ...Array.from({ length: 20 }, (_, i) => pod(`gpu-${i}`, { req: { cpu: '1' }, nodeSelector: { gpu: 'true' }, tolerations: [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }] })),
      ...Array.from({ length: 20 }, (_, i) => pod(`spread-${i}`, { labels: { app: 'spread' }, req: { cpu: '100m' }, spread: [{ maxSkew: 1, topologyKey: ZONE, whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: { app: 'spread' }, matchExpressions: [] } }] })),
      ...Array.from({ length: 20 }, (_, i) => pod(`near-web-${i}`, { req: { cpu: '100m' }, affinity: { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term({ app: 'web' }, ZONE)], preferredDuringSchedulingIgnoredDuringExecution: [] } } as core.Affinity })),
      ...Array.from({ length: 20 }, (_, i) => pod(`plain-${i}`, { req: { cpu: '250m', memory: '256Mi' } })),
      ...Array.from({ length: 5 }, (_, i) => pod(`huge-${i}`, { req: { cpu: '12' } })),
    ];
    for (const p of specs) {
      await client.create(wrap(POD, { ...p, apiVersion: 'v1', kind: 'Pod', metadata: { ...p.metadata!, namespace: nsName, uid: '', creationTimestamp: '' }, status: undefined }));
    }
    await until('95 pods bound', async () => (await pods()).filter((p) => p.spec?.nodeName).length === 95, 60_000);
    const all = await pods();
    const at = (name: string) => all.find((p) => p.metadata!.name === name)!.spec!.nodeName;
    const idx = (n: string) => Number(n.split('-')[0].slice(1));
    const zone = (n: string) => `z${idx(n) % 4}`;
    const web = Array.from({ length: 15 }, (_, i) => at(`web-${i}`));
    expect(new Set(web).size).toBe(15);
    for (const n of web) expect(idx(n)).toBeLessThan(15);
    for (let i = 0; i < 20; i++) expect(idx(at(`gpu-${i}`))).toBeGreaterThanOrEqual(15);
    const perZone = new Map<string, number>();
    for (let i = 0; i < 20; i++) perZone.set(zone(at(`spread-${i}`)), (perZone.get(zone(at(`spread-${i}`))) ?? 0) + 1);
    expect(Math.max(...perZone.values()) - Math.min(...perZone.values())).toBeLessThanOrEqual(1);
    const webZones = new Set(web.map(zone));
    for (let i = 0; i < 20; i++) expect(webZones.has(zone(at(`near-web-${i}`)))).toBe(true);

    // The pods that fit nowhere: condition and events in Kubernetes' shape.
    const huge = all.find((p) => p.metadata!.name === 'huge-0')!;
    expect(huge.status!.conditions.find((c) => c.type === 'PodScheduled')).toMatchObject({ status: 'False', reason: 'Unschedulable' });
    const events = await until('FailedScheduling events', async () => {
      const evs = (await client.listAll({ resource: 'events', namespace: nsName })).items.map((o) => unwrap(o).value as core.Event);
      return evs.some((e) => e.reason === 'FailedScheduling' && e.involvedObject?.name === 'huge-0') && evs;
    });
    const failed = events.find((e) => e.reason === 'FailedScheduling' && e.involvedObject?.name === 'huge-0')!;
    expect(failed.type).toBe('Warning');
    expect(failed.message).toMatch(/^0\/20 nodes are available: 15 Insufficient cpu, 5 node\(s\) had untolerated taint \{gpu: true\}\. preemption: /);
    expect(events.filter((e) => e.reason === 'Scheduled').length).toBeGreaterThanOrEqual(95);
    expect(events.find((e) => e.reason === 'Scheduled' && e.involvedObject?.name === 'plain-0')!.message).toMatch(new RegExp(`^Successfully assigned ${nsName}/plain-0 to n\\d+-${suffix}$`));

    // A node big enough appears: the waiting pods go there.
    await putNode(node(`big-${suffix}`, { alloc: { cpu: '128', memory: '64Gi' } }));
    await until('huge pods bound to the big node', async () => (await pods()).filter((p) => p.metadata!.name.startsWith('huge-') && p.spec?.nodeName === `big-${suffix}`).length === 5, 30_000);

    // Failover: kill the leader hard; the standby takes the lease within the lease duration and schedules.
    const killedAt = Date.now();
    replicas.get('a')!.proc.kill('SIGKILL');
    await replicas.get('a')!.exited;
    await until('replica b leads', async () => (await status('b')).leader, 15_000);
    // Within the 3 s lease duration, plus slack for a loaded 2-core machine.
    expect(Date.now() - killedAt).toBeLessThan(3000 + 3000);
    await client.create(wrap(POD, { ...pod('after-failover', { req: { cpu: '100m' } }), apiVersion: 'v1', kind: 'Pod', metadata: { name: 'after-failover', namespace: nsName, labels: {} } as core.ObjectMeta }));
    await until('the new leader schedules', async () => (await pods()).find((p) => p.metadata!.name === 'after-failover')?.spec?.nodeName, 20_000);
    expect((await status('b')).scheduledCount).toBeGreaterThanOrEqual(1);
  }, 150_000);
});
