// The pod cgroup tree on the real kernel (cgroup v1 on this machine) under a unique test root
// in every controller, read back from the kernel files; and the v2 file mapping on a tmpfs-like
// fixture directory (this machine's v2 hierarchy has no controllers to test against).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CgroupError, cgroupRootPrefix, CgroupV1Manager, CgroupV2Manager, detectCgroupDriver, sharesToWeight, V1_CONTROLLERS, weightToShares } from './manager';
import { podCgroupPlan, qosCgroupPlans } from './plan';
import { container, pod } from '../testing/pods';

const MiB = 1024n * 1024n;

/** Removes a test root from every controller; runs after each test, also a failed one. */
function removeTestRoot(root: string): void {
  for (const c of V1_CONTROLLERS) {
    if (fs.existsSync(path.join('/sys/fs/cgroup', c, root))) new CgroupV1Manager('/sys/fs/cgroup', [], [c]).remove([root]);
  }
}

describe('cgroup v1 on the real kernel', () => {
  const root = `berth-test-${crypto.randomBytes(4).toString('hex')}`;
  afterEach(() => removeTestRoot(root));

  it('this machine is v1 for the controllers', () => {
    expect(detectCgroupDriver()).toBe('v1');
  });

  it('a per-node cgroup root (symlinks into the machine cgroupfs, as berth up makes): pods are made under it and the runtime prefix names it', () => {
    new CgroupV1Manager('/sys/fs/cgroup').ensure([root], { cpuShares: 1024 });
    const links = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cgroot-'));
    try {
      for (const c of V1_CONTROLLERS) fs.symlinkSync(path.join('/sys/fs/cgroup', c, root), path.join(links, c));
      expect(cgroupRootPrefix(links)).toEqual([root]);
      expect(cgroupRootPrefix('/sys/fs/cgroup')).toEqual([]);
      expect(cgroupRootPrefix(links + '-missing')).toEqual([]);
      const m = new CgroupV1Manager(links, []);
      m.ensure(['kubepods', 'besteffort', 'podx'], { cpuShares: 2 });
      expect(fs.readFileSync(path.join('/sys/fs/cgroup/cpu', root, 'kubepods', 'besteffort', 'podx', 'cpu.shares'), 'utf8').trim()).toBe('2');
    } finally {
      fs.rmSync(links, { recursive: true, force: true });
    }
  });

  it('creates kubepods/{burstable,besteffort}/pod<uid> with the planned limits and reads them back', () => {
    const m = new CgroupV1Manager('/sys/fs/cgroup', [root]);
    const guaranteed = pod([container('a', { limits: { cpu: '250m', memory: '64Mi' } })], { uid: 'g-1' });
    const burstable = pod([container('a', { requests: { cpu: '100m', memory: '32Mi' }, limits: { cpu: '1500m', memory: '96Mi' } })], { uid: 'b-1' });
    const besteffort = pod([container('a')], { uid: 'e-1' });
    for (const q of qosCgroupPlans([guaranteed, burstable, besteffort], { milliCpu: 2000n, memoryBytes: 1024n * MiB })) m.ensure(q.path, q.resources);
    const plans = [guaranteed, burstable, besteffort].map((p) => podCgroupPlan(p, { podPidsLimit: 512 }));
    for (const plan of plans) m.ensure(plan.path, plan.resources);

    expect(m.children(['kubepods'])).toEqual(['besteffort', 'burstable', 'podg-1']);
    expect(m.children(['kubepods', 'burstable'])).toEqual(['podb-1']);
    expect(m.children(['kubepods', 'besteffort'])).toEqual(['pode-1']);
    // Every controller has the tree, and the kernel reports the values we planned.
    for (const c of V1_CONTROLLERS) expect(fs.existsSync(path.join('/sys/fs/cgroup', c, root, 'kubepods', 'burstable', 'podb-1')), c).toBe(true);
    const raw = (c: string, f: string, ...p: string[]) => fs.readFileSync(path.join('/sys/fs/cgroup', c, root, ...p, f), 'utf8').trim();
    expect(raw('cpu', 'cpu.shares', 'kubepods', 'podg-1')).toBe('256');
    expect(raw('cpu', 'cpu.cfs_quota_us', 'kubepods', 'podg-1')).toBe('25000');
    expect(raw('memory', 'memory.limit_in_bytes', 'kubepods', 'podg-1')).toBe(String(64n * MiB));
    expect(raw('cpu', 'cpu.shares', 'kubepods', 'burstable')).toBe('102');
    expect(raw('cpu', 'cpu.shares', 'kubepods', 'besteffort', 'pode-1')).toBe('2');
    expect(raw('cpu', 'cpu.cfs_quota_us', 'kubepods', 'besteffort', 'pode-1')).toBe('-1');
    expect(raw('cpuset', 'cpuset.cpus', 'kubepods', 'burstable', 'podb-1')).toBe(raw('cpuset', 'cpuset.cpus'));

    expect(m.read(['kubepods', 'burstable', 'podb-1'])).toEqual({ cpuShares: 102, cpuQuotaUs: 150000, cpuPeriodUs: 100000, memoryLimitBytes: 96n * MiB, pidsLimit: 512 });
    expect(m.read(['kubepods', 'besteffort', 'pode-1'])).toEqual({ cpuShares: 2, cpuQuotaUs: -1, cpuPeriodUs: 100000, pidsLimit: 512 });

    // Updating is idempotent and can lift limits again.
    m.ensure(['kubepods', 'burstable', 'podb-1'], { cpuShares: 512 });
    expect(m.read(['kubepods', 'burstable', 'podb-1'])).toEqual({ cpuShares: 512, cpuQuotaUs: -1, cpuPeriodUs: 100000 });

    m.remove(['kubepods', 'burstable', 'podb-1']);
    expect(m.exists(['kubepods', 'burstable', 'podb-1'])).toBe(false);
    expect(m.exists(['kubepods', 'burstable'])).toBe(true);
  });

  it('a process placed in the pod cgroup is held by its memory limit, and removal refuses while it lives', async () => {
    const m = new CgroupV1Manager('/sys/fs/cgroup', [root]);
    const plan = podCgroupPlan(pod([container('a', { limits: { cpu: '100m', memory: '16Mi' } })], { uid: 'oom-1' }));
    m.ensure(plan.path, plan.resources);
    const { spawn } = await import('node:child_process');
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      fs.writeFileSync(path.join(m.dir('memory', plan.path), 'cgroup.procs'), String(child.pid));
      expect(fs.readFileSync(path.join(m.dir('memory', plan.path), 'cgroup.procs'), 'utf8').trim()).toBe(String(child.pid));
      expect(() => m.remove(plan.path)).toThrow(CgroupError);
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    m.remove(plan.path);
    expect(m.exists(plan.path)).toBe(false);
  });

  it('a value the kernel refuses is reported with the cgroup file and errno', () => {
    const m = new CgroupV1Manager('/sys/fs/cgroup', [root], ['cpu', 'memory']);
    // The kernel refuses CFS quotas under 1 ms; the plan never produces one, a caller might.
    let err: unknown;
    try { m.ensure(['p'], { cpuShares: 2, cpuQuotaUs: 500, cpuPeriodUs: 100000 }); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(CgroupError);
    expect((err as CgroupError).file).toBe('cpu.cfs_quota_us');
    expect((err as CgroupError).code).toBe('EINVAL');
    expect((err as Error).message).toMatch(/writing "500" to .*\/p\/cpu\.cfs_quota_us: EINVAL/);
  });
});

describe('cgroup v2 file mapping (fixture directory)', () => {
  let dir: string | undefined;
  afterEach(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); dir = undefined; });

  it.each([[2, 1], [1024, 39], [262144, 10000], [102, 4]])('shares %s -> weight %s and back', (s, w) => {
    expect(sharesToWeight(s)).toBe(w);
    expect(sharesToWeight(weightToShares(w))).toBe(w);
  });

  it('writes cpu.weight, cpu.max, memory.max, pids.max and delegates controllers down the path', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cg2-'));
    fs.writeFileSync(path.join(dir, 'cgroup.controllers'), 'cpu memory pids\n');
    fs.writeFileSync(path.join(dir, 'cgroup.subtree_control'), '');
    // A real v2 kernel creates the interface files on mkdir; the fixture pre-creates the tree.
    for (const rel of ['kubepods', 'kubepods/burstable', 'kubepods/burstable/podb-2']) {
      fs.mkdirSync(path.join(dir, rel));
      for (const f of ['cgroup.subtree_control', 'cpu.weight', 'cpu.max', 'memory.max', 'pids.max']) fs.writeFileSync(path.join(dir, rel, f), f === 'cgroup.subtree_control' ? '' : 'max');
    }
    const m = new CgroupV2Manager(dir, []);
    expect(detectCgroupDriver(dir)).toBe('v2');
    const plan = podCgroupPlan(pod([container('a', { requests: { cpu: '100m', memory: '32Mi' }, limits: { cpu: '1500m', memory: '96Mi' } })], { uid: 'b-2' }));
    m.ensure(plan.path, plan.resources);
    const d = path.join(dir, 'kubepods', 'burstable', 'podb-2');
    expect(fs.readFileSync(path.join(d, 'cpu.weight'), 'utf8')).toBe('4');
    expect(fs.readFileSync(path.join(d, 'cpu.max'), 'utf8')).toBe('150000 100000');
    expect(fs.readFileSync(path.join(d, 'memory.max'), 'utf8')).toBe(String(96n * MiB));
    expect(fs.readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8')).toBe('+cpu +memory +pids');
    expect(fs.readFileSync(path.join(dir, 'kubepods', 'burstable', 'cgroup.subtree_control'), 'utf8')).toBe('+cpu +memory +pids');
    // cpu.weight is coarser than shares: reading back gives the smallest shares with the same weight.
    expect(m.read(['kubepods', 'burstable', 'podb-2'])).toEqual({ cpuShares: 81, cpuQuotaUs: 150000, cpuPeriodUs: 100000, memoryLimitBytes: 96n * MiB });
  });
});

describe('PodCgroups on the real kernel', () => {
  const root = `berth-test-${crypto.randomBytes(4).toString('hex')}`;
  afterEach(() => removeTestRoot(root));

  it('creates the pods\' cgroups, updates burstable shares, and empties and removes orphans', async () => {
    const { PodCgroups } = await import('./pod-cgroups');
    const { spawn } = await import('node:child_process');
    const m = new CgroupV1Manager('/sys/fs/cgroup', [root]);
    const pc = new PodCgroups({ manager: m, allocatable: { milliCpu: 2000n, memoryBytes: 1024n * MiB }, procsFile: (p) => path.join(m.dir('cpu', p), 'cgroup.procs') });
    const a = pod([container('a', { requests: { cpu: '300m' } })], { uid: 'a-1' });
    const b = pod([container('a', { requests: { cpu: '200m' } })], { uid: 'b-1' });
    const g = pod([container('a', { limits: { cpu: '1', memory: '64Mi' } })], { uid: 'g-1' });
    let r = await pc.sync([a, b, g]);
    expect(r.ensured).toEqual(['kubepods/burstable/poda-1', 'kubepods/burstable/podb-1', 'kubepods/podg-1']);
    expect(m.read(['kubepods', 'burstable']).cpuShares).toBe(512);

    // b goes away while a process still runs in its cgroup (in every controller, as a runtime
    // would place it): the process is killed and the cgroup removed; a and g stay.
    // The shell forks its sleep only after it was moved, so both are inside the cgroup.
    const child = spawn('sh', ['-c', 'read x; sleep 60 & echo $!; wait'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const sleepPid = new Promise<number>((res) => child.stdout!.once('data', (b: Buffer) => res(Number(String(b).trim()))));
    const exited = new Promise((res) => child.once('exit', res));
    try {
      for (const c of V1_CONTROLLERS) fs.writeFileSync(path.join(m.dir(c, ['kubepods', 'burstable', 'podb-1']), 'cgroup.procs'), String(child.pid));
      child.stdin!.end('go\n');
      const grandchild = await sleepPid;
      expect(fs.readFileSync(path.join(m.dir('cpu', ['kubepods', 'burstable', 'podb-1']), 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number).sort()).toEqual([child.pid!, grandchild].sort());
      r = await pc.sync([a, g]);
      expect(r.killed).toContain(grandchild);
      // Dead: gone, or a zombie waiting for its new parent to reap it.
      const state = () => { try { return fs.readFileSync(`/proc/${grandchild}/stat`, 'utf8').split(') ')[1][0]; } catch { return 'gone'; } };
      expect(['gone', 'Z', 'X']).toContain(state());
      expect(r.removed).toEqual(['kubepods/burstable/podb-1']);
      expect(r.killed).toContain(child.pid);
      expect(await exited).toBe(null);
      expect(m.exists(['kubepods', 'burstable', 'podb-1'])).toBe(false);
      expect(m.children(['kubepods', 'burstable'])).toEqual(['poda-1']);
      expect(m.read(['kubepods', 'burstable']).cpuShares).toBe(307);
      expect(m.exists(['kubepods', 'podg-1'])).toBe(true);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
