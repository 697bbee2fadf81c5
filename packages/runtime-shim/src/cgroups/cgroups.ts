// cgroup drivers: v1 (one hierarchy per controller, this machine) and v2 (unified). Both take
// the OCI linux.resources and give the same stats shape. A driver works under a `root` dir
// (/sys/fs/cgroup normally; a fixture dir in tests) and a container path like /berth/<id>.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { ConfigError, type Resources } from '../oci/config';

export interface CgroupStats {
  cpu: { usageNs: number; userNs: number; systemNs: number; throttledPeriods: number; throttledNs: number; periods: number };
  memory: { usage: number; maxUsage: number; limit: number; oomKills: number; oomEvents: number };
  pids: { current: number; limit: number };
}

export interface CgroupDriver {
  readonly version: 1 | 2;
  /** Directory per hierarchy (v1) or the one directory (v2), keyed by controller name (v2: ''). */
  readonly paths: Record<string, string>;
  /** Ancestors (cgroup paths like /berth/a) that create() made, outermost first. */
  readonly created: string[];
  /** Makes the cgroup and any missing ancestor (recorded in `created`). */
  create(): Promise<void>;
  /** The cgroup.procs files to write the init pid into. */
  procsFiles(): string[];
  apply(res: Resources, at?: string): Promise<void>;
  stats(): CgroupStats;
  /** OOM kills so far (one file read, for the exit path). */
  oomKills(): number;
  freeze(): Promise<void>;
  thaw(): void;
  frozen(): boolean;
  pids(): number[];
  /**
   * Removes the directories (kills nothing: the caller has); missing ones are fine. Then the
   * ancestors this runtime made, if empty: `ownedParents` (default: what this instance's
   * create() made) and the runtime's own parent /berth.
   */
  destroy(ownedParents?: string[]): Promise<void>;
  /** destroy() in two steps: the cgroup itself ... */
  destroyLeaf(): Promise<void>;
  /** ... then its empty ancestors that are ours (this can wait for the kernel: see rmdirIfEmpty). */
  removeParents(ownedParents: string[]): Promise<void>;
}

/** The parent of every cgroup this runtime names by default (`/berth/<id>`). */
export const RUNTIME_PARENT = '/berth';

// Synchronous on purpose: a cgroupfs mkdir or write is an in-memory kernel operation of
// 15-40 us (measured here: 8 v1 mkdirs ~0.2 ms, the 10 default device rules ~0.2 ms), far less
// than a libuv pool round trip per file, which is what made create slow when these were async.
// A whole container stays well under the ~1 ms event-loop budget.
function write(dir: string, file: string, value: string | number): void {
  try {
    fs.writeFileSync(path.join(dir, file), String(value));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw Object.assign(new Error(`cgroup: write ${String(value).trim()} to ${path.join(dir, file)}: ${e.code ?? e.message}`, { cause: err }), { code: e.code });
  }
}

/** Several writes to one file, each its own write(2) (one devices rule per write). */
function writeEach(dir: string, file: string, values: string[]): void {
  if (values.length === 0) return;
  const p = path.join(dir, file);
  let fd: number;
  try {
    fd = fs.openSync(p, 'w');
  } catch (err) {
    throw new Error(`cgroup: open ${p}: ${(err as NodeJS.ErrnoException).code}`, { cause: err });
  }
  try {
    for (const v of values) {
      try {
        fs.writeSync(fd, v);
      } catch (err) {
        throw new Error(`cgroup: write ${v} to ${p}: ${(err as NodeJS.ErrnoException).code}`, { cause: err });
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

function readText(dir: string, file: string): string | undefined {
  try {
    return fs.readFileSync(path.join(dir, file), 'utf8');
  } catch {
    return undefined;
  }
}

function readNum(dir: string, file: string): number {
  const t = readText(dir, file)?.trim();
  if (t === undefined || t === 'max') return t === 'max' ? -1 : 0;
  return Number(t);
}

function keyed(text: string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k !== undefined && v !== undefined) out.set(k, Number(v));
  }
  return out;
}

/**
 * rmdir of a cgroup, retried while the kernel is still letting go of it: a leaf until its last
 * task has gone (which trails the exit of a killed process a little), an ancestor until a child
 * just removed has gone offline (v1 does that asynchronously, an RCU grace period or so).
 * For an ancestor, stillUsed() says when EBUSY is for good (it stays); a leaf throws after ~1 s.
 */
async function rmdirWhenFree(dir: string, ancestor: boolean): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' && !(ancestor && code === 'ENOTEMPTY')) throw err;
      if (i >= 200 || (ancestor && stillUsed(dir))) {
        if (ancestor) return;
        throw err;
      }
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A child cgroup or a task in it (a vanished dir counts as unused). */
function stillUsed(dir: string): boolean {
  try {
    return fs.readdirSync(dir, { withFileTypes: true }).some((d) => d.isDirectory()) || (readText(dir, 'cgroup.procs') ?? '').trim() !== '';
  } catch {
    return false;
  }
}

const rmdirRetry = (dir: string): Promise<void> => rmdirWhenFree(dir, false);
const rmdirIfEmpty = (dir: string): Promise<void> => rmdirWhenFree(dir, true);

/** Removes, deepest first, the empty ancestors of `cgPath` that are ours, under each root. */
async function removeParents(roots: Iterable<string>, cgPath: string, owned: readonly string[]): Promise<void> {
  const dirs = [...roots];
  for (const rel of removableParents(cgPath, owned)) await Promise.all(dirs.map((r) => rmdirIfEmpty(path.join(r, rel))));
}

/** The ancestors of a cgroup path to try removing, deepest first. */
function removableParents(cgPath: string, owned: readonly string[]): string[] {
  const out = new Set(owned);
  if (cgPath.startsWith(`${RUNTIME_PARENT}/`)) out.add(RUNTIME_PARENT);
  // Deepest first, and only ancestors of this cgroup.
  return [...out].filter((p) => cgPath.startsWith(`${p}/`)).sort((a, b) => b.length - a.length);
}

/**
 * mkdir of `cgPath` under a hierarchy mounted at `mnt`: the leaf first (its parents usually
 * exist), else every missing level from the top, each made level passed to `made`. Retries
 * when a concurrent delete removed an empty parent between two steps.
 */
function mkdirCgroup(mnt: string, cgPath: string, made: (rel: string, dir: string) => void): void {
  const leaf = path.join(mnt, cgPath);
  for (let attempt = 0; ; attempt++) {
    try {
      fs.mkdirSync(leaf);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return;
      if (code !== 'ENOENT' || attempt >= 20) throw err;
    }
    const parts = cgPath.split('/').filter(Boolean);
    for (let i = 1; i < parts.length; i++) {
      const rel = `/${parts.slice(0, i).join('/')}`;
      try {
        fs.mkdirSync(path.join(mnt, rel));
        made(rel, path.join(mnt, rel));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') continue;
        // A concurrent delete removed the level (or its parent) while it was still empty,
        // between our mkdir and its setup (ENODEV: a write to a removed cgroup's open file):
        // start again from the leaf.
        if ((code === 'ENOENT' || code === 'ENODEV') && attempt < 20) break;
        throw err;
      }
    }
  }
}

/**
 * Validates a cgroupsPath (absolute or relative under the runtime's parent, no ..). Without one,
 * the container's cgroup is `<defaultParent>/<id>`: /berth (where a daemon's pool lives) unless
 * the caller says otherwise ('' for runc's and crun's `/<id>`).
 */
export function cgroupPath(cgroupsPath: string | undefined, id: string, systemd: boolean, defaultParent = RUNTIME_PARENT): string {
  if (systemd) throw new ConfigError('--systemd-cgroup', 'the systemd cgroup driver is not supported by berth-runtime (no systemd on this node); use cgroupfs paths');
  const p = cgroupsPath ?? `${defaultParent}/${id}`;
  if (p.includes(':')) throw new ConfigError('linux.cgroupsPath', `'${p}' looks like a systemd slice:prefix:name path; only cgroupfs paths are supported`);
  const norm = path.posix.normalize(p.startsWith('/') ? p : `/berth/${p}`);
  if (norm === '/' || p.split('/').includes('..')) throw new ConfigError('linux.cgroupsPath', `'${p}' must name a cgroup below the root`);
  return norm;
}

const V1_CONTROLLERS = ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'hugetlb', 'net_cls', 'net_prio', 'perf_event', 'rdma'];

let ownMounts: Record<string, string> | undefined;

/** The v1 hierarchies mounted on this machine: controller -> mount point (read once per process). */
export function v1Mounts(mountinfo = '/proc/self/mountinfo'): Record<string, string> {
  if (mountinfo === '/proc/self/mountinfo') {
    ownMounts ??= parseV1Mounts(mountinfo);
    return { ...ownMounts };
  }
  return parseV1Mounts(mountinfo);
}

function parseV1Mounts(mountinfo: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(mountinfo, 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (pre === undefined || post === undefined) continue;
    const [fstype, , opts] = post.split(' ');
    if (fstype !== 'cgroup' || opts === undefined) continue;
    const mountPoint = pre.split(' ')[4]!;
    for (const o of opts.split(',')) if (V1_CONTROLLERS.includes(o)) out[o] = mountPoint;
  }
  return out;
}

export function detectCgroupVersion(root = '/sys/fs/cgroup'): 1 | 2 {
  return fs.existsSync(path.join(root, 'cgroup.controllers')) ? 2 : 1;
}

function parseDeviceRules(res: Resources): string[] {
  return (res.devices ?? []).map((d, i) => {
    const type = d.type ?? 'a';
    if (!['a', 'b', 'c'].includes(type)) throw new ConfigError(`linux.resources.devices[${i}].type`, `expected a, b or c, got '${type}'`);
    const access = d.access ?? 'rwm';
    if (!/^[rwm]{1,3}$/.test(access)) throw new ConfigError(`linux.resources.devices[${i}].access`, `expected letters of rwm, got '${access}'`);
    const num = (n: number | undefined): string => (n === undefined || n < 0 ? '*' : String(n));
    return `${d.allow ? 'allow' : 'deny'} ${type} ${num(d.major)}:${num(d.minor)} ${access}`;
  });
}

/** The devices every container gets (null, zero, full, tty, random, urandom, pts, ptmx). */
const DEFAULT_ALLOWED_DEVICES = ['c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 5:0 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 136:* rwm', 'c 5:2 rwm', 'c 10:200 rwm'];

export class CgroupV1 implements CgroupDriver {
  readonly version = 1;
  readonly paths: Record<string, string> = {};
  readonly created: string[] = [];
  private readonly mounts: Record<string, string>;

  constructor(private readonly cgPath: string, mounts: Record<string, string> = v1Mounts()) {
    this.mounts = mounts;
    for (const [ctl, mnt] of Object.entries(mounts)) this.paths[ctl] = path.join(mnt, cgPath);
  }

  async create(): Promise<void> {
    // One directory per hierarchy; controllers co-mounted (cpu,cpuacct) share one.
    const done = new Set<string>();
    for (const [ctl, mnt] of Object.entries(this.mounts)) {
      if (done.has(mnt)) continue;
      done.add(mnt);
      mkdirCgroup(mnt, this.cgPath, (rel, dir) => {
        if (!this.created.includes(rel)) this.created.push(rel);
        // A v1 cpuset takes no task until cpus and mems are set. Levels we make copy them
        // from their parent, and pass them on to new children by themselves
        // (cgroup.clone_children), so a container's own cpuset needs no writes.
        if (ctl === 'cpuset') {
          this.initCpuset(dir);
          write(dir, 'cgroup.clone_children', 1);
        }
      });
      if (ctl === 'cpuset') this.initCpuset(this.paths[ctl]!);
    }
  }

  /** Copies cpus/mems from the parent where they are empty (not needed under a clone_children parent). */
  private initCpuset(dir: string): void {
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      if ((readText(dir, f) ?? '').trim() !== '') continue;
      const parent = path.dirname(dir);
      if ((readText(parent, f) ?? '').trim() === '') this.initCpuset(parent);
      const v = readText(parent, f);
      if (v === undefined) throw Object.assign(new Error(`cgroup: read ${path.join(parent, f)}: ENOENT`), { code: 'ENOENT' });
      write(dir, f, v.trim());
    }
  }

  procsFiles(): string[] {
    return [...new Set(Object.values(this.paths))].map((d) => path.join(d, 'cgroup.procs'));
  }

  async apply(res: Resources, at = 'linux.resources'): Promise<void> {
    const p = this.paths;
    const need = (ctl: string, field: string): string => {
      const dir = p[ctl];
      if (dir === undefined) throw new ConfigError(`${at}.${field}`, `the ${ctl} cgroup controller is not available on this node`);
      return dir;
    };
    const m = res.memory;
    if (m !== undefined) {
      const dir = need('memory', 'memory');
      if (m.limit !== undefined) {
        // Swap limit >= memory limit: raise memsw first when growing, after when shrinking.
        const memsw = fs.existsSync(path.join(dir, 'memory.memsw.limit_in_bytes'));
        if (m.swap !== undefined && memsw && m.swap !== -1 && m.swap < m.limit) throw new ConfigError(`${at}.memory.swap`, 'must be at least memory.limit (it is memory + swap)');
        if (memsw && m.swap !== undefined) {
          try { write(dir, 'memory.memsw.limit_in_bytes', m.swap); write(dir, 'memory.limit_in_bytes', m.limit); } catch { write(dir, 'memory.limit_in_bytes', m.limit); write(dir, 'memory.memsw.limit_in_bytes', m.swap); }
        } else {
          write(dir, 'memory.limit_in_bytes', m.limit);
        }
      } else if (m.swap !== undefined && fs.existsSync(path.join(dir, 'memory.memsw.limit_in_bytes'))) {
        write(dir, 'memory.memsw.limit_in_bytes', m.swap);
      }
      if (m.reservation !== undefined) write(dir, 'memory.soft_limit_in_bytes', m.reservation);
      if (m.swappiness !== undefined) {
        if (m.swappiness > 100) throw new ConfigError(`${at}.memory.swappiness`, `must be 0..100, got ${m.swappiness}`);
        write(dir, 'memory.swappiness', m.swappiness);
      }
      if (m.disableOOMKiller === true) write(dir, 'memory.oom_control', 1);
    }
    const c = res.cpu;
    if (c !== undefined) {
      if (c.shares !== undefined) write(need('cpu', 'cpu.shares'), 'cpu.shares', c.shares);
      if (c.period !== undefined) write(need('cpu', 'cpu.period'), 'cpu.cfs_period_us', c.period);
      if (c.quota !== undefined) write(need('cpu', 'cpu.quota'), 'cpu.cfs_quota_us', c.quota);
      if (c.burst !== undefined) {
        const dir = need('cpu', 'cpu.burst');
        if (!fs.existsSync(path.join(dir, 'cpu.cfs_burst_us'))) throw new ConfigError(`${at}.cpu.burst`, 'this kernel has no cpu.cfs_burst_us');
        write(dir, 'cpu.cfs_burst_us', c.burst);
      }
      if (c.idle !== undefined) {
        const dir = need('cpu', 'cpu.idle');
        if (!fs.existsSync(path.join(dir, 'cpu.idle'))) throw new ConfigError(`${at}.cpu.idle`, 'this kernel has no cpu.idle');
        write(dir, 'cpu.idle', c.idle);
      }
      if (c.realtimePeriod !== undefined) write(need('cpu', 'cpu.realtimePeriod'), 'cpu.rt_period_us', c.realtimePeriod);
      if (c.realtimeRuntime !== undefined) write(need('cpu', 'cpu.realtimeRuntime'), 'cpu.rt_runtime_us', c.realtimeRuntime);
      if (c.cpus !== undefined) write(need('cpuset', 'cpu.cpus'), 'cpuset.cpus', c.cpus);
      if (c.mems !== undefined) write(need('cpuset', 'cpu.mems'), 'cpuset.mems', c.mems);
    }
    if (res.pids !== undefined) write(need('pids', 'pids'), 'pids.max', res.pids.limit <= 0 ? 'max' : res.pids.limit);
    const b = res.blockIO;
    if (b !== undefined) {
      const dir = need('blkio', 'blockIO');
      const weightFile = fs.existsSync(path.join(dir, 'blkio.weight')) ? 'blkio.weight' : 'blkio.bfq.weight';
      if (b.weight !== undefined) write(dir, weightFile, b.weight);
      for (const d of b.weightDevice ?? []) if (d.weight !== undefined) write(dir, weightFile + '_device', `${d.major}:${d.minor} ${d.weight}`);
      const throttles = [['throttleReadBpsDevice', 'blkio.throttle.read_bps_device'], ['throttleWriteBpsDevice', 'blkio.throttle.write_bps_device'], ['throttleReadIOPSDevice', 'blkio.throttle.read_iops_device'], ['throttleWriteIOPSDevice', 'blkio.throttle.write_iops_device']] as const;
      for (const [key, file] of throttles) for (const d of b[key] ?? []) write(dir, file, `${d.major}:${d.minor} ${d.rate}`);
    }
    for (const [i, h] of (res.hugepageLimits ?? []).entries()) {
      write(need('hugetlb', `hugepageLimits[${i}]`), `hugetlb.${h.pageSize}.limit_in_bytes`, h.limit);
    }
    if (res.network?.classID !== undefined) write(need('net_cls', 'network.classID'), 'net_cls.classid', res.network.classID);
    for (const p of res.network?.priorities ?? []) write(need('net_prio', 'network.priorities'), 'net_prio.ifpriomap', `${p.name} ${p.priority}`);
    for (const [dev, lim] of Object.entries(res.rdma ?? {})) {
      const kv = [lim.hcaHandles !== undefined ? `hca_handle=${lim.hcaHandles}` : '', lim.hcaObjects !== undefined ? `hca_object=${lim.hcaObjects}` : ''].filter(Boolean).join(' ');
      write(need('rdma', `rdma.${dev}`), 'rdma.max', `${dev} ${kv}`);
    }
    if (res.devices !== undefined && p['devices'] !== undefined) {
      const dir = p['devices'];
      // In order (a later rule overrides an earlier one), batching runs of the same verb.
      const rules = [...parseDeviceRules(res), ...DEFAULT_ALLOWED_DEVICES.map((d) => `allow ${d}`)];
      for (let i = 0; i < rules.length;) {
        const verb = rules[i]!.split(' ')[0]!;
        let j = i;
        while (j < rules.length && rules[j]!.startsWith(`${verb} `)) j++;
        writeEach(dir, verb === 'allow' ? 'devices.allow' : 'devices.deny', rules.slice(i, j).map((r) => r.slice(verb.length + 1)));
        i = j;
      }
    }
    if (res.unified !== undefined && Object.keys(res.unified).length > 0) throw new ConfigError(`${at}.unified`, 'needs cgroup v2; this node uses cgroup v1 controllers');
  }

  stats(): CgroupStats {
    const p = this.paths;
    const acct = p['cpuacct'];
    const cpuStat = keyed(p['cpu'] !== undefined ? readText(p['cpu'], 'cpu.stat') : undefined);
    const acctStat = keyed(acct !== undefined ? readText(acct, 'cpuacct.stat') : undefined);
    const tick = 1e7; // USER_HZ 100 -> ns
    const mem = p['memory'];
    const oom = keyed(mem !== undefined ? readText(mem, 'memory.oom_control') : undefined);
    return {
      cpu: {
        usageNs: acct !== undefined ? readNum(acct, 'cpuacct.usage') : 0,
        userNs: (acctStat.get('user') ?? 0) * tick,
        systemNs: (acctStat.get('system') ?? 0) * tick,
        periods: cpuStat.get('nr_periods') ?? 0,
        throttledPeriods: cpuStat.get('nr_throttled') ?? 0,
        throttledNs: cpuStat.get('throttled_time') ?? 0,
      },
      memory: {
        usage: mem !== undefined ? readNum(mem, 'memory.usage_in_bytes') : 0,
        maxUsage: mem !== undefined ? readNum(mem, 'memory.max_usage_in_bytes') : 0,
        limit: mem !== undefined ? readNum(mem, 'memory.limit_in_bytes') : 0,
        oomKills: oom.get('oom_kill') ?? 0,
        oomEvents: mem !== undefined ? readNum(mem, 'memory.failcnt') : 0,
      },
      pids: { current: p['pids'] !== undefined ? readNum(p['pids'], 'pids.current') : 0, limit: p['pids'] !== undefined ? readNum(p['pids'], 'pids.max') : 0 },
    };
  }

  async freeze(): Promise<void> {
    const dir = this.paths['freezer'];
    if (dir === undefined) throw new Error('cgroup: the freezer controller is not available on this node');
    write(dir, 'freezer.state', 'FROZEN');
    // FREEZING until every task has stopped.
    for (let i = 0; i < 400 && (readText(dir, 'freezer.state') ?? '').trim() !== 'FROZEN'; i++) await new Promise((r) => setTimeout(r, 5));
  }

  thaw(): void {
    const dir = this.paths['freezer'];
    if (dir !== undefined) fs.writeFileSync(path.join(dir, 'freezer.state'), 'THAWED');
  }

  frozen(): boolean {
    const dir = this.paths['freezer'];
    return dir !== undefined && (readText(dir, 'freezer.state') ?? '').trim() === 'FROZEN';
  }

  pids(): number[] {
    const dir = this.paths['pids'] ?? this.paths['memory'] ?? Object.values(this.paths)[0];
    if (dir === undefined) return [];
    return (readText(dir, 'cgroup.procs') ?? '').split('\n').filter((l) => l !== '').map(Number);
  }

  async destroy(ownedParents: string[] = this.created): Promise<void> {
    await this.destroyLeaf();
    await this.removeParents(ownedParents);
  }

  async destroyLeaf(): Promise<void> {
    await Promise.all([...new Set(Object.values(this.paths))].map((dir) => rmdirRetry(dir)));
  }

  async removeParents(ownedParents: string[]): Promise<void> {
    await removeParents(new Set(Object.values(this.mounts)), this.cgPath, ownedParents);
  }

  oomKills(): number {
    const mem = this.paths['memory'];
    return mem === undefined ? 0 : keyed(readText(mem, 'memory.oom_control')).get('oom_kill') ?? 0;
  }}

/** cpu.shares (v1, 2..262144) -> cpu.weight (v2, 1..10000), the conversion runc and crun use. */
export function sharesToWeight(shares: number): number {
  return shares === 0 ? 0 : 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

export class CgroupV2 implements CgroupDriver {
  readonly version = 2;
  readonly paths: Record<string, string>;
  readonly created: string[] = [];
  private readonly dir: string;

  constructor(private readonly cgPath: string, private readonly root = '/sys/fs/cgroup') {
    this.dir = path.join(root, cgPath);
    this.paths = { '': this.dir };
  }

  async create(): Promise<void> {
    mkdirCgroup(this.root, this.cgPath, (rel) => {
      if (!this.created.includes(rel)) this.created.push(rel);
    });
    // Enable every available controller on the way down (not in the leaf: no internal processes).
    const available = (readText(this.root, 'cgroup.controllers') ?? '').trim().split(/\s+/).filter(Boolean);
    let level = this.root;
    const parts = path.relative(this.root, this.dir).split('/');
    for (const part of parts) {
      if (available.length > 0 && fs.existsSync(path.join(level, 'cgroup.subtree_control'))) {
        try { write(level, 'cgroup.subtree_control', available.map((c) => `+${c}`).join(' ')); } catch { /* controllers held by a sibling's processes */ }
      }
      level = path.join(level, part);
    }
  }


  procsFiles(): string[] {
    return [path.join(this.dir, 'cgroup.procs')];
  }

  async apply(res: Resources, at = 'linux.resources'): Promise<void> {
    const d = this.dir;
    const m = res.memory;
    if (m !== undefined) {
      if (m.limit !== undefined) write(d, 'memory.max', m.limit === -1 ? 'max' : m.limit);
      if (m.reservation !== undefined) write(d, 'memory.low', m.reservation === -1 ? 'max' : m.reservation);
      if (m.swap !== undefined) {
        // OCI swap is memory+swap (v1 semantics); v2's memory.swap.max is swap alone.
        const swap = m.swap === -1 ? 'max' : m.limit !== undefined && m.limit !== -1 ? m.swap - m.limit : undefined;
        if (swap === undefined) throw new ConfigError(`${at}.memory.swap`, 'needs memory.limit on cgroup v2');
        if (typeof swap === 'number' && swap < 0) throw new ConfigError(`${at}.memory.swap`, 'must be at least memory.limit (it is memory + swap)');
        write(d, 'memory.swap.max', swap);
      }
      if (m.swappiness !== undefined) throw new ConfigError(`${at}.memory.swappiness`, 'cgroup v2 has no per-cgroup swappiness');
      if (m.disableOOMKiller === true) throw new ConfigError(`${at}.memory.disableOOMKiller`, 'cgroup v2 cannot disable the OOM killer');
    }
    const c = res.cpu;
    if (c !== undefined) {
      if (c.shares !== undefined) write(d, 'cpu.weight', sharesToWeight(c.shares));
      if (c.quota !== undefined || c.period !== undefined) {
        const quota = c.quota === undefined || c.quota <= 0 ? 'max' : String(c.quota);
        write(d, 'cpu.max', `${quota} ${c.period ?? 100000}`);
      }
      if (c.burst !== undefined) write(d, 'cpu.max.burst', c.burst);
      if (c.idle !== undefined) write(d, 'cpu.idle', c.idle);
      if (c.cpus !== undefined) write(d, 'cpuset.cpus', c.cpus);
      if (c.mems !== undefined) write(d, 'cpuset.mems', c.mems);
      if (c.realtimeRuntime !== undefined || c.realtimePeriod !== undefined) throw new ConfigError(`${at}.cpu.realtimeRuntime`, 'cgroup v2 has no realtime cpu controller');
    }
    if (res.pids !== undefined) write(d, 'pids.max', res.pids.limit <= 0 ? 'max' : res.pids.limit);
    const b = res.blockIO;
    if (b !== undefined) {
      // blkio weight 10..1000 -> io.weight 1..10000.
      if (b.weight !== undefined) write(d, 'io.weight', `default ${1 + Math.floor(((b.weight - 10) * 9999) / 990)}`);
      const lines = new Map<string, string[]>();
      const add = (dev: { major: number; minor: number }, kv: string): void => {
        const k = `${dev.major}:${dev.minor}`;
        lines.set(k, [...(lines.get(k) ?? []), kv]);
      };
      for (const x of b.throttleReadBpsDevice ?? []) add(x, `rbps=${x.rate}`);
      for (const x of b.throttleWriteBpsDevice ?? []) add(x, `wbps=${x.rate}`);
      for (const x of b.throttleReadIOPSDevice ?? []) add(x, `riops=${x.rate}`);
      for (const x of b.throttleWriteIOPSDevice ?? []) add(x, `wiops=${x.rate}`);
      for (const [dev, kvs] of lines) write(d, 'io.max', `${dev} ${kvs.join(' ')}`);
    }
    for (const h of res.hugepageLimits ?? []) write(d, `hugetlb.${h.pageSize}.max`, h.limit);
    for (const [dev, lim] of Object.entries(res.rdma ?? {})) {
      const kv = [lim.hcaHandles !== undefined ? `hca_handle=${lim.hcaHandles}` : '', lim.hcaObjects !== undefined ? `hca_object=${lim.hcaObjects}` : ''].filter(Boolean).join(' ');
      write(d, 'rdma.max', `${dev} ${kv}`);
    }
    if (res.network !== undefined && (res.network.classID !== undefined || (res.network.priorities ?? []).length > 0)) {
      throw new ConfigError(`${at}.network`, 'cgroup v2 has no net_cls/net_prio controllers');
    }
    for (const [k, v] of Object.entries(res.unified ?? {})) {
      if (k.includes('/') || k.startsWith('.') || k === 'cgroup.procs' || k === 'cgroup.threads') throw new ConfigError(`${at}.unified.${k}`, 'not a settable cgroup file');
      write(d, k, v);
    }
    // devices: cgroup v2 needs an eBPF program; nothing else to write (see the report).
    if (res.devices !== undefined) parseDeviceRules(res);
  }

  stats(): CgroupStats {
    const d = this.dir;
    const cpu = keyed(readText(d, 'cpu.stat'));
    const ev = keyed(readText(d, 'memory.events'));
    return {
      cpu: {
        usageNs: (cpu.get('usage_usec') ?? 0) * 1000,
        userNs: (cpu.get('user_usec') ?? 0) * 1000,
        systemNs: (cpu.get('system_usec') ?? 0) * 1000,
        periods: cpu.get('nr_periods') ?? 0,
        throttledPeriods: cpu.get('nr_throttled') ?? 0,
        throttledNs: (cpu.get('throttled_usec') ?? 0) * 1000,
      },
      memory: { usage: readNum(d, 'memory.current'), maxUsage: readNum(d, 'memory.peak'), limit: readNum(d, 'memory.max'), oomKills: ev.get('oom_kill') ?? 0, oomEvents: ev.get('oom') ?? 0 },
      pids: { current: readNum(d, 'pids.current'), limit: readNum(d, 'pids.max') },
    };
  }

  async freeze(): Promise<void> {
    write(this.dir, 'cgroup.freeze', 1);
    for (let i = 0; i < 400 && keyed(readText(this.dir, 'cgroup.events')).get('frozen') !== 1 && readText(this.dir, 'cgroup.events') !== undefined; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  thaw(): void {
    fs.writeFileSync(path.join(this.dir, 'cgroup.freeze'), '0');
  }

  frozen(): boolean {
    return (readText(this.dir, 'cgroup.freeze') ?? '0').trim() === '1';
  }

  pids(): number[] {
    return (readText(this.dir, 'cgroup.procs') ?? '').split('\n').filter((l) => l !== '').map(Number);
  }

  async destroy(ownedParents: string[] = this.created): Promise<void> {
    await this.destroyLeaf();
    await this.removeParents(ownedParents);
  }

  async destroyLeaf(): Promise<void> {
    await rmdirRetry(this.dir);
  }

  async removeParents(ownedParents: string[]): Promise<void> {
    await removeParents([this.root], this.cgPath, ownedParents);
  }

  oomKills(): number {
    return keyed(readText(this.dir, 'memory.events')).get('oom_kill') ?? 0;
  }
}

/** The driver for this node: v2 if the root is a unified hierarchy, else v1. */
export function cgroupDriver(cgPath: string, root = '/sys/fs/cgroup'): CgroupDriver {
  return detectCgroupVersion(root) === 2 ? new CgroupV2(cgPath, root) : new CgroupV1(cgPath);
}
