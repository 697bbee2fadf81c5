// cgroup limits enforced on the real kernel (v1 controllers on this machine), the v2 file logic
// on a fixture dir, and v2 freeze on a real cgroup2 mount.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { CgroupV1, CgroupV2, cgroupPath, sharesToWeight, v1Mounts } from './cgroups/cgroups';
import { uniqueId } from './testing/bundle';
import { Harness } from './testing/harness';

let h: Harness;
beforeEach(() => {
  h = new Harness();
});
afterEach(async () => {
  await h.cleanup();
});

const mounts = v1Mounts();

describe('cgroup v1 limits, enforced', () => {
  it('memory limit: the container is OOM-killed and the exit says so', async () => {
    const b = h.bundle(['sh', '-c', 'x=a; while true; do x=$x$x$x$x; done'], (s) => {
      s.linux!.resources = { memory: { limit: 32 * 1024 * 1024, swap: 32 * 1024 * 1024 } };
    });
    const id = uniqueId();
    const c = await h.rt.create(id, { bundle: b.dir });
    expect(fs.readFileSync(path.join(mounts['memory']!, 'berth', id, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(String(32 * 1024 * 1024));
    await h.rt.start(id);
    const exit = await c.exited;
    expect(exit).toEqual({ code: null, signal: 'SIGKILL', oomKilled: true });
  });

  it('pids.max: fork fails past the limit', async () => {
    const r = await h.run(['sh', '-c', 'read max < /sys/fs/cgroup/pids/pids.max; echo max=$max; for i in 1 2 3 4 5 6; do sleep 5 & done; echo not-reached'], (s) => {
      s.linux!.resources = { pids: { limit: 4 } };
    });
    // sh + 3 sleeps fit; the 4th fork fails (ash gives up on the script then)
    expect(r.out).toMatch(/^max=4\nsh: can't fork: Resource temporarily unavailable\n$/);
    expect(r.code).not.toBe(0);
  });

  it('cpu quota: the container is throttled (cpu.stat)', async () => {
    const b = h.bundle(['sh', '-c', 'while true; do :; done'], (s) => {
      s.linux!.resources = { cpu: { quota: 10000, period: 100000, shares: 512 } };
    });
    const id = uniqueId();
    await h.rt.create(id, { bundle: b.dir });
    await h.rt.start(id);
    await new Promise((r) => setTimeout(r, 600));
    const st = h.rt.stats(id);
    expect(st.cpu.throttledPeriods).toBeGreaterThan(0);
    expect(st.cpu.usageNs).toBeGreaterThan(0);
    // 10% of one cpu for ~0.6 s: well under 300 ms of cpu time
    expect(st.cpu.usageNs).toBeLessThan(300e6);
    expect(fs.readFileSync(path.join(mounts['cpu']!, 'berth', id, 'cpu.shares'), 'utf8').trim()).toBe('512');
  });

  it('cpuset: the container runs only on the given cpu', async () => {
    const r = await h.run(['grep', 'Cpus_allowed_list', '/proc/self/status'], (s) => {
      s.linux!.resources = { cpu: { cpus: '0', mems: '0' } };
    });
    expect(r.out).toMatch(/Cpus_allowed_list:\s+0\n/);
  });

  it('freezer: pause and resume; stats, ps and update', async () => {
    const b = h.bundle(['sh', '-c', 'while true; do sleep 0.05; done']);
    const id = uniqueId();
    await h.rt.create(id, { bundle: b.dir });
    await h.rt.start(id);
    await h.rt.pause(id);
    expect(h.rt.state(id).status).toBe('paused');
    const stat = fs.readFileSync(`/proc/${h.rt.state(id).pid}/stat`, 'utf8');
    expect(stat).toMatch(/\) [SD] /);
    h.rt.resume(id);
    expect(h.rt.state(id).status).toBe('running');
    expect(h.rt.ps(id)).toContain(h.rt.state(id).pid);
    await h.rt.update(id, { memory: { limit: 64 * 1024 * 1024 }, pids: { limit: 50 } });
    expect(fs.readFileSync(path.join(mounts['pids']!, 'berth', id, 'pids.max'), 'utf8').trim()).toBe('50');
    expect(h.rt.stats(id).memory.limit).toBe(64 * 1024 * 1024);
    await expect(h.rt.update(id, { memory: { limt: 5 } } as never)).rejects.toThrow(/resources\.memory\.limt: unknown field/);
  });

  it('devices allow-list: denied devices cannot be opened even with mknod', async () => {
    const r = await h.run(['sh', '-c', 'mknod /tmp/mem c 1 1 && head -c1 /tmp/mem >/dev/null; echo rc=$?; head -c1 /dev/zero | wc -c'], (s) => {
      s.root!.readonly = false;
      for (const k of ['bounding', 'effective', 'permitted'] as const) s.process!.capabilities![k]!.push('CAP_MKNOD');
    });
    expect(r.out).toMatch(/Operation not permitted\nrc=1\n1\n/);
  });
});

describe('cgroup parents', () => {
  it('empty parents of relative cgroupsPaths go with their last container; parents of absolute paths that were there stay', async () => {
    const grp = uniqueId('grp');
    const kept = uniqueId('kept');
    const dirs = (rel: string): string[] => Object.values(mounts).map((m) => path.join(m, 'berth', rel));
    // a parent made by someone else beforehand (like a pod cgroup): never removed by us
    const pre = new CgroupV1(`/berth/${kept}`);
    await pre.create();
    try {
      const ids = [uniqueId(), uniqueId()];
      for (const id of ids) await h.rt.create(id, { bundle: h.bundle(['true'], (s) => { s.linux!.cgroupsPath = `${grp}/${id}`; }).dir });
      const inKept = uniqueId();
      await h.rt.create(inKept, { bundle: h.bundle(['true'], (s) => { s.linux!.cgroupsPath = `/berth/${kept}/${inKept}`; }).dir });
      for (const d of dirs(grp)) expect(fs.existsSync(d), d).toBe(true);
      await h.rt.delete(ids[0]!, true);
      await h.rt.settle();
      // the other container still uses it
      for (const d of dirs(grp)) expect(fs.existsSync(d), d).toBe(true);
      await h.rt.delete(ids[1]!, true);
      await h.rt.settle();
      for (const d of dirs(grp)) expect(fs.existsSync(d), d).toBe(false);
      await h.rt.delete(inKept, true);
      await h.rt.settle();
      for (const d of dirs(kept)) expect(fs.existsSync(d), d).toBe(true);
    } finally {
      await pre.destroy([]);
    }
    for (const d of dirs(kept)) expect(fs.existsSync(d), d).toBe(false);
  });

  it('a parent removed by another runtime while this one sets it up is made again, not an error', async () => {
    // Another process deletes the shared parent whenever it is empty (as a runtime deleting its
    // last container under it does), racing this one's mkdir of the parent and its cpuset setup.
    const grp = uniqueId('race');
    const dirs = [...new Set(Object.values(mounts))].map((m) => path.join(m, grp));
    const script = `const fs=require('fs');const d=${JSON.stringify(dirs)};const end=Date.now()+20000;
      process.stdout.write('go\\n');
      while(Date.now()<end){for(const x of d){try{fs.rmdirSync(x)}catch{}}const t=Date.now()+0.05;while(Date.now()<t);}`;
    const { spawn } = await import('node:child_process');
    const remover = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise((r) => remover.stdout!.once('data', r));
      for (let i = 0; i < 300; i++) {
        const cg = new CgroupV1(`/${grp}/c${i}`);
        await cg.create();
        // the cpuset is usable: cpus and mems set from the parent
        expect(fs.readFileSync(path.join(cg.paths['cpuset']!, 'cpuset.mems'), 'utf8').trim()).not.toBe('');
        await cg.destroyLeaf();
      }
    } finally {
      remover.kill('SIGKILL');
      await new Promise((r) => remover.once('exit', r));
      // A create that failed half-way leaves its leaf: children first, then the parent.
      for (const d of dirs) {
        try { for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) fs.rmdirSync(path.join(d, e.name)); } catch { /* gone */ }
        try { fs.rmdirSync(d); } catch { /* gone */ }
      }
    }
    for (const d of dirs) expect(fs.existsSync(d), d).toBe(false);
  });
});

describe('cgroup paths', () => {
  it.each([
    ['/a/b', 'id', '/a/b'],
    ['rel', 'id', '/berth/rel'],
    [undefined, 'id', '/berth/id'],
  ])('%s for %s -> %s', (p, id, want) => expect(cgroupPath(p, id, false)).toBe(want));

  it.each([['/../x'], ['/'], ['system.slice:berth:x']])('rejects %s', (p) => expect(() => cgroupPath(p, 'id', false)).toThrow(/linux\.cgroupsPath/));

  it('resources whose controller this node lacks are clear errors, not ignored', async () => {
    const cg = new CgroupV1('/berth/never-created', { cpu: '/nonexistent-cpu' });
    await expect(cg.apply({ network: { priorities: [{ name: 'eth0', priority: 1 }] } })).rejects.toThrow(/linux\.resources\.network\.priorities: the net_prio cgroup controller is not available on this node/);
    await expect(cg.apply({ rdma: { mlx4_0: { hcaHandles: 2 } } })).rejects.toThrow(/linux\.resources\.rdma\.mlx4_0: the rdma cgroup controller is not available/);
    await expect(cg.apply({ hugepageLimits: [{ pageSize: '2MB', limit: 1 }] })).rejects.toThrow(/hugepageLimits\[0\]: the hugetlb cgroup controller is not available/);
    await expect(cg.apply({ pids: { limit: 5 } })).rejects.toThrow(/linux\.resources\.pids: the pids cgroup controller is not available/);
  });

  it('--systemd-cgroup is a clear error', () => expect(() => cgroupPath(undefined, 'x', true)).toThrow(/systemd cgroup driver is not supported/));
});

describe('cgroup v2 driver', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cg2-'));
  });
  afterEach(() => {
    try { execFileSync('umount', [dir], { stdio: 'ignore' }); } catch { /* fixture, not a mount */ }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes the unified files for every OCI resource (fixture)', async () => {
    fs.writeFileSync(path.join(dir, 'cgroup.controllers'), 'cpu io memory pids cpuset hugetlb\n');
    fs.writeFileSync(path.join(dir, 'cgroup.subtree_control'), '');
    const cg = new CgroupV2('/berth/c1', dir);
    await cg.create();
    expect(fs.readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8')).toBe('+cpu +io +memory +pids +cpuset +hugetlb');
    await cg.apply({
      memory: { limit: 1 << 20, reservation: 1 << 19, swap: 3 << 20 },
      cpu: { shares: 1024, quota: 50000, period: 100000, cpus: '0-1', mems: '0' },
      pids: { limit: 10 },
      blockIO: { weight: 500, throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1000 }], throttleWriteIOPSDevice: [{ major: 8, minor: 0, rate: 20 }] },
      hugepageLimits: [{ pageSize: '2MB', limit: 4 << 20 }],
      unified: { 'memory.high': '900000' },
    });
    const read = (f: string): string => fs.readFileSync(path.join(dir, 'berth', 'c1', f), 'utf8');
    expect(read('memory.max')).toBe(String(1 << 20));
    expect(read('memory.low')).toBe(String(1 << 19));
    expect(read('memory.swap.max')).toBe(String(2 << 20));
    expect(read('cpu.weight')).toBe(String(sharesToWeight(1024)));
    expect(read('cpu.max')).toBe('50000 100000');
    expect(read('cpuset.cpus')).toBe('0-1');
    expect(read('pids.max')).toBe('10');
    expect(read('io.weight')).toBe('default 4950'); // runc's 10..1000 -> 1..10000 mapping
    expect(read('io.max')).toBe('8:0 rbps=1000 wiops=20');
    expect(read('hugetlb.2MB.max')).toBe(String(4 << 20));
    expect(read('memory.high')).toBe('900000');
    fs.writeFileSync(path.join(dir, 'berth', 'c1', 'cpu.stat'), 'usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 5\nnr_throttled 2\nthrottled_usec 7\n');
    fs.writeFileSync(path.join(dir, 'berth', 'c1', 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n');
    fs.writeFileSync(path.join(dir, 'berth', 'c1', 'memory.current'), '4096\n');
    expect(cg.stats()).toMatchObject({ cpu: { usageNs: 10000, throttledPeriods: 2, throttledNs: 7000 }, memory: { usage: 4096, oomKills: 1, oomEvents: 2 }, pids: { limit: 10 } });
    await expect(cg.apply({ unified: { 'cgroup.procs': '1' } })).rejects.toThrow(/linux\.resources\.unified\.cgroup\.procs: not a settable cgroup file/);
    await expect(cg.apply({ memory: { swappiness: 10 } })).rejects.toThrow(/swappiness/);
    expect(sharesToWeight(2)).toBe(1);
    expect(sharesToWeight(262144)).toBe(10000);
  });

  it('on a real cgroup2 mount: a process is placed, frozen and thawed, and the dir removed', async () => {
    execFileSync('mount', ['-t', 'cgroup2', 'none', dir]);
    // This is the host's one v2 hierarchy (also at /sys/fs/cgroup/unified): create() enables
    // the free controllers at its root, which must be undone (crun refuses to run on a hybrid
    // host whose v2 root has controllers enabled).
    const rootControl = fs.readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8').trim();
    const cg = new CgroupV2(`/berth-${uniqueId()}`, dir);
    await cg.create();
    const child = (await import('node:child_process')).spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      fs.writeFileSync(cg.procsFiles()[0]!, String(child.pid));
      expect(cg.pids()).toEqual([child.pid]);
      await cg.freeze();
      expect(cg.frozen()).toBe(true);
      expect(fs.readFileSync(path.join(cg.paths['']!, 'cgroup.events'), 'utf8')).toMatch(/frozen 1/);
      cg.thaw();
      expect(cg.frozen()).toBe(false);
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      await cg.destroy();
      const enabled = fs.readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8').trim().split(/\s+/).filter(Boolean);
      const keep = new Set(rootControl.split(/\s+/).filter(Boolean));
      const drop = enabled.filter((c) => !keep.has(c));
      if (drop.length > 0) fs.writeFileSync(path.join(dir, 'cgroup.subtree_control'), drop.map((c) => `-${c}`).join(' '));
    }
    expect(fs.existsSync(cg.paths['']!)).toBe(false);
    expect(fs.readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8').trim()).toBe(rootControl);
  });
});
