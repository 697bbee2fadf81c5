// The CNI executor against Debian's containernetworking-plugins (/usr/lib/cni) and against
// berth-cni, with plugins run inside a node namespace of the test's own.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cni } from '@berth/api';
import { createClient, startServiceProcess, waitServing } from '@berth/common';
import type { ServiceError } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CniError, CniExecutor } from './executor';
import { IpamStore } from '../ipam';
import { netnsPath, probe, sh, startEchoServer, Topology, type TestNode } from '../testing/topology';

const BERTH_CNI = path.resolve(__dirname, '..', '..', 'dist', 'bin', 'berth-cni.js');

let topo: Topology;
let dir: string;
let node: TestNode;

beforeEach(() => {
  topo = new Topology();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cni-exec-'));
  fs.mkdirSync(path.join(dir, 'conf'));
  fs.mkdirSync(path.join(dir, 'bin'));
  node = topo.node(1, '10.70.1.0/24');
});
afterEach(() => {
  try {
    // Leak check: nothing of the plugins left in the node namespace.
    const links = sh('ip', ['-n', node.name, '-br', 'link']);
    expect(links).not.toMatch(/^veth/m);
    expect(sh('ip', ['-n', node.name, 'neigh', 'show', 'proxy'])).toBe('');
  } finally {
    topo.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function writeConf(name: string, conf: unknown): void {
  fs.writeFileSync(path.join(dir, 'conf', name), JSON.stringify(conf));
}
const BERTH_CNI_TIMEOUT_MS = 60_000;

function executor(binDirs = ['/usr/lib/cni'], timeoutMs = 10_000): CniExecutor {
  return new CniExecutor({ confDir: path.join(dir, 'conf'), binDirs, cacheDir: path.join(dir, 'cache'), hostNetns: node.netns, timeoutMs });
}
function debianList(extra: unknown[] = []): unknown {
  return {
    cniVersion: '1.0.0', name: `net-${topo.id}`,
    plugins: [
      { type: 'bridge', bridge: `cni${topo.id}`, isGateway: true, ipMasq: false, hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: '10.70.1.0/24' }]], dataDir: path.join(dir, 'ipam') } },
      ...extra,
    ],
  };
}

describe('CniExecutor with the Debian plugins', () => {
  it('ADDs a chain (bridge, host-local, portmap, bandwidth, tuning, firewall), caches the result and DELs it', async () => {
    writeConf('10-test.conflist', debianList([
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'bandwidth', capabilities: { bandwidth: true } },
      { type: 'tuning', sysctl: { 'net.ipv4.conf.IFNAME.arp_notify': '1' } },
      { type: 'firewall', backend: 'iptables' },
    ]));
    const ex = executor();
    const a = { containerId: `ctr-a-${topo.id}`, netns: netnsPath(topo.netns('p')), ifName: 'eth0', args: { K8S_POD_NAME: 'a', IgnoreUnknown: '1' },
      capabilityArgs: { portMappings: [{ hostPort: 18080, containerPort: 8080, protocol: 'tcp' }], bandwidth: { ingressRate: 1_000_000, ingressBurst: 65536, egressRate: 0, egressBurst: 0 } } };
    const b = { containerId: `ctr-b-${topo.id}`, netns: netnsPath(topo.netns('p')), ifName: 'eth0' };
    const ra = await ex.add(a);
    const rb = await ex.add(b);
    expect(ra.ips?.[0]?.address).toBe('10.70.1.2/24');
    expect(rb.ips?.[0]?.address).toBe('10.70.1.3/24');
    expect(ex.cachedResult(a)).toEqual(ra);
    const podA = a.netns.split('/').pop()!;
    const podB = b.netns.split('/').pop()!;
    await startEchoServer(topo, podA, 8080, 'A');
    expect(await probe(podB, 'tcp', '10.70.1.2', 8080, 'x')).toBe('A:x');
    expect(sh('ip', ['netns', 'exec', node.name, 'iptables-save', '-t', 'nat'])).toMatch(/--dport 18080/);
    expect(sh('tc', ['-n', node.name, 'qdisc', 'show'])).toMatch(/tbf/);
    expect(sh('ip', ['netns', 'exec', podA, 'cat', '/proc/sys/net/ipv4/conf/eth0/arp_notify']).trim()).toBe('1');
    await ex.del(a);
    await ex.del(a); // idempotent
    await ex.del(b);
    expect(ex.cachedResult(a)).toBeUndefined();
    expect(sh('ip', ['netns', 'exec', node.name, 'iptables-save', '-t', 'nat'])).not.toMatch(/--dport 18080/);
    expect(fs.readdirSync(path.join(dir, 'ipam', `net-${topo.id}`)).filter((f) => /^\d/.test(f))).toEqual([]);
    sh('ip', ['-n', node.name, 'link', 'del', `cni${topo.id}`]);
  });

  it('asks VERSION and reports plugin errors with their CNI code', async () => {
    const ex = executor();
    expect(await ex.version('bridge')).toContain('1.0.0');
    writeConf('10-bad.conflist', { cniVersion: '1.0.0', name: 'bad', plugins: [{ type: 'bridge', bridge: `cni${topo.id}`, ipam: { type: 'host-local' } }] });
    const err = await ex.add({ containerId: 'c', netns: netnsPath(topo.netns('p')), ifName: 'eth0' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).plugin).toBe('bridge');
    expect((err as CniError).code).toBeGreaterThan(0);
    writeConf('10-bad.conflist', { cniVersion: '1.0.0', name: 'bad', plugins: [{ type: 'no-such-plugin' }] });
    await expect(ex.add({ containerId: 'c', netns: '/x', ifName: 'eth0' })).rejects.toThrow(/plugin "no-such-plugin" not found/);
    await expect(ex.add({ containerId: 'c', netns: '/x', ifName: 'eth0', args: { K8S_POD_NAME: 'a;IgnoreUnknown=1' } })).rejects.toThrow(/CNI_ARGS K8S_POD_NAME: value must not contain ';'/);
    writeConf('10-bad.conflist', { cniVersion: '1.0.0', name: 'bad', plugins: [{ type: '../../bin/sh' }] });
    expect(() => ex.loadNetworks()).toThrow(/plugins\[0\].type must be a plugin name/);
  });

  it('kills a plugin that hangs, rejects malformed output, and rolls back the chain', async () => {
    const bin = path.join(dir, 'bin');
    fs.writeFileSync(path.join(bin, 'hang'), '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
    fs.writeFileSync(path.join(bin, 'garbage'), '#!/bin/sh\necho "this is not json"\n', { mode: 0o755 });
    fs.symlinkSync('/usr/lib/cni/bridge', path.join(bin, 'bridge'));
    fs.symlinkSync('/usr/lib/cni/host-local', path.join(bin, 'host-local'));
    // Long enough for the real bridge plugin before it on a loaded machine, far below the 30 s hang.
    const ex = executor([bin], 4000);
    const pod = { containerId: `c-${topo.id}`, netns: netnsPath(topo.netns('p')), ifName: 'eth0' };
    writeConf('10-x.conflist', debianList([{ type: 'hang' }]));
    const t0 = Date.now();
    await expect(ex.add(pod)).rejects.toThrow(/hang: ADD timed out after 4000 ms/);
    expect(Date.now() - t0).toBeLessThan(20_000);
    writeConf('10-x.conflist', debianList([{ type: 'garbage' }]));
    await expect(ex.add(pod)).rejects.toThrow(/garbage: ADD printed malformed output/);
    // The bridge plugin's part was DELeted: no veth, no address allocated.
    expect(sh('ip', ['-n', pod.netns.split('/').pop()!, '-br', 'link'])).not.toMatch(/eth0/);
    expect(fs.readdirSync(path.join(dir, 'ipam', `net-${topo.id}`)).filter((f) => /^\d/.test(f))).toEqual([]);
    sh('ip', ['-n', node.name, 'link', 'del', `cni${topo.id}`]);
  });

  it('GC DELs cached attachments that are no longer valid', async () => {
    writeConf('10-test.conflist', debianList());
    const ex = executor();
    const a = { containerId: `a-${topo.id}`, netns: netnsPath(topo.netns('p')), ifName: 'eth0' };
    const b = { containerId: `b-${topo.id}`, netns: netnsPath(topo.netns('p')), ifName: 'eth0' };
    await ex.add(a);
    await ex.add(b);
    await ex.check(a);
    expect(await ex.gc([{ containerId: a.containerId, ifName: 'eth0' }])).toEqual({ droppedCache: 1 });
    expect(ex.cachedResult(b)).toBeUndefined();
    expect(ex.cachedResult(a)).toBeDefined();
    await ex.status();
    await ex.del(a);
    sh('ip', ['-n', node.name, 'link', 'del', `cni${topo.id}`]);
  });
});

describe('berth-cni as a CNI plugin', () => {
  it('works standalone (no cni-manager running) through the executor', async () => {
    fs.writeFileSync(path.join(dir, 'bin', 'berth-cni'), `#!/bin/sh\nexec ${process.execPath} ${BERTH_CNI}\n`, { mode: 0o755 });
    writeConf('10-berth.conflist', {
      cniVersion: '1.1.0', name: 'berth',
      plugins: [{ type: 'berth-cni', mode: 'routed', podCidr: '10.71.1.0/24', stateDir: path.join(dir, 'state'), socket: path.join(dir, 'none.sock') }],
    });
    // berth-cni is a Node program: on this shared machine under load its start-up alone can
    // take seconds, and standalone invocations on one state dir take turns.
    const ex = executor([path.join(dir, 'bin')], BERTH_CNI_TIMEOUT_MS);
    expect(await ex.version('berth-cni')).toContain('1.1.0');
    const a = { containerId: `a-${topo.id}`, netns: netnsPath(topo.netns('p')), ifName: 'eth0' };
    const b = { containerId: `b-${topo.id}`, netns: netnsPath(topo.netns('p')), ifName: 'eth0' };
    const ra = await ex.add(a);
    await ex.add(b);
    expect(ra.ips?.[0]).toMatchObject({ address: '10.71.1.2/32', gateway: '169.254.1.1' });
    await startEchoServer(topo, a.netns.split('/').pop()!, 9000, 'A');
    expect(await probe(b.netns.split('/').pop()!, 'udp', '10.71.1.2', 9000, 'u')).toBe('A:u');
    await ex.check(a);
    // Invocations at once on one state dir take turns on its lock: different addresses.
    const more = ['c', 'd'].map((x) => ({ containerId: `${x}-${topo.id}`, netns: netnsPath(topo.netns('p')), ifName: 'eth0' }));
    const addrs = (await Promise.all(more.map((m) => ex.add(m)))).map((r) => r.ips?.[0]?.address);
    expect(new Set(addrs).size).toBe(2);
    expect(addrs.every((x) => /^10\.71\.1\.\d+\/32$/.test(x ?? ''))).toBe(true);
    await Promise.all(more.map((m) => ex.del(m)));
    await ex.gc([{ containerId: a.containerId, ifName: 'eth0' }]);
    await ex.status();
    await ex.del(a);
    expect(IpamStore.claimsOnDisk(path.join(dir, 'state', 'ipam')).size).toBe(0);
  }, 180_000);
});

describe('berth-cni with a running cni-manager', () => {
  it('hands ADD/CHECK/DEL to the daemon over its socket', async () => {
    const sock = path.join(dir, 'cni-manager.sock');
    const svc = startServiceProcess(path.resolve(__dirname, '..', '..', 'dist', 'bin', 'berth-cni-manager.js'),
      ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'daemon'), '--host-netns', node.netns, '--pod-cidr', '10.74.1.0/24', '--bridge-name', `br${topo.id}`]);
    try {
      expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
      fs.writeFileSync(path.join(dir, 'bin', 'berth-cni'), `#!/bin/sh\nexec ${process.execPath} ${BERTH_CNI}\n`, { mode: 0o755 });
      writeConf('10-berth.conflist', { cniVersion: '1.0.0', name: 'berth', plugins: [{ type: 'berth-cni', socket: sock }] });
      const ex = executor([path.join(dir, 'bin')], BERTH_CNI_TIMEOUT_MS);
      const a = { containerId: `a-${topo.id}`, netns: netnsPath(topo.netns('p')), ifName: 'eth0' };
      const r = await ex.add(a);
      expect(r.ips?.[0]).toMatchObject({ address: '10.74.1.2/24', gateway: '10.74.1.1' });
      const client = createClient(cni.NetworkServiceClient, { target: `unix://${sock}` });
      const list = await new Promise<cni.ListAttachmentsResponse>((res, rej) => client.listAttachments({}, (e: ServiceError | null, x: cni.ListAttachmentsResponse) => (e ? rej(e) : res(x))));
      client.close();
      expect(list.attachments.map((x) => x.sandboxId)).toEqual([a.containerId]);
      await ex.check(a);
      await ex.del(a);
      await ex.del(a);
    } finally {
      await svc.stop(); // drains the teardown the daemon finishes after answering
    }
    expect(IpamStore.claimsOnDisk(path.join(dir, 'daemon', 'ipam')).size).toBe(0);
  }, 180_000);
});
