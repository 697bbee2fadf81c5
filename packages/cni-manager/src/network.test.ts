// PodNetwork on the real kernel: nodes and pods are network namespaces this test makes; traffic
// is TCP and UDP between them (no ping on this machine). After every test: the leak check.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Netns, Rtnl, RTPROT_BERTH, sysctl } from '@berth/native';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PodNetwork, ROUTED_GATEWAY, ROUTED_GATEWAY6, type Mode, type SetUpRequest } from './network';
import { IpamStore } from './ipam';
import { netnsPath, probe, send, sh, startEchoServer, startSink, Topology, type TestNode } from './testing/topology';

let topo: Topology;
let nets: PodNetwork[];
let dirs: string[];

beforeEach(() => {
  topo = new Topology();
  nets = [];
  dirs = [];
});

afterEach(async () => {
  try {
    for (const net of nets) {
      for (const a of net.list()) await net.tearDown({ sandboxId: a.sandboxId });
      await net.drain();
      await leakCheck(net);
      await net.close();
      // On disk too: the journal, replayed, holds no claim.
      const again = await new IpamStore(path.join(net.config.stateDir, 'ipam'), { cidr: net.ipam.cidr }).load();
      expect([...again.allocations().keys()]).toEqual([]);
      again.close();
    }
  } finally {
    topo.destroy();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  }
});

/** Nothing of ours left in the node namespace: links, routes, proxy neighbours, qdiscs, rules, allocations. */
async function leakCheck(net: PodNetwork): Promise<void> {
  const hostNs = Netns.open(net.config.hostNetns!);
  const rt = Rtnl.open(hostNs);
  try {
    const links = await rt.links();
    expect(links.filter((l) => /^b[vi][0-9a-f]{12}$/.test(l.name)).map((l) => l.name)).toEqual([]);
    const nodeRoutes = new Set((net.config.nodeRoutes ?? []).map((r) => r.podCidr));
    // The routed-mode gateway's route (on a node without a default route) is node state, not a pod's.
    const lo = (await rt.link('lo'))!.index;
    expect((await rt.routes()).filter((r) => r.protocol === RTPROT_BERTH && !nodeRoutes.has(r.dst) && !(r.dst === `${ROUTED_GATEWAY}/32` && r.oif === lo))).toEqual([]);
    expect((await rt.routes(undefined, 6)).filter((r) => r.protocol === RTPROT_BERTH && !nodeRoutes.has(r.dst))).toEqual([]);
    expect(await rt.neighbours({ proxy: true })).toEqual([]);
    const qdiscKinds = (await rt.qdiscs()).map((q) => q.kind).filter((k) => k === 'tbf' || k === 'ingress');
    expect(qdiscKinds).toEqual([]);
  } finally {
    rt.close();
    hostNs.close();
  }
  expect(sh('nsenter', [`--net=${net.config.hostNetns}`, 'iptables-save'])).not.toMatch(/berth-fault|berth-hostport/);
  expect(sh('nsenter', [`--net=${net.config.hostNetns}`, 'ip6tables-save'])).not.toMatch(/berth-fault|berth-hostport/);
  expect([...net.ipam.allocations().keys()]).toEqual([]);
  expect([...(net.ipam6?.allocations().keys() ?? [])]).toEqual([]);
}

async function managerOn(node: TestNode, mode: Mode, others: TestNode[] = [], extra: Partial<ConstructorParameters<typeof PodNetwork>[0]> = {}): Promise<PodNetwork> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cni-net-'));
  dirs.push(dir);
  const net = new PodNetwork({
    mode, podCidr: node.podCidr, stateDir: dir, hostNetns: node.netns, bridgeName: `br${topo.id}`,
    nodeRoutes: others.map((o) => ({ podCidr: o.podCidr, via: o.address })), ...extra,
  });
  await net.start();
  nets.push(net);
  return net;
}

let podSeq = 0;
async function pod(net: PodNetwork, extra: { annotations?: Record<string, string>; portMappings?: SetUpRequest['portMappings'] } = {}): Promise<{ ns: string; ip: string; id: string }> {
  const ns = topo.netns('p');
  const id = `sb-${topo.id}-${podSeq++}`;
  const res = await net.setUp({ podUid: `uid-${id}`, podNamespace: 'default', podName: id, sandboxId: id, netnsPath: netnsPath(ns), interfaceName: 'eth0', annotations: extra.annotations ?? {}, portMappings: extra.portMappings ?? [] });
  return { ns, ip: res.ips[0]!.split('/')[0]!, id };
}

describe.each(['bridge', 'routed'] as const)('%s mode on one node', (mode) => {
  it('connects pods to each other and to the node over TCP and UDP', async () => {
    const node = topo.node(1, '10.61.1.0/24');
    const net = await managerOn(node, mode);
    const a = await pod(net);
    const b = await pod(net);
    expect(a.ip).toBe('10.61.1.2');
    expect(b.ip).toBe('10.61.1.3');
    await startEchoServer(topo, a.ns, 7000, 'A');
    await startEchoServer(topo, node.name, 7001, 'N');
    expect(await probe(b.ns, 'tcp', a.ip, 7000, 'x')).toBe('A:x');
    expect(await probe(b.ns, 'udp', a.ip, 7000, 'y')).toBe('A:y');
    expect(await probe(node.name, 'tcp', a.ip, 7000, 'z')).toBe('A:z');
    expect(await probe(a.ns, 'udp', node.address, 7001, 'w')).toBe('N:w');
    // A pod reaches itself through its gateway too (hairpin / routed loop back).
    const podRt = Rtnl.open(Netns.open(netnsPath(a.ns)));
    try {
      const routes = await podRt.routes();
      const neigh = await podRt.neighbours();
      if (mode === 'bridge') {
        expect(routes.find((r) => r.dst === 'default')).toMatchObject({ gw: '10.61.1.1' });
        // The node learned the pod's MAC (derived from its IP, so a reused IP keeps its MAC).
        const hostNs = Netns.open(node.netns);
        const hostRt = Rtnl.open(hostNs);
        try {
          expect((await hostRt.neighbours()).find((n) => n.ip === a.ip)?.mac).toBe('0a:58:0a:3d:01:02');
        } finally { hostRt.close(); hostNs.close(); }
      } else {
        expect(routes.find((r) => r.dst === 'default')).toMatchObject({ gw: ROUTED_GATEWAY, onlink: true });
        expect(routes.find((r) => r.dst === `${ROUTED_GATEWAY}/32`)).toMatchObject({ scope: 253 });
        // 169.254.1.1 was resolved by proxy ARP to the host end of the veth.
        const hostEnd = sh('ip', ['-n', node.name, '-j', 'link', 'show', net.list().find((x) => x.sandboxId === a.id)!.hostVeth]);
        expect(neigh.find((n) => n.ip === ROUTED_GATEWAY)?.mac).toBe(JSON.parse(hostEnd)[0].address);
        const hostNs = Netns.open(node.netns);
        try {
          expect(sysctl(hostNs, `net/ipv4/conf/${JSON.parse(hostEnd)[0].ifname}/proxy_arp`)).toBe('1');
        } finally { hostNs.close(); }
        expect(sh('ip', ['-n', node.name, 'route', 'show', `${a.ip}/32`])).toMatch(/scope link/);
      }
    } finally { podRt.close(); }
  });
});

describe('announcing a pod (bridge mode)', () => {
  it('corrects the node\'s stale entry for a reused address with a gratuitous ARP to the node alone, and gives single-stack veths no IPv6 link-local', async () => {
    const node = topo.node(1, '10.63.1.0/24');
    const net = await managerOn(node, 'bridge');
    const br = `br${topo.id}`;
    const brMac = (): string => (JSON.parse(sh('ip', ['-n', node.name, '-j', 'link', 'show', br])) as Array<{ address: string }>)[0]!.address;
    // Pinned (derived from the gateway 10.63.1.1): ports coming and going never change it, so
    // neither the node's ARP cache nor the pods' gateway entries are disturbed.
    expect(brMac()).toBe('0a:58:0a:3f:01:01');
    // A first pod gives the bridge its carrier for good (an empty bridge has none, and losing
    // it flushes the node's entries on it).
    const first = await pod(net);
    expect(first.ip).toBe('10.63.1.2');
    // Entries the node might hold from earlier pods: the next pods get 10.63.1.3 and 10.63.1.4.
    for (const ip of ['10.63.1.3', '10.63.1.4']) sh('ip', ['-n', node.name, 'neigh', 'replace', ip, 'lladdr', '02:00:00:00:00:99', 'dev', br, 'nud', 'stale']);
    const macOf = (ip: string): string | undefined => (JSON.parse(sh('ip', ['-n', node.name, '-j', 'neigh', 'show', ip, 'dev', br])) as Array<{ lladdr?: string }>)[0]?.lladdr;
    // The frame is handled in softirq, which a loaded machine may run a little later.
    const macSoon = async (ip: string, want: string): Promise<string | undefined> => {
      for (let t = 0; t < 100 && macOf(ip) !== want; t++) await new Promise((r) => setTimeout(r, 20));
      return macOf(ip);
    };
    const b = await pod(net);
    expect(b.ip).toBe('10.63.1.3');
    expect(await macSoon('10.63.1.3', '0a:58:0a:3f:01:03')).toBe('0a:58:0a:3f:01:03');
    expect(macOf('10.63.1.4')).toBe('02:00:00:00:00:99');
    // b would now make an entry from any gratuitous ARP it hears; a's must not reach it.
    sh('ip', ['netns', 'exec', b.ns, 'sysctl', '-qw', 'net.ipv4.conf.eth0.arp_accept=1']);
    const a = await pod(net);
    expect(a.ip).toBe('10.63.1.4');
    expect(await macSoon('10.63.1.4', '0a:58:0a:3f:01:04')).toBe('0a:58:0a:3f:01:04');
    expect(JSON.parse(sh('ip', ['-n', b.ns, '-j', 'neigh', 'show', a.ip]))).toEqual([]);
    await startEchoServer(topo, a.ns, 7000, 'A');
    expect(await probe(b.ns, 'tcp', a.ip, 7000, 'x')).toBe('A:x');
    expect(brMac()).toBe('0a:58:0a:3f:01:01');
    // No automatic IPv6 on either end of a single-stack pod's veth; the pod's loopback keeps ::1.
    expect(sh('ip', ['-n', a.ns, '-6', 'addr', 'show', 'dev', 'eth0']).trim()).toBe('');
    const hostVeth = net.list().find((x) => x.sandboxId === a.id)!.hostVeth;
    expect(sh('ip', ['-n', node.name, '-6', 'addr', 'show', 'dev', hostVeth]).trim()).toBe('');
    expect(sh('ip', ['-n', a.ns, '-6', 'addr', 'show', 'dev', 'lo'])).toMatch(/::1\/128/);
  });
});

describe('attachment lifecycle', () => {
  it('is idempotent, checks itself, reports status and lists attachments', async () => {
    const node = topo.node(1, '10.62.1.0/24');
    const net = await managerOn(node, 'bridge');
    const a = await pod(net);
    const again = await net.setUp({ podUid: 'u', podNamespace: 'default', podName: a.id, sandboxId: a.id, netnsPath: netnsPath(a.ns), interfaceName: 'eth0', annotations: {} });
    expect(again.ips).toEqual([`${a.ip}/24`]);
    expect(net.list()).toHaveLength(1);
    expect(await net.check(a.id)).toEqual([]);
    sh('ip', ['-n', a.ns, 'addr', 'flush', 'dev', 'eth0']);
    expect(await net.check(a.id)).toContain(`address ${a.ip}/24 missing on eth0`);
    await net.tearDown({ sandboxId: a.id });
    await net.tearDown({ sandboxId: a.id });
    await net.tearDown({ sandboxId: 'never-seen' });
    expect(net.list()).toEqual([]);
    await net.drain();
    expect(sh('ip', ['-n', a.ns, 'link', 'show'])).not.toMatch(/eth0/);
  });

  it('restarts from its journals, and takes over the state of the older file-per-record layout', async () => {
    const node = topo.node(1, '10.62.2.0/24');
    const first = await managerOn(node, 'bridge');
    const a = await pod(first);
    const b = await pod(first);
    const [recA, recB] = [first.record(a.id)!, first.record(b.id)!];
    await first.close();
    nets.splice(nets.indexOf(first), 1);
    const again = new PodNetwork(first.config);
    await again.start();
    expect(again.list().map((r) => r.sandboxId).sort()).toEqual([a.id, b.id].sort());
    await again.close();
    // The layout before the journals: a record file per attachment (".deleting" once TearDown
    // answered) and a claim file per address.
    const dir = first.config.stateDir;
    const hash = (id: string): string => createHash('sha256').update(id).digest('hex').slice(0, 32);
    for (const f of ['attachments.journal', 'ipam/ipv4.journal']) fs.rmSync(path.join(dir, f));
    fs.mkdirSync(path.join(dir, 'attachments'));
    fs.writeFileSync(path.join(dir, 'attachments', `${hash(a.id)}.json`), JSON.stringify(recA));
    fs.writeFileSync(path.join(dir, 'attachments', `${hash(b.id)}.deleting`), JSON.stringify(recB));
    fs.writeFileSync(path.join(dir, 'ipam', a.ip), a.id);
    fs.writeFileSync(path.join(dir, 'ipam', b.ip), b.id);
    const adopted = new PodNetwork(first.config);
    await adopted.start();
    nets.push(adopted);
    // a is attached as before; b's interrupted teardown was finished.
    expect(adopted.list().map((r) => r.sandboxId)).toEqual([a.id]);
    expect(await adopted.check(a.id)).toEqual([]);
    expect([...adopted.ipam.allocations()]).toEqual([[a.ip, a.id]]);
    expect(sh('ip', ['-n', b.ns, 'link', 'show'])).not.toMatch(/eth0/);
    expect(fs.existsSync(path.join(dir, 'attachments'))).toBe(false);
    expect(fs.readdirSync(path.join(dir, 'ipam')).sort()).toEqual(['ipv4.journal', 'ipv4.journal.lock']);
  });

  it('garbage-collects attachments and addresses of sandboxes that are gone', async () => {
    const node = topo.node(1, '10.63.1.0/24');
    const net = await managerOn(node, 'routed');
    const a = await pod(net);
    const b = await pod(net);
    const r = await net.gc([b.id]);
    expect(r.removed).toEqual([a.id]);
    expect(r.released).toEqual([a.ip]);
    expect(net.list().map((x) => x.sandboxId)).toEqual([b.id]);
  });
});

describe('bad input leaves nothing behind', () => {
  it('names the field for a netns that is not one, a bad or taken interface name, an exhausted CIDR and conflicting annotations', async () => {
    const node = topo.node(1, '10.64.1.0/30');
    const net = await managerOn(node, 'bridge');
    const ns = topo.netns('p');
    const base = { podUid: 'u', podNamespace: 'd', podName: 'p', sandboxId: `bad-${topo.id}`, netnsPath: netnsPath(ns), interfaceName: 'eth0', annotations: {} };
    await expect(net.setUp({ ...base, netnsPath: '/etc/hostname' })).rejects.toThrow(/netns_path: \/etc\/hostname is not a network namespace/);
    await expect(net.setUp({ ...base, netnsPath: node.netns })).rejects.toThrow(/netns_path: .* is the node's own network namespace/);
    await expect(net.setUp({ ...base, interfaceName: 'much-too-long-name0' })).rejects.toThrow(/interface_name: .*not a valid interface name/);
    sh('ip', ['-n', ns, 'link', 'add', 'eth0', 'type', 'bridge']);
    await expect(net.setUp(base)).rejects.toThrow(/interface_name: eth0 is already taken/);
    sh('ip', ['-n', ns, 'link', 'del', 'eth0']);
    await expect(net.setUp({ ...base, annotations: { 'kubernetes.io/ingress-bandwidth': '10 potatoes' } })).rejects.toThrow(/annotations\[kubernetes.io\/ingress-bandwidth\]: expected a quantity/);
    await expect(net.setUp({ ...base, annotations: { 'kubernetes.io/ingress-bandwidth': '10M' }, bandwidth: { ingressRate: 5e6 } })).rejects.toThrow(/conflicts with bandwidth.ingress_rate/);
    expect(net.ipam.allocations().size).toBe(0);
    // A /30 has one address left after the gateway.
    await pod(net);
    await expect(pod(net)).rejects.toThrow(/podCidr 10.64.1.0\/30: no free address left/);
    expect(net.ipam.allocations().size).toBe(1);
  });
});

describe('across nodes', () => {
  it.each(['bridge', 'routed'] as const)('%s: pods on three nodes talk TCP and UDP through node routes', async (mode) => {
    const nodes = [topo.node(1, '10.65.1.0/24'), topo.node(2, '10.65.2.0/24'), topo.node(3, '10.65.3.0/24')];
    const managers = [];
    for (const n of nodes) managers.push(await managerOn(n, mode, nodes.filter((o) => o !== n)));
    const pods = [];
    for (const m of managers) pods.push(await pod(m));
    for (const [i, p] of pods.entries()) await startEchoServer(topo, p.ns, 7100, `P${i}`);
    expect(await probe(pods[0]!.ns, 'tcp', pods[1]!.ip, 7100, 'a')).toBe('P1:a');
    expect(await probe(pods[1]!.ns, 'udp', pods[2]!.ip, 7100, 'b')).toBe('P2:b');
    expect(await probe(pods[2]!.ns, 'tcp', pods[0]!.ip, 7100, 'c')).toBe('P0:c');
    expect(await probe(pods[2]!.ns, 'udp', pods[0]!.ip, 7100, 'd')).toBe('P0:d');
    expect(sh('ip', ['-n', nodes[0]!.name, 'route', 'show', '10.65.2.0/24'])).toMatch(new RegExp(`via ${nodes[1]!.address.replace(/\./g, '\\.')}`));
  });
});

describe('routed mode on nodes without a default route', () => {
  it('makes 169.254.1.1 routable (dev lo) so proxy ARP answers, pods talk across nodes, and the route goes once another covers it', async () => {
    const nodes = [topo.node(1, '10.66.1.0/24', undefined, { defaultRoute: false }), topo.node(2, '10.66.2.0/24', undefined, { defaultRoute: false })];
    const gwRoute = (n: TestNode) => sh('ip', ['-n', n.name, '-j', 'route', 'show', 'table', 'all', `${ROUTED_GATEWAY}/32`]);
    // Before: nothing routes the gateway address, so the kernel would not proxy ARP for it.
    expect(JSON.parse(gwRoute(nodes[0]!))).toEqual([]);
    const managers = [];
    for (const n of nodes) managers.push(await managerOn(n, 'routed', nodes.filter((o) => o !== n)));
    for (const n of nodes) expect(JSON.parse(gwRoute(n))).toMatchObject([{ dst: ROUTED_GATEWAY, dev: 'lo', protocol: '190', scope: 'link' }]);
    const [a, b, c] = [await pod(managers[0]!), await pod(managers[0]!), await pod(managers[1]!)];
    await startEchoServer(topo, a.ns, 7150, 'A');
    await startEchoServer(topo, c.ns, 7150, 'C');
    expect(await probe(b.ns, 'tcp', a.ip, 7150, 'same-node')).toBe('A:same-node');
    expect(await probe(a.ns, 'tcp', c.ip, 7150, 'x')).toBe('C:x');
    expect(await probe(c.ns, 'udp', a.ip, 7150, 'y')).toBe('A:y');
    // A restart keeps the one route (no duplicate, no error).
    await managers[0]!.close();
    nets.splice(nets.indexOf(managers[0]!), 1);
    const again = await managerOn(nodes[0]!, 'routed', [nodes[1]!], { stateDir: managers[0]!.config.stateDir });
    expect(JSON.parse(gwRoute(nodes[0]!))).toHaveLength(1);
    expect(await probe(c.ns, 'tcp', a.ip, 7150, 'z')).toBe('A:z');
    // The node gets a default route of its own: ours is no longer needed and goes on the next start;
    // proxy ARP keeps working through the default route (a fresh pod resolves the gateway anew).
    sh('ip', ['-n', nodes[0]!.name, 'route', 'add', 'default', 'via', `192.168.${topo.subnet}.254`]);
    await again.close();
    nets.splice(nets.indexOf(again), 1);
    const third = await managerOn(nodes[0]!, 'routed', [nodes[1]!], { stateDir: again.config.stateDir });
    expect(JSON.parse(gwRoute(nodes[0]!))).toEqual([]);
    const d = await pod(third);
    expect(await probe(d.ns, 'tcp', c.ip, 7150, 'w')).toBe('C:w');
  });

  it('leaves a node that already routes 169.254.1.1 alone', async () => {
    const node = topo.node(1, '10.67.1.0/24');
    await managerOn(node, 'routed');
    expect(JSON.parse(sh('ip', ['-n', node.name, '-j', 'route', 'show', 'table', 'all', `${ROUTED_GATEWAY}/32`]))).toEqual([]);
  });
});

describe('UDP and conntrack', () => {
  // The classic stale-entry problem: a client's UDP flow is NATed to a pod; the pod is replaced
  // and the NAT now points at the new one, but the old conntrack entry keeps sending the flow
  // to the old address, where nothing answers, until it is flushed.
  it.each([false, true])('a UDP flow follows a replaced pod only when conntrack is flushed (flush=%s)', async (flush) => {
    const node = topo.node(1, '10.66.1.0/24');
    const net = await managerOn(node, 'bridge', [], { conntrackFlush: flush });
    const old = await pod(net);
    await startEchoServer(topo, old.ns, 5300, 'old');
    const dnat = (ip: string, op: '-A' | '-D'): string => sh('ip', ['netns', 'exec', node.name, 'iptables', '-w', '-t', 'nat', op, 'OUTPUT', '-p', 'udp', '-d', node.address, '--dport', '5353', '-j', 'DNAT', '--to-destination', `${ip}:5300`]);
    dnat(old.ip, '-A');
    try {
      expect(await probe(node.name, 'udp', node.address, 5353, 'q', 40053)).toBe('old:q');
      await net.tearDown({ sandboxId: old.id });
      await net.drain(); // the flush follows the link's removal, a few ms after TearDown answers
      const fresh = await pod(net);
      expect(fresh.ip).not.toBe(old.ip);
      await startEchoServer(topo, fresh.ns, 5300, 'new');
      dnat(old.ip, '-D');
      dnat(fresh.ip, '-A');
      const reply = await probe(node.name, 'udp', node.address, 5353, 'q', 40053);
      expect(reply).toBe(flush ? 'new:q' : 'TIMEOUT');
      dnat(fresh.ip, '-D');
    } finally {
      sh('ip', ['netns', 'exec', node.name, 'iptables', '-w', '-t', 'nat', '-F', 'OUTPUT']);
    }
    if (!flush) sh('ip', ['netns', 'exec', node.name, 'conntrack', '-F']);
  });

  it('a UDP server in a pod answers clients on its node and on another node', async () => {
    const n1 = topo.node(1, '10.67.1.0/24');
    const n2 = topo.node(2, '10.67.2.0/24');
    const m1 = await managerOn(n1, 'routed', [n2]);
    const m2 = await managerOn(n2, 'routed', [n1]);
    const server = await pod(m1);
    const far = await pod(m2);
    const near = await pod(m1);
    await startEchoServer(topo, server.ns, 5400, 'S');
    expect(await probe(near.ns, 'udp', server.ip, 5400, 'n')).toBe('S:n');
    expect(await probe(far.ns, 'udp', server.ip, 5400, 'f')).toBe('S:f');
    expect(await probe(n2.name, 'udp', server.ip, 5400, 'h')).toBe('S:h');
  });
});

describe('bandwidth and faults', () => {
  it('shapes ingress (tbf on the host end) and egress (ifb + tbf) from the Kubernetes annotations', async () => {
    const node = topo.node(1, '10.68.1.0/24');
    const net = await managerOn(node, 'bridge');
    const shaped = await pod(net, { annotations: { 'kubernetes.io/ingress-bandwidth': '1M', 'kubernetes.io/egress-bandwidth': '1M' } });
    const free = await pod(net);
    await startSink(topo, shaped.ns, 7300);
    await startSink(topo, free.ns, 7300);
    await startSink(topo, node.name, 7301);
    const bytes = 256 * 1024; // 2 Mbit: ~2 s at 1 Mbit/s, a few ms unshaped
    const into = await send(node.name, 'tcp', shaped.ip, 7300, bytes);
    const out = await send(shaped.ns, 'tcp', node.address, 7301, bytes);
    const baseline = await send(node.name, 'tcp', free.ip, 7300, bytes);
    expect(into.received).toBe(bytes);
    expect(out.received).toBe(bytes);
    expect(into.seconds).toBeGreaterThan(1.2);
    expect(out.seconds).toBeGreaterThan(1.2);
    expect(baseline.seconds).toBeLessThan(1.0);
    const rec = net.list().find((r) => r.sandboxId === shaped.id)!;
    expect(sh('tc', ['-n', node.name, 'qdisc', 'show', 'dev', rec.hostVeth])).toMatch(/tbf .*rate 1Mbit/);
    expect(sh('tc', ['-n', node.name, 'qdisc', 'show', 'dev', rec.ifb!])).toMatch(/tbf .*rate 1Mbit/);
  });

  it('drops packets with a loss fault (iptables statistic, no netem here), reports what it cannot do, and clears', async () => {
    const node = topo.node(1, '10.69.1.0/24');
    const net = await managerOn(node, 'routed');
    const p = await pod(net);
    await startSink(topo, node.name, 7400);
    const before = await send(p.ns, 'udp', node.address, 7400, 200);
    expect(before.received).toBe(200);
    // As if the start-up probe of iptables had failed for a passing reason: the fault asks again.
    net.caps.iptablesStatistic = false;
    const r = await net.setFaults(p.id, { direction: 'egress', delayMs: 20, jitterMs: 0, lossPercent: 50, duplicatePercent: 0, reorderPercent: 0, corruptPercent: 0, rate: '' });
    expect(r.applied).toEqual([{ fault: 'loss', direction: 'egress', mechanism: 'iptables-statistic', detail: '50%' }]);
    if (!net.caps.netem) expect(r.unsupported).toEqual([{ fault: 'delay', reason: 'sch_netem is not available in this kernel' }]);
    // The sink counts cumulatively.
    const lossy = (await send(p.ns, 'udp', node.address, 7400, 200)).received - before.received;
    expect(lossy).toBeGreaterThan(50);
    expect(lossy).toBeLessThan(150);
    if (!net.caps.netem) {
      await expect(net.setFaults(p.id, { direction: 'both', delayMs: 10, jitterMs: 5, lossPercent: 0, duplicatePercent: 1, reorderPercent: 0, corruptPercent: 0, rate: '' }))
        .rejects.toThrow(/none of the requested faults can be applied here: delay \(sch_netem is not available in this kernel\); jitter/);
    }
    await expect(net.setFaults(p.id, { direction: 'egress', delayMs: 0, jitterMs: 0, lossPercent: 150, duplicatePercent: 0, reorderPercent: 0, corruptPercent: 0, rate: '' })).rejects.toThrow(/loss_percent: expected 0..100/);
    await expect(net.setFaults(p.id, { direction: 'egress', delayMs: 0, jitterMs: 0, lossPercent: 0, duplicatePercent: 0, reorderPercent: 0, corruptPercent: 0, rate: 'fast' })).rejects.toThrow(/rate: expected a tc rate/);
    const rate = await net.setFaults(p.id, { direction: 'both', delayMs: 0, jitterMs: 0, lossPercent: 0, duplicatePercent: 0, reorderPercent: 0, corruptPercent: 0, rate: '1mbit' });
    expect(rate.applied.map((a) => `${a.fault}/${a.direction}/${a.mechanism}`)).toEqual(['rate/egress/tbf', 'rate/ingress/tbf']);
    expect(sh('tc', ['-n', p.ns, 'qdisc', 'show', 'dev', 'eth0'])).toMatch(/tbf .*rate 1Mbit/);
    await net.clearFaults(p.id);
    await net.clearFaults(p.id);
    expect(sh('tc', ['-n', p.ns, 'qdisc', 'show', 'dev', 'eth0'])).not.toMatch(/tbf/);
    expect(sh('ip', ['netns', 'exec', p.ns, 'iptables-save'])).not.toMatch(/berth-fault/);
    const total = (await send(p.ns, 'udp', node.address, 7400, 0)).received;
    const after = await send(p.ns, 'udp', node.address, 7400, 200);
    expect(after.received - total).toBe(200);
  });
});

describe('host port mappings', () => {
  it('DNATs a node port to the pod for traffic from another node and from the node itself, and refuses clashes', async () => {
    const n1 = topo.node(1, '10.72.1.0/24');
    const n2 = topo.node(2, '10.72.2.0/24');
    const net = await managerOn(n1, 'bridge');
    const web = await pod(net, { portMappings: [{ protocol: 'tcp', containerPort: 8080, hostPort: 18080, hostIp: '' }, { protocol: 'udp', containerPort: 8080, hostPort: 18080, hostIp: '' }] });
    await startEchoServer(topo, web.ns, 8080, 'W');
    expect(await probe(n2.name, 'tcp', n1.address, 18080, 'far')).toBe('W:far');
    expect(await probe(n2.name, 'udp', n1.address, 18080, 'udp')).toBe('W:udp');
    expect(await probe(n1.name, 'tcp', n1.address, 18080, 'near')).toBe('W:near');
    await expect(pod(net, { portMappings: [{ protocol: 'tcp', containerPort: 80, hostPort: 18080, hostIp: '' }] })).rejects.toThrow(/port_mappings\[0\].host_port: tcp\/18080 is already mapped/);
    await expect(pod(net, { portMappings: [{ protocol: 'icmp' as 'tcp', containerPort: 80, hostPort: 1, hostIp: '' }] })).rejects.toThrow(/port_mappings\[0\].protocol: expected tcp, udp or sctp/);
    await expect(pod(net, { portMappings: [{ protocol: 'tcp', containerPort: 0, hostPort: 1, hostIp: '' }] })).rejects.toThrow(/port_mappings\[0\].container_port: expected 1..65535/);
    expect(net.list()).toHaveLength(1);
  });
});

describe('masquerade', () => {
  it('is off by default, and when on, pod traffic leaving the pod CIDR carries the node address', async () => {
    const n1 = topo.node(1, '10.73.1.0/24');
    const n2 = topo.node(2, '10.73.2.0/24');
    const plain = await managerOn(n1, 'bridge');
    const p = await pod(plain);
    await startEchoServer(topo, n2.name, 7500, 'N2');
    // Without masquerade node 2 sees the pod's own address (and routes the reply back through node 1).
    sh('ip', ['-n', n2.name, 'route', 'add', '10.73.1.0/24', 'via', n1.address]);
    expect(await probe(p.ns, 'tcp', n2.address, 7500, 'who?')).toBe(`N2:${p.ip}`);
    expect(sh('ip', ['netns', 'exec', n1.name, 'iptables-save', '-t', 'nat'])).not.toMatch(/MASQUERADE/);
    const n3 = topo.node(3, '10.73.3.0/24');
    const masq = await managerOn(n3, 'bridge', [], { masquerade: true });
    const q = await pod(masq);
    expect(await probe(q.ns, 'tcp', n2.address, 7500, 'who?')).toBe(`N2:${n3.address}`);
    // Traffic inside the pod CIDR is not masqueraded.
    const r = await pod(masq);
    await startEchoServer(topo, r.ns, 7501, 'R');
    expect(await probe(q.ns, 'tcp', r.ip, 7501, 'who?')).toBe(`R:${q.ip}`);
  });
});

describe('dual-stack', () => {
  it('gives bridge-mode pods an IPv6 address and route too, and pods talk TCP over IPv6', async () => {
    const node = topo.node(1, '10.77.1.0/24');
    const net = await managerOn(node, 'bridge', [], { podCidrV6: 'fd00:77:1::/64' });
    const ns = topo.netns('p');
    const res = await net.setUp({ podUid: 'u', podNamespace: 'd', podName: 'a', sandboxId: `ds-a-${topo.id}`, netnsPath: netnsPath(ns), interfaceName: 'eth0', annotations: {} });
    expect(res.ips).toEqual(['10.77.1.2/24', 'fd00:77:1::2/64']);
    expect(res.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.77.1.1' }, { dst: '::/0', gw: 'fd00:77:1::1' }]);
    const b = await pod(net);
    await startEchoServer(topo, ns, 7600, 'A');
    expect(await probe(b.ns, 'tcp', 'fd00:77:1::2', 7600, 'six')).toBe('A:six');
    expect(await probe(node.name, 'tcp', 'fd00:77:1::2', 7600, 'node')).toBe('A:node');
    expect(await net.check(`ds-a-${topo.id}`)).toEqual([]);
    await expect(managerOn(node, 'bridge', [], { podCidr: 'fd00:77:3::/64' })).rejects.toThrow(/podCidr: must be an IPv4 CIDR/);
  });
});

describe('dual-stack netfilter', () => {
  it('maps host ports, masquerades and drops (loss fault) IPv6 as it does IPv4', async () => {
    const n1 = topo.node(1, '10.78.1.0/24', 'fd00:78::1');
    const n2 = topo.node(2, '10.78.2.0/24', 'fd00:78::2');
    const net = await managerOn(n1, 'bridge', [], { podCidrV6: 'fd00:78:1::/64', masquerade: true });
    const web = await pod(net, { portMappings: [
      { protocol: 'tcp', containerPort: 7700, hostPort: 17700, hostIp: '' },
      { protocol: 'udp', containerPort: 7700, hostPort: 17700, hostIp: '' },
      { protocol: 'tcp', containerPort: 7700, hostPort: 17701, hostIp: 'fd00:78::1' },
    ] });
    await startEchoServer(topo, web.ns, 7700, 'W');
    // The first packets over a fresh IPv6 underlay wait for neighbour discovery: allow a few probes.
    const retry = async (f: () => Promise<string>, want: string): Promise<string> => {
      let got = '';
      for (let i = 0; i < 5 && got !== want; i++) got = await f();
      return got;
    };
    // Host ports: from another node over both families, from the node itself, and on a given IPv6 host address only.
    expect(await retry(() => probe(n2.name, 'tcp', 'fd00:78::1', 17700, 'far6'), 'W:far6')).toBe('W:far6');
    expect(await probe(n2.name, 'udp', 'fd00:78::1', 17700, 'udp6')).toBe('W:udp6');
    expect(await probe(n2.name, 'tcp', n1.address, 17700, 'far4')).toBe('W:far4');
    expect(await probe(n1.name, 'tcp', 'fd00:78::1', 17700, 'near6')).toBe('W:near6');
    expect(await probe(n2.name, 'tcp', 'fd00:78::1', 17701, 'only6')).toBe('W:only6');
    expect(await probe(n2.name, 'tcp', n1.address, 17701, 'not4')).toMatch(/TIMEOUT|ERROR/);
    expect(sh('ip', ['netns', 'exec', n1.name, 'ip6tables-save', '-t', 'nat'])).toMatch(/DNAT .*--to-destination \[fd00:78:1::2\]:7700/);
    await expect(pod(net, { portMappings: [{ protocol: 'tcp', containerPort: 1, hostPort: 1, hostIp: '::1' }] })).rejects.toThrow(/port_mappings\[0\].host_ip: loopback host addresses are not supported/);
    await expect(pod(net, { portMappings: [{ protocol: 'tcp', containerPort: 1, hostPort: 1, hostIp: 'fd00::zz' }] })).rejects.toThrow(/port_mappings\[0\].host_ip: expected an IPv4 or IPv6 address/);

    // Masquerade: pod traffic to another node's IPv6 address carries node 1's address.
    await startEchoServer(topo, n2.name, 7701, 'N2');
    const p = await pod(net);
    expect(await retry(() => probe(p.ns, 'tcp', 'fd00:78::2', 7701, 'who?'), 'N2:fd00:78::1')).toBe('N2:fd00:78::1');
    // ... but not inside the pod CIDR.
    expect(await probe(p.ns, 'tcp', 'fd00:78:1::2', 7700, 'who?')).toBe('W:fd00:78:1::3');

    // Loss: about half of the pod's IPv6 datagrams are dropped, then none once cleared.
    await startSink(topo, n1.name, 7702);
    const before = await send(p.ns, 'udp', 'fd00:78::1', 7702, 200);
    expect(before.received).toBe(200);
    await net.setFaults(p.id, { direction: 'egress', delayMs: 0, jitterMs: 0, lossPercent: 50, duplicatePercent: 0, reorderPercent: 0, corruptPercent: 0, rate: '' });
    expect(sh('ip', ['netns', 'exec', p.ns, 'ip6tables-save'])).toMatch(/berth-fault/);
    const lossy = (await send(p.ns, 'udp', 'fd00:78::1', 7702, 200)).received - before.received;
    expect(lossy).toBeGreaterThan(50);
    expect(lossy).toBeLessThan(150);
    await net.clearFaults(p.id);
    expect(sh('ip', ['netns', 'exec', p.ns, 'ip6tables-save'])).not.toMatch(/berth-fault/);
  });

  it('refuses an IPv6 host address when the pod network has no IPv6 range', async () => {
    const net = await managerOn(topo.node(1, '10.78.9.0/24'), 'bridge');
    await expect(pod(net, { portMappings: [{ protocol: 'tcp', containerPort: 1, hostPort: 1, hostIp: 'fd00::1' }] })).rejects.toThrow(/port_mappings\[0\].host_ip: fd00::1 is IPv6 but the pod network has no IPv6 range/);
  });
});

describe('dual-stack, routed', () => {
  it('routes IPv6 to /128 pod addresses via the host ends\' shared link-local gateway', async () => {
    const node = topo.node(1, '10.78.1.0/24', 'fd00:78::1');
    const net = await managerOn(node, 'routed', [], { podCidrV6: 'fd00:78:1::/64' });
    const ns = topo.netns('p');
    const res = await net.setUp({ podUid: 'u', podNamespace: 'd', podName: 'a', sandboxId: `rs-a-${topo.id}`, netnsPath: netnsPath(ns), interfaceName: 'eth0', annotations: {} });
    expect(res.ips).toEqual(['10.78.1.2/32', 'fd00:78:1::2/128']);
    expect(res.routes).toContainEqual({ dst: '::/0', gw: ROUTED_GATEWAY6 });
    const b = await pod(net);
    await startEchoServer(topo, ns, 7700, 'A');
    expect(await probe(b.ns, 'tcp', 'fd00:78:1::2', 7700, 'six')).toBe('A:six');
    expect(await probe(node.name, 'tcp', 'fd00:78:1::2', 7700, 'node')).toBe('A:node');
    expect(await probe(b.ns, 'tcp', '10.78.1.2', 7700, 'four')).toBe('A:four');
  });
});

describe('dual-stack across nodes', () => {
  it('routes each node\'s IPv6 pod CIDR via its IPv6 address (routed mode)', async () => {
    const n1 = topo.node(1, '10.79.1.0/24', 'fd00:79::1');
    const n2 = topo.node(2, '10.79.2.0/24', 'fd00:79::2');
    const m1 = await managerOn(n1, 'routed', [n2], { podCidrV6: 'fd00:79:1::/64', nodeRoutes: [{ podCidr: n2.podCidr, via: n2.address }, { podCidr: 'fd00:79:2::/64', via: 'fd00:79::2' }] });
    const m2 = await managerOn(n2, 'routed', [n1], { podCidrV6: 'fd00:79:2::/64', nodeRoutes: [{ podCidr: n1.podCidr, via: n1.address }, { podCidr: 'fd00:79:1::/64', via: 'fd00:79::1' }] });
    const a = await pod(m1);
    const b = await pod(m2);
    await startEchoServer(topo, b.ns, 7800, 'B');
    // The first packet over a fresh IPv6 underlay waits for neighbour discovery (the node's
    // link-local address is still tentative), which can outlast one 1.5 s probe: allow a few.
    let far6 = '';
    for (let i = 0; i < 5 && far6 !== 'B:far6'; i++) far6 = await probe(a.ns, 'tcp', 'fd00:79:2::2', 7800, 'far6');
    expect(far6).toBe('B:far6');
    expect(await probe(a.ns, 'tcp', b.ip, 7800, 'far4')).toBe('B:far4');
    await expect(managerOn(n1, 'routed', [], { nodeRoutes: [{ podCidr: 'fd00:79:9::/64', via: '10.0.0.1' }] })).rejects.toThrow(/nodeRoutes\[0\].via: 10.0.0.1 is not of the family/);
  });
});
