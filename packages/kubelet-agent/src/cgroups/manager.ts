// Applies cgroup plans to the kernel through the cgroupfs files, for both hierarchies:
// v1 (one mount per controller: /sys/fs/cgroup/<controller>/<path>) and v2 (one tree with
// cpu.weight / cpu.max / memory.max and controllers enabled through cgroup.subtree_control).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CgroupResources } from './plan';

export class CgroupError extends Error {
  constructor(readonly cgroup: string, readonly file: string, readonly code: string | undefined, message: string) {
    super(message);
    this.name = 'CgroupError';
  }
}

export interface CgroupManager {
  readonly driver: 'v1' | 'v2';
  /** Creates the cgroup (and its parents) and writes the limits that are set. Idempotent. */
  ensure(cgroupPath: string[], res: CgroupResources): void;
  /** Reads the limits back from the kernel files. */
  read(cgroupPath: string[]): CgroupResources;
  exists(cgroupPath: string[]): boolean;
  /** Removes the cgroup and any children, deepest first. Missing is fine. */
  remove(cgroupPath: string[]): void;
  /** Child cgroup names directly under `cgroupPath`. */
  children(cgroupPath: string[]): string[];
}

/** v1 controllers a pod cgroup is made in (cpu and cpuacct may share a mount or not). */
export const V1_CONTROLLERS = ['cpu', 'cpuacct', 'cpuset', 'memory', 'pids', 'freezer'] as const;
const UNLIMITED_V1_MEMORY = 0x7ffffffffffff000n; // what the kernel reports for "no limit" (page-aligned LONG_MAX)

function checkSegments(p: string[]): void {
  for (const s of p) if (!s || s === '.' || s === '..' || s.includes('/') || s.includes('\0')) throw new RangeError(`cgroup path: segment ${JSON.stringify(s)} is not a plain name`);
}

function write(dir: string, file: string, value: string): void {
  try {
    fs.writeFileSync(path.join(dir, file), value);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new CgroupError(dir, file, err.code, `writing ${JSON.stringify(value)} to ${path.join(dir, file)}: ${err.code ?? err.message}`);
  }
}

function readTrim(dir: string, file: string): string {
  return fs.readFileSync(path.join(dir, file), 'utf8').trim();
}

/** Removes a cgroup tree: rmdir only (cgroupfs files vanish with their directory). */
function rmTree(dir: string): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  for (const d of entries) if (d.isDirectory()) rmTree(path.join(dir, d.name));
  try {
    fs.rmdirSync(dir);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code !== 'ENOENT') throw new CgroupError(dir, '', err.code, `removing cgroup ${dir}: ${err.code} (processes still inside?)`);
  }
}

export class CgroupV1Manager implements CgroupManager {
  readonly driver = 'v1' as const;
  /** @param mountRoot the v1 hierarchy root, /sys/fs/cgroup; @param parent cgroups are made under it. */
  constructor(readonly mountRoot = '/sys/fs/cgroup', readonly parent: string[] = [], readonly controllers: readonly string[] = V1_CONTROLLERS) {
    checkSegments(parent);
    for (const c of controllers) if (!fs.existsSync(path.join(mountRoot, c))) throw new CgroupError(path.join(mountRoot, c), '', 'ENOENT', `cgroup v1 controller ${c} is not mounted at ${path.join(mountRoot, c)}`);
  }

  dir(controller: string, p: string[]): string {
    checkSegments(p);
    return path.join(this.mountRoot, controller, ...this.parent, ...p);
  }

  ensure(p: string[], res: CgroupResources): void {
    const full = [...this.parent, ...p];
    for (const c of this.controllers) {
      // Create level by level: a new cpuset cgroup starts with empty cpus/mems and accepts no
      // task until they are copied from its parent.
      for (let i = 1; i <= full.length; i++) {
        const d = path.join(this.mountRoot, c, ...full.slice(0, i));
        if (fs.existsSync(d)) continue;
        fs.mkdirSync(d);
        if (c === 'cpuset') {
          const parentDir = path.dirname(d);
          for (const f of ['cpuset.cpus', 'cpuset.mems']) write(d, f, readTrim(parentDir, f) || '\n');
        }
      }
    }
    const cpu = this.dir('cpu', p);
    write(cpu, 'cpu.shares', String(res.cpuShares));
    if (res.cpuPeriodUs !== undefined) write(cpu, 'cpu.cfs_period_us', String(res.cpuPeriodUs));
    write(cpu, 'cpu.cfs_quota_us', String(res.cpuQuotaUs ?? -1));
    if (this.controllers.includes('memory')) write(this.dir('memory', p), 'memory.limit_in_bytes', res.memoryLimitBytes !== undefined ? String(res.memoryLimitBytes) : '-1');
    if (this.controllers.includes('pids')) write(this.dir('pids', p), 'pids.max', res.pidsLimit !== undefined ? String(res.pidsLimit) : 'max');
  }

  read(p: string[]): CgroupResources {
    const cpu = this.dir('cpu', p);
    const out: CgroupResources = { cpuShares: Number(readTrim(cpu, 'cpu.shares')) };
    const quota = Number(readTrim(cpu, 'cpu.cfs_quota_us'));
    out.cpuQuotaUs = quota;
    out.cpuPeriodUs = Number(readTrim(cpu, 'cpu.cfs_period_us'));
    if (this.controllers.includes('memory')) {
      const mem = BigInt(readTrim(this.dir('memory', p), 'memory.limit_in_bytes'));
      if (mem < UNLIMITED_V1_MEMORY) out.memoryLimitBytes = mem;
    }
    if (this.controllers.includes('pids')) {
      const pids = readTrim(this.dir('pids', p), 'pids.max');
      if (pids !== 'max') out.pidsLimit = Number(pids);
    }
    return out;
  }

  exists(p: string[]): boolean {
    return this.controllers.every((c) => fs.existsSync(this.dir(c, p)));
  }

  remove(p: string[]): void {
    for (const c of this.controllers) rmTree(this.dir(c, p));
  }

  children(p: string[]): string[] {
    try {
      return fs.readdirSync(this.dir('cpu', p), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }
}

/** cgroup v1 cpu.shares → v2 cpu.weight, the mapping runc and the kubelet use. */
export function sharesToWeight(shares: number): number {
  if (shares <= 0) return 100;
  return Math.floor(1 + ((shares - 2) * 9999) / 262142);
}

export function weightToShares(weight: number): number {
  // Inverse of sharesToWeight, rounded up so that a round trip gives back the same weight.
  return Math.ceil(((weight - 1) * 262142) / 9999) + 2;
}

export class CgroupV2Manager implements CgroupManager {
  readonly driver = 'v2' as const;
  constructor(readonly mountRoot = '/sys/fs/cgroup', readonly parent: string[] = [], readonly controllers: readonly string[] = ['cpu', 'memory', 'pids']) {
    checkSegments(parent);
  }

  dir(p: string[]): string {
    checkSegments(p);
    return path.join(this.mountRoot, ...this.parent, ...p);
  }

  ensure(p: string[], res: CgroupResources): void {
    const full = [...this.parent, ...p];
    // Every ancestor must delegate the controllers to its children before they show up below.
    for (let i = 0; i <= full.length; i++) {
      const d = path.join(this.mountRoot, ...full.slice(0, i));
      if (!fs.existsSync(d)) fs.mkdirSync(d);
      if (i < full.length) this.enableControllers(d);
    }
    const d = this.dir(p);
    write(d, 'cpu.weight', String(sharesToWeight(res.cpuShares)));
    const quota = res.cpuQuotaUs !== undefined && res.cpuQuotaUs > 0 ? String(res.cpuQuotaUs) : 'max';
    write(d, 'cpu.max', `${quota} ${res.cpuPeriodUs ?? 100_000}`);
    write(d, 'memory.max', res.memoryLimitBytes !== undefined ? String(res.memoryLimitBytes) : 'max');
    write(d, 'pids.max', res.pidsLimit !== undefined ? String(res.pidsLimit) : 'max');
  }

  private enableControllers(d: string): void {
    const have = new Set(readTrim(d, 'cgroup.subtree_control').split(/\s+/).filter(Boolean));
    const missing = this.controllers.filter((c) => !have.has(c));
    if (missing.length) write(d, 'cgroup.subtree_control', missing.map((c) => `+${c}`).join(' '));
  }

  read(p: string[]): CgroupResources {
    const d = this.dir(p);
    const [quota, period] = readTrim(d, 'cpu.max').split(/\s+/);
    const out: CgroupResources = { cpuShares: weightToShares(Number(readTrim(d, 'cpu.weight'))), cpuQuotaUs: quota === 'max' ? -1 : Number(quota), cpuPeriodUs: Number(period) };
    const mem = readTrim(d, 'memory.max');
    if (mem !== 'max') out.memoryLimitBytes = BigInt(mem);
    const pids = readTrim(d, 'pids.max');
    if (pids !== 'max') out.pidsLimit = Number(pids);
    return out;
  }

  exists(p: string[]): boolean {
    return fs.existsSync(this.dir(p));
  }

  remove(p: string[]): void {
    rmTree(this.dir(p));
  }

  children(p: string[]): string[] {
    try {
      return fs.readdirSync(this.dir(p), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }
}

/**
 * Picks the driver the machine offers: v2 when /sys/fs/cgroup is a cgroup2 mount (unified), else v1
 * (hybrid machines like this one keep the controllers on v1 and an empty v2 at /unified).
 */
export function detectCgroupDriver(mountRoot = '/sys/fs/cgroup'): 'v1' | 'v2' {
  return fs.existsSync(path.join(mountRoot, 'cgroup.controllers')) ? 'v2' : 'v1';
}

/**
 * Where a cgroup root handed to the agent sits in the machine's cgroupfs, as path segments: the
 * runtime is given cgroup_parent relative to /sys/fs/cgroup, while the agent may see a per-node
 * root (e.g. `<root>/<controller>` symlinks to `/sys/fs/cgroup/<controller>/berth-<run>-<node>`,
 * as `berth up` makes). Empty when the root is the machine's own, or lies outside it (a fixture).
 */
export function cgroupRootPrefix(cgroupRoot: string, machineRoot = '/sys/fs/cgroup'): string[] {
  const v2 = detectCgroupDriver(cgroupRoot) === 'v2';
  try {
    const real = fs.realpathSync(v2 ? cgroupRoot : path.join(cgroupRoot, 'cpu'));
    const base = fs.realpathSync(v2 ? machineRoot : path.join(machineRoot, 'cpu'));
    const rel = path.relative(base, real);
    if (!rel || rel.startsWith('..') || path.isAbsolute(rel)) return [];
    return rel.split(path.sep);
  } catch {
    return [];
  }
}
