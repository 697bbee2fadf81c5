// cni-manager on the real Store: a real etcd, the real berth-etcd-client process (a peer
// process here, not a code dependency), and berth-cni-manager processes for three "nodes",
// each its own network namespace on an underlay bridge. Node objects with podCIDR and
// InternalIP are created, changed and deleted through the Store; the routes to the other nodes'
// pod CIDRs appear, move and disappear in each node's netns, and a pod on one node reaches a
// pod on another over them. One cni-manager connects with mutual TLS (--store host:port
// --store-ca/--store-cert/--store-key) as a least-privilege identity bound by RBAC to read
// nodes; another through the deprecated --store-endpoint, which warns. Traffic stays between
// the test's namespaces and loopback.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { cni, core } from '@berth/api';
import { StoreClient, kindInfo, unwrap, wrap } from '@berth/apimachinery';
import { EtcdCluster, createClient, makeTestPki, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { netnsPath, probe, sh, startEchoServer, Topology, type TestNode } from './testing/topology';

const storeBin = path.resolve(__dirname, '..', '..', 'etcd-client', 'dist', 'bin', 'berth-etcd-client.js');
const cniBin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth-cni-manager.js');
const NODE = kindInfo('Node')!;

let dir: string;
let etcd: EtcdCluster | undefined;
let store: ServiceProcess | undefined;
let admin: StoreClient | undefined;
let topo: Topology;
const managers: ServiceProcess[] = [];
const clients: Array<{ close(): void }> = [];

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    }).on('error', reject);
  });
}

async function until<T>(what: string, fn: () => T | undefined | false, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let securePort = 0;
let pki: ReturnType<typeof makeTestPki>;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cni-store-'));
  topo = new Topology();
  pki = makeTestPki(path.join(dir, 'pki'), 'berth:cni-manager', 'berth:network');
  securePort = await freePort();
  etcd = await EtcdCluster.start({ dataRoot: path.join(dir, 'etcd'), removeDataOnDestroy: true });
  store = startServiceProcess(storeBin, [
    '--listen', `unix://${path.join(dir, 'store.sock')}`, '--state-dir', path.join(dir, 'store-state'), '--etcd-endpoints', etcd.endpoints.join(','),
    '--secure-listen', `127.0.0.1:${securePort}`, '--client-ca-file', pki.ca, '--tls-cert-file', pki.serverCert, '--tls-private-key-file', pki.serverKey,
  ]);
  expect(await waitServing(`unix://${path.join(dir, 'store.sock')}`, 30_000), store.output()).toBe('SERVING');
  admin = new StoreClient({ target: `unix://${path.join(dir, 'store.sock')}` });
  // The network daemon's identity may read nodes, nothing more (as calico-node's ClusterRole).
  const suffix = topo.id;
  await admin.create(wrap(kindInfo('ClusterRole')!, core.ClusterRole.fromPartial({
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: `berth-network-${suffix}` },
    rules: [{ verbs: ['get', 'list', 'watch'], apiGroups: [''], resources: ['nodes'] }],
  })));
  await admin.create(wrap(kindInfo('ClusterRoleBinding')!, core.ClusterRoleBinding.fromPartial({
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: `berth-network-${suffix}` },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `berth-network-${suffix}` },
    subjects: [{ kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: 'berth:cni-manager' }],
  })));
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const m of managers) await m.stop().catch(() => undefined);
  admin?.close();
  await store?.stop();
  await etcd?.destroy();
  topo?.destroy();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const nodeName = (n: number): string => `cni-${topo.id}-${n}`;

async function putNode(n: number, podCIDR: string, address: string, podCIDR6?: string): Promise<void> {
  const spec = { podCIDR, podCIDRs: [podCIDR, ...(podCIDR6 ? [podCIDR6] : [])] };
  const created = unwrap(await admin!.create(wrap(NODE, core.Node.fromPartial({ apiVersion: 'v1', kind: 'Node', metadata: { name: nodeName(n) }, spec })))).value as core.Node;
  await admin!.updateStatus(wrap(NODE, { ...created, status: core.NodeStatus.fromPartial({ addresses: [{ type: 'InternalIP', address }, { type: 'Hostname', address: nodeName(n) }] }) }));
}

async function moveNode(n: number, address: string): Promise<void> {
  const cur = unwrap(await admin!.get('nodes', '', nodeName(n))).value as core.Node;
  await admin!.updateStatus(wrap(NODE, { ...cur, status: { ...cur.status!, addresses: [{ type: 'InternalIP', address }] } }));
}

function startManager(node: TestNode, n: number, storeArgs: string[]): { sock: string; proc: ServiceProcess } {
  const sock = path.join(dir, `cni-${n}.sock`);
  const proc = startServiceProcess(cniBin, [
    '--listen', `unix://${sock}`, '--state-dir', path.join(dir, `cni-state-${n}`), '--host-netns', node.netns,
    '--mode', 'routed', '--node-name', nodeName(n), ...storeArgs,
  ]);
  managers.push(proc);
  return { sock, proc };
}

function call<T>(client: unknown, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => (client as Record<string, Function>)[method]!(req, (e: ServiceError | null, r: T) => (e ? reject(e) : resolve(r))));
}

describe('node routes from the real Store', () => {
  it('programs, moves and removes routes to other nodes as Node objects change; pods talk across nodes over them', async () => {
    const cidr = (n: number): string => `10.${80 + (topo.subnet % 20)}.${n}.0/24`;
    const nodes = [1, 2, 3].map((n) => topo.node(n, cidr(n)));
    const [n1, n2, n3] = nodes as [TestNode, TestNode, TestNode];
    const u = `192.168.${topo.subnet}`;
    // Node 1 is registered (dual-stack) before its cni-manager starts: it takes its pod CIDRs from it.
    const cidr6 = `fd00:${80 + (topo.subnet % 20)}:1::/64`;
    await putNode(1, cidr(1), n1.address, cidr6);
    const m1 = startManager(n1, 1, ['--store', `127.0.0.1:${securePort}`, '--store-ca', pki.ca, '--store-cert', pki.clientCert, '--store-key', pki.clientKey]);
    expect(await waitServing(`unix://${m1.sock}`, 30_000), m1.proc.output()).toBe('SERVING');
    const c1 = createClient(cni.NetworkServiceClient, { target: `unix://${m1.sock}` });
    clients.push(c1);
    expect((await call<cni.StatusResponse>(c1, 'status', {})).podCidr).toBe(cidr(1));

    const routes = (ns: string): string => sh('ip', ['-n', ns, 'route', 'show']);
    await putNode(2, cidr(2), n2.address);
    await putNode(3, cidr(3), n3.address);
    await until('routes to nodes 2 and 3 on node 1', () => routes(n1.name).includes(`${cidr(2)} via ${n2.address} `) && routes(n1.name).includes(`${cidr(3)} via ${n3.address} `));
    expect(routes(n1.name)).not.toContain(`${cidr(1)} via`); // never to itself
    expect((await call<cni.StatusResponse>(c1, 'status', {})).conditions).toContainEqual(expect.objectContaining({ type: 'NodeRoutesSynced', status: 'True', reason: 'Watching' }));

    // Node 2's cni-manager uses the deprecated flag on the Store's unix socket: it works and warns.
    const m2 = startManager(n2, 2, ['--store-endpoint', `unix://${path.join(dir, 'store.sock')}`]);
    expect(await waitServing(`unix://${m2.sock}`, 30_000), m2.proc.output()).toBe('SERVING');
    expect(m2.proc.output()).toMatch(/--store-endpoint \(BERTH_STORE_ENDPOINT\) is deprecated; use --store/);
    await until('route to node 1 on node 2', () => routes(n2.name).includes(`${cidr(1)} via ${n1.address} `));
    const c2 = createClient(cni.NetworkServiceClient, { target: `unix://${m2.sock}` });
    clients.push(c2);

    // A pod on node 1 reaches a pod on node 2 over the learned routes (TCP and UDP).
    const p1 = netnsPath(topo.netns('p'));
    const p2name = topo.netns('p');
    const r1 = await call<cni.SetUpPodResponse>(c1, 'setUpPod', cni.SetUpPodRequest.fromPartial({ sandboxId: `s1-${topo.id}`, netnsPath: p1 }));
    const r2 = await call<cni.SetUpPodResponse>(c2, 'setUpPod', cni.SetUpPodRequest.fromPartial({ sandboxId: `s2-${topo.id}`, netnsPath: netnsPath(p2name) }));
    const ip2 = r2.ips[0]!.split('/')[0]!;
    expect(r1.ips[0]).toMatch(new RegExp(`^${cidr(1).split('.').slice(0, 3).join('\\.')}\\.`));
    expect(r1.ips[1]).toBe(`${cidr6.split('/')[0]}2/128`);
    await startEchoServer(topo, p2name, 7070, 'pod2');
    const p1name = path.basename(p1);
    expect(await probe(p1name, 'tcp', ip2, 7070)).toBe('pod2:hi');
    expect(await probe(p1name, 'udp', ip2, 7070)).toBe('pod2:hi');

    // Node 3 moves to another address: the route follows.
    await moveNode(3, `${u}.33`);
    await until('the moved route to node 3', () => routes(n1.name).includes(`${cidr(3)} via ${u}.33 `));
    expect(routes(n1.name)).not.toContain(`${cidr(3)} via ${n3.address} `);
    // Node 2 moves away and back: pods reach each other again only once it is back.
    await moveNode(2, `${u}.22`);
    await until('the moved route to node 2', () => routes(n1.name).includes(`${cidr(2)} via ${u}.22 `));
    expect(await probe(p1name, 'tcp', ip2, 7070)).toMatch(/TIMEOUT|ERROR/);
    await moveNode(2, n2.address);
    await until('the route to node 2 back', () => routes(n1.name).includes(`${cidr(2)} via ${n2.address} `));
    expect(await probe(p1name, 'tcp', ip2, 7070)).toBe('pod2:hi');

    // Node 3 is deleted: its route goes, the others stay.
    await admin!.delete({ resource: 'nodes', name: nodeName(3) });
    await until('the removal of the route to node 3', () => !routes(n1.name).includes(cidr(3)));
    expect(routes(n1.name)).toContain(`${cidr(2)} via ${n2.address} `);
    await until('the removal on node 2 too', () => !routes(n2.name).includes(cidr(3)));

    await call(c1, 'tearDownPod', cni.TearDownPodRequest.fromPartial({ sandboxId: `s1-${topo.id}`, netnsPath: p1 }));
    await call(c2, 'tearDownPod', cni.TearDownPodRequest.fromPartial({ sandboxId: `s2-${topo.id}`, netnsPath: netnsPath(p2name) }));
  }, 120_000);

  it('with a Store identity that may not read nodes: fails clearly without a pod CIDR; with one it serves, and Status says why routes are missing', async () => {
    // A certificate of the Store's CA for a user no binding grants anything.
    const openssl = (args: string[]): string => sh('openssl', args);
    const key = path.join(pki.dir, 'nobody.key');
    const csr = path.join(pki.dir, 'nobody.csr');
    const crt = path.join(pki.dir, 'nobody.crt');
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', '/O=nobody/CN=nobody']);
    openssl(['x509', '-req', '-in', csr, '-CA', pki.ca, '-CAkey', path.join(pki.dir, 'ca.key'), '-CAcreateserial', '-out', crt, '-days', '1']);
    const n9 = topo.node(9, '10.99.9.0/24');
    const m = startManager(n9, 9, ['--store', `127.0.0.1:${securePort}`, '--store-ca', pki.ca, '--store-cert', crt, '--store-key', key]);
    const exit = await m.proc.exited;
    expect(exit.code, m.proc.output()).not.toBe(0);
    expect(m.proc.output()).toMatch(/forbidden|permission|denied/i);
    // Given its pod CIDR it serves pods, and Status says why routes to other nodes are missing.
    const served = startManager(n9, 11, ['--pod-cidr', '10.99.9.0/24', '--store', `127.0.0.1:${securePort}`, '--store-ca', pki.ca, '--store-cert', crt, '--store-key', key]);
    expect(await waitServing(`unix://${served.sock}`, 30_000), served.proc.output()).toBe('SERVING');
    const c = createClient(cni.NetworkServiceClient, { target: `unix://${served.sock}` });
    clients.push(c);
    let cond: cni.NetworkCondition | undefined;
    for (let i = 0; i < 100 && cond?.reason !== 'PermissionDenied'; i++) {
      cond = (await call<cni.StatusResponse>(c, 'status', {})).conditions.find((x) => x.type === 'NodeRoutesSynced');
      if (cond?.reason !== 'PermissionDenied') await new Promise((r) => setTimeout(r, 200));
    }
    expect(cond).toMatchObject({ status: 'False', reason: 'PermissionDenied' });
    expect(cond!.message).toMatch(/needs get\/list\/watch on nodes/);
    expect(served.proc.output()).toMatch(/refuses to let this identity watch Node objects/);
    // Half a TLS pair is refused by name before anything is touched.
    const half = startManager(n9, 10, ['--store', `127.0.0.1:${securePort}`, '--store-ca', pki.ca, '--store-cert', crt]);
    expect((await half.proc.exited).code).not.toBe(0);
    expect(half.proc.output()).toMatch(/store-cert and store-key must be given together/);
  }, 60_000);
});
