// Pod sandboxes and containers from images on the real kernel: namespaces pinned by bind
// mounts (no pause process), the pod cgroup under its QoS parent, hostname/hosts/resolv.conf,
// pod sysctls; containers of one pod sharing its network and IPC namespaces; nothing left behind.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { runtime } from '@berth/api';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { v1Mounts } from './cgroups/cgroups';
import { mountsUnder } from './sandbox/sandbox';
import { CriFixture, removeTestImageLayout, testImageLayout } from './testing/cri';

let fx: CriFixture;
beforeAll(() => { testImageLayout(); });
afterAll(() => removeTestImageLayout());
afterEach(async () => {
  await fx?.cleanup();
});

const nsId = (p: string): string => fs.readlinkSync(p);
const pinId = (p: string): number => fs.statSync(p).ino;

async function waitExit(fx: CriFixture, id: string): Promise<void> {
  await fx.containers.get(id).exited;
}

describe('pod sandboxes', () => {
  it('pins net, ipc and uts namespaces without a process, with the hostname, sysctls, files and pod cgroup', async () => {
    fx = await new CriFixture().init();
    const cfg = fx.sandboxConfig({
      hostname: 'web-0',
      dnsConfig: { servers: ['10.96.0.10'], searches: ['default.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5'] },
    });
    cfg.linux!.sysctls = { 'net.ipv4.ip_unprivileged_port_start': '80', 'kernel.shmmni': '1234' };
    const sb = await fx.sandboxes.run(cfg, '');
    expect(sb.state).toBe('ready');
    // Pinned: bind mounts of nsfs files, and no process anywhere lives in the pod's netns.
    const pins = mountsUnder(sb.dir);
    expect(pins.sort()).toEqual([sb.ns.ipc, sb.ns.net, sb.ns.uts].sort());
    expect(fs.statSync(sb.ns.net!).ino).not.toBe(fs.statSync('/proc/self/ns/net').ino);
    const inPod = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => { try { return fs.statSync(`/proc/${p}/ns/net`).ino === pinId(sb.ns.net!); } catch { return false; } });
    expect(inPod).toEqual([]);
    // Our own thread went back home.
    expect(nsId('/proc/thread-self/ns/net')).toBe(nsId('/proc/self/ns/net'));
    // Idempotent per metadata.
    expect((await fx.sandboxes.run(cfg, '')).id).toBe(sb.id);
    // The pod cgroup sits under its QoS parent in every hierarchy.
    for (const mnt of new Set(Object.values(v1Mounts()))) expect(fs.existsSync(path.join(mnt, fx.cgroupRoot, 'kubepods', 'burstable', `pod${sb.uid}`))).toBe(true);
    expect(fs.readFileSync(path.join(sb.dir, 'resolv.conf'), 'utf8')).toBe('nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n');

    const c = await fx.containers.create({ sandboxId: sb.id, config: fx.containerConfig('probe', ['sh', '-c', 'hostname; cat /etc/hostname /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmni /etc/resolv.conf; grep web-0 /etc/hosts; cat /proc/self/cgroup | grep memory']) });
    await fx.containers.start(c.id);
    await waitExit(fx, c.id);
    expect(fx.containers.get(c.id)).toMatchObject({ phase: 'exited', exitCode: 0, reason: 'Completed' });
    const log = fs.readFileSync(c.logPath, 'utf8');
    const lines = log.trim().split('\n').map((l) => l.replace(/^\S+ stdout F /, ''));
    expect(lines.slice(0, 5)).toEqual(['web-0', 'web-0', '80', '1234', 'nameserver 10.96.0.10']);
    expect(log).toMatch(/127\.0\.1\.1\tweb-0/);
    expect(log).toContain(`${fx.cgroupRoot}/kubepods/burstable/pod${sb.uid}/${c.id}`);

    await fx.containers.remove(c.id);
    await fx.sandboxes.remove(sb.id);
    expect(mountsUnder(fx.stateDir)).toEqual([]);
    expect(fs.existsSync(sb.dir)).toBe(false);
    for (const mnt of new Set(Object.values(v1Mounts()))) {
      expect(fs.existsSync(path.join(mnt, fx.cgroupRoot, 'kubepods', 'burstable', `pod${sb.uid}`))).toBe(false);
      // The QoS levels the sandbox made go with it once empty.
      expect(fs.existsSync(path.join(mnt, fx.cgroupRoot, 'kubepods'))).toBe(false);
    }
    await fx.sandboxes.remove(sb.id); // idempotent
  });

  it('leaves a pod cgroup the kubelet made itself to the kubelet', async () => {
    fx = await new CriFixture().init();
    const cfg = fx.sandboxConfig();
    const dirs = [...new Set(Object.values(v1Mounts()))].map((m) => path.join(m, cfg.linux!.cgroupParent));
    for (const d of dirs) fs.mkdirSync(d, { recursive: true });
    const sb = await fx.sandboxes.run(cfg, '');
    await fx.sandboxes.remove(sb.id);
    for (const d of dirs) expect(fs.existsSync(d)).toBe(true);
  });

  it('gives two containers of one pod the same network and IPC namespaces, and another pod different ones', async () => {
    fx = await new CriFixture().init();
    const a = await fx.sandboxes.run(fx.sandboxConfig(), '');
    const b = await fx.sandboxes.run(fx.sandboxConfig({}, 'besteffort'), '');
    const ids: string[] = [];
    for (const [sb, name] of [[a, 'one'], [a, 'two'], [b, 'three']] as const) {
      const c = await fx.containers.create({ sandboxId: sb.id, config: fx.containerConfig(name, ['sleep', '30']) });
      await fx.containers.start(c.id);
      ids.push(c.id);
    }
    const pidOf = (id: string): number => fx.containers.rt.state(id).pid;
    const ns = (id: string, kind: string): number => fs.statSync(`/proc/${pidOf(id)}/ns/${kind}`).ino;
    expect(ns(ids[0]!, 'net')).toBe(pinId(a.ns.net!));
    expect(ns(ids[1]!, 'net')).toBe(pinId(a.ns.net!));
    expect(ns(ids[0]!, 'ipc')).toBe(ns(ids[1]!, 'ipc'));
    expect(ns(ids[0]!, 'uts')).toBe(pinId(a.ns.uts!));
    expect(ns(ids[2]!, 'net')).toBe(pinId(b.ns.net!));
    expect(ns(ids[2]!, 'net')).not.toBe(ns(ids[0]!, 'net'));
    // Each container has its own pid and mount namespaces.
    expect(ns(ids[0]!, 'pid')).not.toBe(ns(ids[1]!, 'pid'));
    // Shared localhost: lo is up in the pod's netns.
    const r = await import('./exec/exec').then((m) => m.execSync(fx.containers, ids[1]!, ['cat', '/sys/class/net/lo/operstate'], 5));
    expect(r.stdout.toString().trim()).toMatch(/^(unknown|up)$/);
    // Stopping the sandbox stops its containers.
    for (const id of ids.slice(0, 2)) await fx.containers.stop(id, 0);
    fx.sandboxes.stop(a.id);
    expect(fx.sandboxes.get(a.id).state).toBe('notready');
    expect(fx.containers.get(ids[0]!).exitCode).toBe(137);
    await expect(fx.containers.create({ sandboxId: a.id, config: fx.containerConfig('late', ['true']) })).rejects.toThrow(/is not ready/);
  });

  it('shares one process namespace between the pod\'s containers on request, kept by a tiny init', async () => {
    fx = await new CriFixture().init();
    const cfg = fx.sandboxConfig();
    cfg.linux!.securityContext = runtime.LinuxSandboxSecurityContext.fromPartial({ namespaceOptions: { pid: runtime.NamespaceMode.NAMESPACE_MODE_POD } });
    const sb = await fx.sandboxes.run(cfg, '');
    expect(sb.ns.pid).toBeDefined();
    const a = await fx.containers.create({ sandboxId: sb.id, config: fx.containerConfig('first', ['sh', '-c', 'sleep 0.5; exit 2']) });
    await fx.containers.start(a.id);
    const b = await fx.containers.create({ sandboxId: sb.id, config: fx.containerConfig('second', ['sleep', '60']) });
    await fx.containers.start(b.id);
    const { execSync } = await import('./exec/exec');
    const ps = (await execSync(fx.containers, b.id, ['ps', '-o', 'pid,args'], 5)).stdout.toString();
    expect(ps).toMatch(/^\s*1 \/busybox sh -c/m); // the namespace's init, not a container
    expect(ps).toContain('sleep 0.5');
    expect(ps).toContain('sleep 60');
    // The first container ends; the namespace and the second container live on.
    await fx.containers.get(a.id).exited;
    expect(fx.containers.get(a.id).exitCode).toBe(2);
    expect(fx.containers.get(b.id).phase).toBe('running');
    const again = await fx.containers.create({ sandboxId: sb.id, config: fx.containerConfig('first', ['true'], { metadata: { name: 'first', attempt: 1 } }) });
    await fx.containers.start(again.id);
    await fx.containers.get(again.id).exited;
    expect(fx.containers.get(again.id).exitCode).toBe(0);
    for (const c of [a.id, b.id, again.id]) await fx.containers.remove(c);
    await fx.sandboxes.remove(sb.id);
    expect(mountsUnder(fx.stateDir)).toEqual([]);
    expect(fx.containers.rt.store.ids()).toEqual([]);
  });

  it.each([
    ['no metadata', (c: runtime.PodSandboxConfig) => { c.metadata = undefined; }, /config\.metadata\.name: must not be empty/],
    ['a uid with a slash', (c: runtime.PodSandboxConfig) => { c.metadata!.uid = '../x'; }, /config\.metadata\.uid/],
    ['a bad hostname', (c: runtime.PodSandboxConfig) => { c.hostname = 'bad_host!'; }, /config\.hostname/],
    ['a node-wide sysctl', (c: runtime.PodSandboxConfig) => { c.linux!.sysctls = { 'kernel.panic': '1' }; }, /config\.linux\.sysctls\.kernel\.panic: not a namespaced sysctl/],
    ['an unknown sysctl', (c: runtime.PodSandboxConfig) => { c.linux!.sysctls = { 'net.ipv4.no_such_thing': '1' }; }, /config\.linux\.sysctls\.net\.ipv4\.no_such_thing: cannot set/],
    ['a systemd slice', (c: runtime.PodSandboxConfig) => { c.linux!.cgroupParent = 'kubepods-burstable.slice'; }, /config\.linux\.cgroup_parent/],
    ['a parent with ..', (c: runtime.PodSandboxConfig) => { c.linux!.cgroupParent = '/kubepods/../../x'; }, /config\.linux\.cgroup_parent/],
    ['a DNS server that is not an address', (c: runtime.PodSandboxConfig) => { c.dnsConfig = { servers: ['evil\nnameserver 1.1.1.1'], searches: [], options: [] }; }, /config\.dns_config\.servers\[0\]/],
  ])('rejects %s and leaves nothing behind', async (_n, edit, re) => {
    fx = await new CriFixture().init();
    const cfg = fx.sandboxConfig();
    edit(cfg);
    await expect(Promise.resolve().then(() => fx.sandboxes.run(cfg, ''))).rejects.toThrow(re);
    expect(fs.readdirSync(fx.sandboxes.root)).toEqual([]);
    expect(mountsUnder(fx.stateDir)).toEqual([]);
    if (cfg.metadata?.uid && !cfg.metadata.uid.includes('/')) {
      for (const mnt of new Set(Object.values(v1Mounts()))) expect(fs.existsSync(path.join(mnt, fx.cgroupRoot, 'kubepods', 'burstable', `pod${cfg.metadata.uid}`))).toBe(false);
    }
  });
});
