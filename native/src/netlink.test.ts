// rtnetlink / ctnetlink / sysctl on the real kernel, inside network namespaces this test makes
// (unique names, deleted after each test even on failure). `ip`/`tc`/`conntrack` are used only
// as the independent peer that reads back what our netlink code did.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { Conntrack, encodeMessage, gratuitousArp, ipBytes, ipString, lockFile, Netns, NLM_F, parseIpCidr, parseMessages, PacketSocket, RecordingNetlink, Rtnl, RTM, RTPROT_BERTH, sysctl, SysctlFile, SyscallError } from './index';

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' });
const ipJson = (ns: string, ...args: string[]): any[] => JSON.parse(sh('ip', ['-n', ns, '-j', ...args]) || '[]');

describe('netlink on the real kernel', () => {
  let names: string[] = [];
  let opened: Array<{ close(): void }> = [];
  const mkns = (): string => {
    const n = `bnl-${randomBytes(4).toString('hex')}`;
    sh('ip', ['netns', 'add', n]);
    names.push(n);
    return n;
  };
  const open = (ns: string): { netns: Netns; rt: Rtnl } => {
    const netns = Netns.open(`/run/netns/${ns}`);
    const rt = Rtnl.open(netns);
    opened.push(rt, netns);
    return { netns, rt };
  };

  beforeEach(() => { names = []; opened = []; });
  afterEach(() => {
    for (const o of opened.reverse()) o.close();
    for (const n of names) execFileSync('ip', ['netns', 'del', n]);
    for (const n of names) expect(fs.existsSync(`/run/netns/${n}`)).toBe(false);
  });

  it('refuses a path that is not a network namespace, naming it', () => {
    expect(() => Netns.open('/etc/hostname')).toThrow(/NS_GET_NSTYPE.*\/etc\/hostname.*ENOTTY/);
    expect(() => Netns.open('/proc/self/ns/uts')).toThrow(/EINVAL/);
    expect(() => Netns.open('/no/such/netns')).toThrow(/ENOENT/);
  });

  it('makes bridges and veths across namespaces, with mtu, mac, master, up and rename', async () => {
    const a = mkns();
    const b = mkns();
    const A = open(a);
    const B = open(b);
    const br = await A.rt.addBridge('br-t', { mtu: 1400 });
    expect(br.kind).toBe('bridge');
    const host = await A.rt.addVeth({ name: 'vh0', peer: 'eth0', peerNetns: B.netns, mtu: 1400, peerMac: '02:00:00:00:00:05', master: br.index, up: true });
    expect(host.kind).toBe('veth');
    // The echo is the link as registered; master and up are applied right after, in the same request.
    expect(await A.rt.link('vh0')).toMatchObject({ master: br.index, up: true });
    expect(host.link).toBe(ipJson(b, 'link', 'show', 'eth0')[0].ifindex); // the echo names the peer's ifindex
    await A.rt.setLink(host.index, { mac: '02:00:00:00:00:01' });
    await A.rt.setLink(br.index, { up: true });
    await A.rt.setHairpin(host.index, true);
    const links = ipJson(a, '-d', 'link', 'show', 'vh0');
    expect(links[0]).toMatchObject({ ifname: 'vh0', mtu: 1400, master: 'br-t', address: '02:00:00:00:00:01' });
    expect(links[0].linkinfo.info_slave_data.hairpin).toBe(true);
    const peer = ipJson(b, 'link', 'show', 'eth0')[0];
    expect(peer).toMatchObject({ ifname: 'eth0', mtu: 1400, address: '02:00:00:00:00:05' });
    const eth0 = (await B.rt.link('eth0'))!;
    await B.rt.setLink(eth0.index, { name: 'net1' });
    expect(await B.rt.link('eth0')).toBeNull();
    expect((await B.rt.link('net1'))!.index).toBe(eth0.index);
    // Move it back to A by fd; deleting one end deletes both.
    await B.rt.setLink(eth0.index, { netns: A.netns });
    expect((await A.rt.links()).map((l) => l.name).sort()).toEqual(['br-t', 'lo', 'net1', 'vh0']);
    expect(await A.rt.deleteLink('vh0')).toBe(true);
    expect(await A.rt.deleteLink('vh0')).toBe(false);
    expect(await A.rt.link('net1')).toBeNull();
  });

  it('creates a veth and configures both ends in one native call, using the indexes the create echoes', async () => {
    const a = mkns();
    const b = mkns();
    const A = open(a);
    const B = open(b);
    const host = await A.rt.addVethThen({ name: 'vp0', peer: 'eth0', peerNetns: B.netns, mac: 'ee:ee:ee:ee:ee:ee' }, [
      { rtnl: B.rt, build: async (x, l) => {
        await x.setLink(1, { up: true });
        await x.setInetConf(l.peer, { arp_notify: 1 });
        await x.addAddress(l.peer, '10.66.0.2/32');
        await x.setLink(l.peer, { up: true });
        await x.addRoute({ dst: '169.254.1.1/32', oif: l.peer, scope: 'link' });
        await x.addRoute({ dst: 'default', gw: '169.254.1.1', oif: l.peer, onlink: true });
      } },
      { rtnl: A.rt, build: async (x, l) => {
        await x.setInetConf(l.created, { proxy_arp: 1, forwarding: 1 });
        await x.setProxyDelay(l.created, 0);
        await x.setAddrGenMode(l.created, 'none');
        await x.addAddress(l.created, 'fe80::ecee:eeff:feee:eeee/64', { nodad: true });
        await x.setLink(l.created, { up: true });
        await x.addRoute({ dst: '10.66.0.2/32', oif: l.created, scope: 'link' });
      } },
    ]);
    expect(host).toMatchObject({ name: 'vp0', kind: 'veth' });
    const eth0 = ipJson(b, 'link', 'show', 'eth0')[0];
    expect(host.link).toBe(eth0.ifindex);
    expect(eth0.flags).toContain('UP');
    expect(ipJson(b, '-4', 'addr', 'show', 'eth0')[0].addr_info[0]).toMatchObject({ local: '10.66.0.2', prefixlen: 32 });
    expect(sh('ip', ['-n', b, 'route', 'show'])).toMatch(/default via 169\.254\.1\.1 dev eth0 .*onlink/);
    expect(sysctl(B.netns, 'net/ipv4/conf/eth0/arp_notify')).toBe('1');
    expect(sysctl(A.netns, 'net/ipv4/conf/vp0/proxy_arp')).toBe('1');
    expect(sysctl(A.netns, 'net/ipv4/conf/vp0/forwarding')).toBe('1');
    expect(sysctl(A.netns, 'net/ipv4/neigh/vp0/proxy_delay')).toBe('0');
    expect(sysctl(A.netns, 'net/ipv6/conf/vp0/addr_gen_mode')).toBe('1');
    // Only the link-local we gave it, no automatic one.
    expect(ipJson(a, '-6', 'addr', 'show', 'vp0')[0].addr_info.map((x: { local: string }) => x.local)).toEqual(['fe80::ecee:eeff:feee:eeee']);
    expect(sh('ip', ['-n', a, 'route', 'show', '10.66.0.2'])).toMatch(/dev vp0 .*scope link/);
  });

  it('stops a plan at the first failure and names the request and the kernel reason', async () => {
    const a = mkns();
    const b = mkns();
    const A = open(a);
    const B = open(b);
    const err = await A.rt.addVethThen({ name: 'vq0', peer: 'eth0', peerNetns: B.netns }, [
      { rtnl: B.rt, build: async (x, l) => { await x.addAddress(l.peer, '10.67.0.2/24'); await x.addRoute({ dst: 'default', gw: '10.99.0.1', oif: l.peer }); } },
      { rtnl: A.rt, build: async (x, l) => { await x.setLink(l.created, { up: true }); } },
    ]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SyscallError);
    expect((err as SyscallError).message).toMatch(/add route default via 10\.99\.0\.1/);
    // The steps before the failure were applied; the one after was not run.
    expect(ipJson(b, '-4', 'addr', 'show', 'eth0')[0].addr_info[0].local).toBe('10.67.0.2');
    expect(ipJson(a, 'link', 'show', 'vq0')[0].flags).not.toContain('UP');
    // A step may use a planned index only as an index.
    await expect(A.rt.addVethThen({ name: 'vq1', peer: 'vq2' }, [{ rtnl: A.rt, build: async (x, l) => { await x.setLink(1, { mtu: l.created & 0xffff }); } }])).rejects.toThrow(/planned link index is used/);
    expect(await A.rt.link('vq1')).toBeNull();
  });

  it('locks a file against other holders until closed (flock)', () => {
    const file = `/tmp/bnl-lock-${randomBytes(4).toString('hex')}`;
    const fd1 = fs.openSync(file, 'w');
    const fd2 = fs.openSync(file, 'r');
    try {
      expect(lockFile(fd1)).toBe(true);
      expect(lockFile(fd2)).toBe(false);
      expect(lockFile(fd2, { exclusive: false })).toBe(false);
      fs.closeSync(fd1);
      expect(lockFile(fd2)).toBe(true);
      expect(() => lockFile(-1)).toThrow(/expected an open file descriptor/);
    } finally {
      try { fs.closeSync(fd1); } catch { /* closed above */ }
      fs.closeSync(fd2);
      fs.rmSync(file);
    }
  });

  it('reports what the kernel cannot do with its errno and reason', async () => {
    const { rt } = open(mkns());
    await rt.addBridge('dup0');
    const dup = await rt.addBridge('dup0').catch((e: unknown) => e);
    expect(dup).toBeInstanceOf(SyscallError);
    expect((dup as SyscallError).code).toBe('EEXIST');
    expect((dup as SyscallError).message).toMatch(/create bridge dup0/);
    // This machine's kernel has no dummy driver: the error says so rather than hiding it.
    const dummy = await rt.addDummy('d0').catch((e: unknown) => e);
    if (dummy instanceof SyscallError) expect(dummy.code).toMatch(/^E(OPNOTSUPP|NOTSUP)$/);
    else expect((dummy as { kind: string }).kind).toBe('dummy');
    await expect(rt.addBridge('this-name-is-too-long')).rejects.toThrow(/bridge name: 'this-name-is-too-long' is not a valid interface name/);
    const vx = await rt.addVxlan('vx0', { vni: 42, local: '127.0.0.1', port: 4790 });
    expect(vx.kind).toBe('vxlan');
    expect(ipJson(rt.transport instanceof RecordingNetlink ? '' : names[0]!, '-d', 'link', 'show', 'vx0')[0].linkinfo.info_data).toMatchObject({ id: 42, local: '127.0.0.1', port: 4790 });
  });

  it('adds and removes addresses, routes (link, via, onlink, table) and neighbours', async () => {
    const ns = mkns();
    const { rt } = open(ns);
    const br = await rt.addBridge('br1');
    await rt.setLink(br.index, { up: true });
    await rt.addAddress(br.index, '10.77.0.1/24');
    expect(await rt.addresses(br.index)).toEqual([{ index: br.index, ip: '10.77.0.1', prefix: 24, scope: 0 }]);
    expect(ipJson(ns, 'addr', 'show', 'br1')[0].addr_info[0]).toMatchObject({ local: '10.77.0.1', prefixlen: 24, broadcast: '10.77.0.255' });
    await rt.addRoute({ dst: '10.78.0.5/32', oif: br.index });
    await rt.addRoute({ dst: '10.79.0.0/24', gw: '10.77.0.9' });
    await rt.addRoute({ dst: '169.254.1.1/32', oif: br.index, scope: 'link' });
    await rt.addRoute({ dst: 'default', gw: '169.254.1.1', oif: br.index, onlink: true });
    await rt.addRoute({ dst: '10.80.0.0/16', gw: '10.77.0.9', table: 1000 });
    const mine = (await rt.routes()).filter((r) => r.protocol === RTPROT_BERTH);
    expect(mine.map((r) => `${r.dst} ${r.gw ?? '-'} ${r.scope}${r.onlink ? ' onlink' : ''}`).sort()).toEqual([
      '10.78.0.5/32 - 253', '10.79.0.0/24 10.77.0.9 0', '169.254.1.1/32 - 253', 'default 169.254.1.1 0 onlink',
    ]);
    expect(ipJson(ns, 'route', 'show', 'table', '1000')).toEqual([expect.objectContaining({ dst: '10.80.0.0/16', gateway: '10.77.0.9' })]);
    expect((await rt.routes(1000))[0]).toMatchObject({ dst: '10.80.0.0/16', table: 1000 });
    await expect(rt.addRoute({ dst: '10.79.0.0/24', gw: '10.77.0.9' })).rejects.toThrow(/EEXIST/);
    await rt.addNeighbour({ ifindex: br.index, ip: '10.77.0.7', mac: '02:00:00:00:00:07' });
    await rt.addNeighbour({ ifindex: br.index, ip: '10.77.0.8', proxy: true });
    expect((await rt.neighbours()).filter((n) => n.state === 0x80)).toEqual([expect.objectContaining({ ip: '10.77.0.7', mac: '02:00:00:00:00:07', state: 0x80 })]);
    expect(await rt.neighbours({ proxy: true })).toEqual([expect.objectContaining({ ip: '10.77.0.8', proxy: true })]);
    expect(sh('ip', ['-n', ns, 'neigh', 'show', 'proxy'])).toMatch(/10\.77\.0\.8 dev br1 proxy/);
    for (const r of mine) expect(await rt.deleteRoute(r)).toBe(true);
    expect(await rt.deleteRoute({ dst: '10.79.0.0/24', gw: '10.77.0.9' })).toBe(false);
    expect(await rt.deleteRoute({ dst: '10.80.0.0/16', table: 1000 })).toBe(true);
    expect(await rt.deleteNeighbour({ ifindex: br.index, ip: '10.77.0.7' })).toBe(true);
    expect(await rt.deleteNeighbour({ ifindex: br.index, ip: '10.77.0.8', proxy: true })).toBe(true);
    expect(await rt.deleteAddress(br.index, '10.77.0.1/24')).toBe(true);
    expect(await rt.addresses(br.index)).toEqual([]);
    expect(await rt.neighbours({ proxy: true })).toEqual([]);
  });

  it('applies a batch in one write, and names the request that failed', async () => {
    const ns = mkns();
    const { rt } = open(ns);
    const br = await rt.addBridge('brb');
    await rt.batch(async (b) => {
      await b.setLink(br.index, { up: true });
      await b.addAddress(br.index, '10.76.0.1/24');
      await b.addRoute({ dst: '10.76.9.0/24', gw: '10.76.0.9' });
    });
    expect(sh('ip', ['-n', ns, 'route', 'show', '10.76.9.0/24'])).toMatch(/via 10\.76\.0\.9/);
    const err = await rt.batch(async (b) => {
      await b.addRoute({ dst: '10.76.8.0/24', gw: '10.76.0.9' });
      await b.addRoute({ dst: '10.76.9.0/24', gw: '10.76.0.9' }); // exists
      await b.addRoute({ dst: '10.76.7.0/24', gw: '10.76.0.9' });
    }).catch((e: unknown) => e);
    expect((err as SyscallError).code).toBe('EEXIST');
    expect((err as SyscallError).message).toMatch(/add route 10\.76\.9\.0\/24 via 10\.76\.0\.9/);
    // The kernel went on with the rest of the batch.
    expect(sh('ip', ['-n', ns, 'route', 'show', '10.76.7.0/24'])).toMatch(/via/);
  });

  it('does IPv6 addresses, routes and neighbours too', async () => {
    const ns = mkns();
    const { rt } = open(ns);
    const br = await rt.addBridge('br6');
    await rt.setLink(br.index, { up: true });
    await rt.addAddress(br.index, '2001:db8:5::1/64', { nodad: true });
    expect(await rt.addresses(br.index, 6)).toEqual(expect.arrayContaining([expect.objectContaining({ ip: '2001:db8:5::1', prefix: 64 })]));
    expect(ipJson(ns, '-6', 'addr', 'show', 'br6')[0].addr_info.map((x: { local: string }) => x.local)).toContain('2001:db8:5::1');
    await rt.addRoute({ dst: '2001:db8:6::/48', gw: '2001:db8:5::2' });
    await rt.addRoute({ dst: 'default', gw: '2001:db8:5::3' });
    const mine = (await rt.routes(undefined, 6)).filter((r) => r.protocol === RTPROT_BERTH).map((r) => `${r.dst} via ${r.gw}`).sort();
    expect(mine).toEqual(['2001:db8:6::/48 via 2001:db8:5::2', 'default via 2001:db8:5::3']);
    expect(sh('ip', ['-n', ns, '-6', 'route', 'show', '2001:db8:6::/48'])).toMatch(/via 2001:db8:5::2/);
    await expect(rt.addRoute({ dst: '2001:db8:7::/48', gw: '10.0.0.1' })).rejects.toThrow(/route gw: 10.0.0.1 is not of the family of 2001:db8:7::\/48/);
    await rt.addNeighbour({ ifindex: br.index, ip: '2001:db8:5::7', mac: '02:00:00:00:00:07' });
    expect((await rt.neighbours({ family: 6 })).find((n) => n.ip === '2001:db8:5::7')?.mac).toBe('02:00:00:00:00:07');
    expect(await rt.deleteNeighbour({ ifindex: br.index, ip: '2001:db8:5::7' })).toBe(true);
    expect(await rt.deleteRoute({ dst: '2001:db8:6::/48' })).toBe(true);
    expect(await rt.deleteRoute({ dst: 'default', family: 6 })).toBe(true);
    expect(await rt.deleteAddress(br.index, '2001:db8:5::1/64')).toBe(true);
    expect((await rt.addresses(br.index, 6)).map((a) => a.ip)).not.toContain('2001:db8:5::1');
  });

  it('sends a frame from a packet socket opened in another namespace: a gratuitous ARP updates the neighbour it is sent to', async () => {
    const a = mkns();
    const b = mkns();
    const A = open(a);
    const B = open(b);
    const host = await A.rt.addVeth({ name: 'vh0', peer: 'eth0', peerNetns: B.netns, peerMac: '02:00:00:00:00:05' });
    await A.rt.addAddress(host.index, '10.77.0.1/24');
    await A.rt.setLink(host.index, { up: true });
    await B.rt.setLink(host.link, { up: true });
    sh('ip', ['-n', a, 'neigh', 'replace', '10.77.0.2', 'lladdr', '02:00:00:00:00:99', 'dev', 'vh0', 'nud', 'stale']);
    const sock = PacketSocket.open(B.netns);
    opened.push(sock);
    // From the peer's namespace, by the peer's index there (the same number means another link here).
    sock.send(host.link, gratuitousArp({ mac: '02:00:00:00:00:05', ip: '10.77.0.2', to: host.mac }));
    let entry: any;
    for (let t = 0; t < 100; t++) {
      entry = ipJson(a, 'neigh', 'show', '10.77.0.2', 'dev', 'vh0')[0];
      if (entry?.lladdr === '02:00:00:00:00:05') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(entry?.lladdr).toBe('02:00:00:00:00:05');
    expect(() => sock.send(0, gratuitousArp({ mac: '02:00:00:00:00:05', ip: '10.77.0.2' }))).toThrow(RangeError);
    expect(() => sock.send(9999, gratuitousArp({ mac: '02:00:00:00:00:05', ip: '10.77.0.2' }))).toThrow(/ENXIO|ENODEV/);
  });

  it('reads and writes sysctls of the namespace, not of the host', () => {
    const ns = mkns();
    const { netns } = open(ns);
    const hostFwd = fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
    sysctl(netns, 'net.ipv4.ip_forward', hostFwd === '1' ? '0' : '1');
    expect(sysctl(netns, 'net/ipv4/ip_forward')).toBe(hostFwd === '1' ? '0' : '1');
    expect(fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim()).toBe(hostFwd);
    expect(sh('ip', ['netns', 'exec', ns, 'cat', '/proc/sys/net/ipv4/ip_forward']).trim()).toBe(hostFwd === '1' ? '0' : '1');
    expect(() => sysctl(netns, 'kernel.hostname', 'x')).toThrow(/sysctl key/);
    expect(() => sysctl(netns, 'net/../../etc/passwd')).toThrow(/sysctl key/);
    // Kept open: every read sees the namespace's current value, not the host's.
    const file = SysctlFile.open(netns, 'net.ipv4.ip_forward');
    opened.push(file);
    expect(file.read()).toBe(hostFwd === '1' ? '0' : '1');
    sysctl(netns, 'net.ipv4.ip_forward', hostFwd);
    expect(file.read()).toBe(hostFwd);
    expect(() => SysctlFile.open(netns, 'net.ipv4.no_such_key')).toThrow(/no_such_key.*ENOENT/);
    expect(() => SysctlFile.open(netns, 'net/../../etc/passwd')).toThrow(/sysctl key/);
  });

  it('shapes with tbf, and redirects ingress to an ifb', async () => {
    const ns = mkns();
    const { rt, netns } = open(ns);
    const peerNs = open(mkns()).netns;
    const v = await rt.addVeth({ name: 'v0', peer: 'v1', peerNetns: peerNs });
    const ifb = await rt.addIfb('ifb0');
    await rt.setLink(ifb.index, { up: true });
    await rt.setTbf(v.index, { rate: 1_000_000, burst: 32 * 1024, latencyMs: 50 });
    const q = JSON.parse(sh('tc', ['-n', ns, '-j', 'qdisc', 'show', 'dev', 'v0']));
    expect(q[0]).toMatchObject({ kind: 'tbf', options: expect.objectContaining({ rate: 125000, burst: 32768 }) });
    await rt.addIngressQdisc(v.index);
    await rt.addIngressRedirect(v.index, ifb.index);
    expect(sh('tc', ['-n', ns, 'filter', 'show', 'dev', 'v0', 'ingress'])).toMatch(/mirred \(Egress Redirect to device ifb0\)/);
    expect((await rt.qdiscs(v.index)).map((x) => x.kind).sort()).toEqual(['ingress', 'tbf']);
    expect(await rt.deleteQdisc(v.index, 'ingress')).toBe(true);
    expect(await rt.deleteQdisc(v.index, 'root')).toBe(true);
    expect((await rt.qdiscs(v.index)).map((x) => x.kind)).not.toContain('tbf');
    void netns;
  });

  it('deletes conntrack entries by IP and protocol', async () => {
    const ns = mkns();
    const { netns } = open(ns);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    // A new namespace tracks connections only once a rule needs conntrack.
    sh('ip', ['netns', 'exec', ns, 'iptables', '-w', '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP']);
    // Two UDP flows on loopback inside the namespace: to 127.0.0.2 and to 127.0.0.3.
    sh('ip', ['netns', 'exec', ns, process.execPath, '-e',
      "const s=require('dgram').createSocket('udp4');s.send('x',9999,'127.0.0.2',()=>s.send('y',9999,'127.0.0.3',()=>s.close()))"]);
    const ct = Conntrack.open(netns);
    opened.push(ct);
    const before = (await ct.list()).filter((e) => e.proto === 17).map((e) => e.origDst).sort();
    expect(before).toEqual(['127.0.0.2', '127.0.0.3']);
    expect(await ct.deleteByIp('127.0.0.2', 'tcp')).toBe(0);
    expect(await ct.deleteByIp('127.0.0.2', 'udp')).toBe(1);
    expect(sh('ip', ['netns', 'exec', ns, 'conntrack', '-L', '-p', 'udp'])).not.toMatch(/dst=127\.0\.0\.2 /);
    expect(sh('ip', ['netns', 'exec', ns, 'conntrack', '-L', '-p', 'udp'])).toMatch(/dst=127\.0\.0\.3 /);
    // IPv6 the same way, on ::1.
    sh('ip', ['netns', 'exec', ns, 'ip6tables', '-w', '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP']);
    sh('ip', ['netns', 'exec', ns, process.execPath, '-e', "const s=require('dgram').createSocket('udp6');s.send('x',9999,'::1',()=>s.close())"]);
    expect((await ct.list(6)).filter((e) => e.proto === 17).map((e) => e.origDst)).toEqual(['::1']);
    expect(await ct.deleteByIp('::1', 'udp')).toBe(1);
    expect(await ct.list(6)).toEqual([]);
  });
});

describe('netlink encoding (recording transport)', () => {
  it.each([
    ['::', '::'], ['::1', '::1'], ['2001:db8::', '2001:db8::'], ['2001:0db8:0000:0000:0001:0000:0000:0001', '2001:db8::1:0:0:1'],
    ['fe80::a:b', 'fe80::a:b'], ['::ffff:10.1.2.3', '::ffff:a01:203'], ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'], ['1:0:0:2::3', '1:0:0:2::3'], ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
  ])('round-trips IPv6 %s as %s', (input, text) => {
    expect(ipString(ipBytes(input).bytes)).toBe(text);
    expect(ipBytes(text).bytes).toEqual(ipBytes(input).bytes);
  });

  it('rejects malformed CIDRs naming the field', () => {
    expect(() => parseIpCidr('2001:db8::/129', 'dst')).toThrow(/dst: expected a CIDR/);
    expect(() => parseIpCidr('10.0.0.0', 'dst')).toThrow(/dst: expected a CIDR/);
    expect(parseIpCidr('2001:db8::/32')).toMatchObject({ prefix: 32, family: 10 });
  });

  it('builds a gratuitous ARP: an Ethernet frame with a request whose sender and target are the announced address', () => {
    const f = gratuitousArp({ mac: '0a:58:0a:3f:01:02', ip: '10.63.1.2', to: '0a:58:0a:3f:01:01' });
    expect(f.toString('hex')).toBe(
      '0a580a3f0101' + '0a580a3f0102' + '0806' + // Ethernet: to, from, ARP
      '0001' + '0800' + '06' + '04' + '0001' + // Ethernet/IPv4, request
      '0a580a3f0102' + '0a3f0102' + '000000000000' + '0a3f0102');
    expect(gratuitousArp({ mac: '0a:58:0a:3f:01:02', ip: '10.63.1.2' }).subarray(0, 6).toString('hex')).toBe('ffffffffffff');
    expect(() => gratuitousArp({ mac: 'nope', ip: '10.63.1.2' })).toThrow(/gratuitous ARP mac/);
    expect(() => gratuitousArp({ mac: '0a:58:0a:3f:01:02', ip: '::1' })).toThrow(/IPv4/);
  });

  it('frames messages the way the kernel reads them', () => {
    const m = encodeMessage(RTM.GETLINK, NLM_F.DUMP, 7, Buffer.alloc(16), [[3, Buffer.from('eth0\0')]]);
    expect(m.readUInt32LE(0)).toBe(m.length);
    expect(m.length).toBe(16 + 16 + 4 + 8);
    const parsed = parseMessages(m);
    expect(parsed).toHaveLength(1);
    expect(parsed[0]).toMatchObject({ type: RTM.GETLINK, seq: 7, flags: NLM_F.DUMP | NLM_F.REQUEST });
  });

  it('sends a link-scope route without gateway and an onlink default route', async () => {
    const rec = new RecordingNetlink();
    const rt = new Rtnl(rec);
    await rt.addRoute({ dst: '169.254.1.1/32', oif: 3 });
    await rt.addRoute({ dst: 'default', gw: '169.254.1.1', oif: 3, onlink: true });
    const [link, def] = rec.requests;
    expect(link!.header[6]).toBe(253);
    expect(link!.header[1]).toBe(32);
    expect(def!.header[6]).toBe(0);
    expect(def!.header.readUInt32LE(8)).toBe(4);
    expect(def!.flags & NLM_F.EXCL).toBe(NLM_F.EXCL);
    await expect(rt.addRoute({ dst: '10.0.0.0/33' })).rejects.toThrow(/route dst: expected a CIDR/);
  });
});
