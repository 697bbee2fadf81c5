// config.json -> the addon's ContainerPlan: every policy decision of the container init path
// (which mounts, in what order, which devices, which capabilities...) is made here, in TS.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { CLONE_FLAGS, MOUNT_FLAGS, type ContainerPlan, type RootfsOp } from '@berth/native';

import { ConfigError, type Mount, type Seccomp, type Spec } from './config';
import { compileSeccomp } from './seccomp';

export const CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK',
  'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE',
  'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

export const RLIMITS: Readonly<Record<string, number>> = {
  RLIMIT_CPU: 0, RLIMIT_FSIZE: 1, RLIMIT_DATA: 2, RLIMIT_STACK: 3, RLIMIT_CORE: 4, RLIMIT_RSS: 5, RLIMIT_NPROC: 6,
  RLIMIT_NOFILE: 7, RLIMIT_MEMLOCK: 8, RLIMIT_AS: 9, RLIMIT_LOCKS: 10, RLIMIT_SIGPENDING: 11, RLIMIT_MSGQUEUE: 12,
  RLIMIT_NICE: 13, RLIMIT_RTPRIO: 14, RLIMIT_RTTIME: 15,
};

const NS_FLAG: Readonly<Record<string, number>> = {
  pid: CLONE_FLAGS.pid, network: CLONE_FLAGS.net, mount: CLONE_FLAGS.mount, ipc: CLONE_FLAGS.ipc,
  uts: CLONE_FLAGS.uts, user: CLONE_FLAGS.user, cgroup: CLONE_FLAGS.cgroup, time: CLONE_FLAGS.time,
};
const NS_PROC: Readonly<Record<string, string>> = { pid: 'pid', network: 'net', mount: 'mnt', ipc: 'ipc', uts: 'uts', user: 'user', cgroup: 'cgroup', time: 'time' };

/** mount(8)-style options -> [flags to set, flags to clear, propagation flags, fs data]. */
const SET: Record<string, number> = {
  ro: MOUNT_FLAGS.rdonly, nosuid: MOUNT_FLAGS.nosuid, nodev: MOUNT_FLAGS.nodev, noexec: MOUNT_FLAGS.noexec,
  sync: MOUNT_FLAGS.synchronous, dirsync: MOUNT_FLAGS.dirsync, mand: MOUNT_FLAGS.mandlock, noatime: MOUNT_FLAGS.noatime,
  nodiratime: MOUNT_FLAGS.nodiratime, relatime: MOUNT_FLAGS.relatime, strictatime: MOUNT_FLAGS.strictatime,
  bind: MOUNT_FLAGS.bind, rbind: MOUNT_FLAGS.rbind, remount: MOUNT_FLAGS.remount, nosymfollow: MOUNT_FLAGS.nosymfollow,
  lazytime: MOUNT_FLAGS.lazytime, silent: MOUNT_FLAGS.silent, iversion: MOUNT_FLAGS.iversion,
};
const CLEAR = new Set(['rw', 'suid', 'dev', 'exec', 'async', 'nomand', 'atime', 'diratime', 'norelatime', 'nostrictatime', 'symfollow', 'defaults', 'loud', 'noiversion', 'nolazytime']);
const PROPAGATION: Record<string, number> = {
  private: MOUNT_FLAGS.private, rprivate: MOUNT_FLAGS.rprivate, shared: MOUNT_FLAGS.shared, rshared: MOUNT_FLAGS.rshared,
  slave: MOUNT_FLAGS.slave, rslave: MOUNT_FLAGS.rslave, unbindable: MOUNT_FLAGS.unbindable, runbindable: MOUNT_FLAGS.runbindable,
};

export function parseMountOptions(options: readonly string[]): { flags: number; propagation: number; data: string[] } {
  let flags = 0;
  let propagation = 0;
  const data: string[] = [];
  for (const o of options) {
    if (SET[o] !== undefined) flags |= SET[o];
    else if (CLEAR.has(o)) continue;
    else if (PROPAGATION[o] !== undefined) propagation |= PROPAGATION[o];
    else if (o === 'tmpcopyup' || o === 'idmap' || o === 'ridmap') continue;
    else data.push(o);
  }
  return { flags, propagation, data };
}

/** A path inside the rootfs, relative ('proc/sys'), from an absolute container path. */
function inRoot(p: string): string {
  const rel = path.posix.normalize(p).replace(/^\/+/, '');
  return rel === '' ? '.' : rel;
}

const DEFAULT_DEVICES: Array<{ path: string; major: number; minor: number }> = [
  { path: '/dev/null', major: 1, minor: 3 }, { path: '/dev/zero', major: 1, minor: 5 }, { path: '/dev/full', major: 1, minor: 7 },
  { path: '/dev/random', major: 1, minor: 8 }, { path: '/dev/urandom', major: 1, minor: 9 }, { path: '/dev/tty', major: 5, minor: 0 },
];

export interface PlanInputs {
  spec: Spec;
  bundle: string;
  /** cgroup.procs files of the container's cgroups (opened here; closed by closePlanFds). */
  cgroupProcs: string[];
  /** Host dirs of the container's v1 cgroups, keyed by controller, for the /sys/fs/cgroup mount. */
  cgroupDirs: Record<string, string>;
  /**
   * The controllers of a /sys/fs/cgroup the spawner has built ahead from these same dirs: the
   * plan attaches it ('cgroupTree' op) instead of mounting it, where they match cgroupDirs.
   */
  cgroupTree?: string[];
  fifo: string | null;
  noPivot?: boolean;
  preserveFds?: number;
  stdio?: [number, number, number];
  /** Where the pty master goes when process.terminal is set (--console-socket). */
  consoleSocket?: string;
  /** Or a connected unix socket fd to send it on (`run` attaching its own stdio). */
  consoleFd?: number;
  /** --no-new-keyring: keep the runtime's session keyring. */
  noNewKeyring?: boolean;
}

/** The plan and the fds opened for it (close them once the container holds or failed). */
export interface CompiledPlan {
  plan: ContainerPlan;
  fds: number[];
  rootfs: string;
}

const O_PATH = 0o10000000;

function capMask(names: readonly string[] | undefined, field: string): bigint {
  let mask = 0n;
  for (const [i, n] of (names ?? []).entries()) {
    const bit = CAPABILITIES.indexOf(n);
    if (bit < 0) throw new ConfigError(`${field}[${i}]`, `unknown capability '${n}'`);
    mask |= 1n << BigInt(bit);
  }
  return mask;
}

let lastCap: number | undefined;
function capLast(): number {
  lastCap ??= Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
  return lastCap;
}

export function executableCandidates(arg0: string, env: readonly string[]): string[] {
  if (arg0.includes('/')) return [arg0.startsWith('/') ? arg0 : path.posix.join('/', arg0)];
  const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
  return pathVar.split(':').filter((d) => d.startsWith('/')).map((d) => path.posix.join(d, arg0));
}

function mountOps(m: Mount, i: number, bundle: string, cgroupDirs: Record<string, string>, cgroupTree?: string[]): RootfsOp[] {
  const type = m.type ?? '';
  const opts = parseMountOptions(m.options ?? []);
  const target = inRoot(m.destination);
  const isBind = (opts.flags & MOUNT_FLAGS.bind) !== 0 || type === 'bind';
  const ops: RootfsOp[] = [];
  if (type === 'cgroup') {
    // A read-only tmpfs with the container's own v1 cgroup directories bound in, never the
    // host's whole tree (the same view a cgroup namespace gives, with or without one).
    ops.push({ kind: 'mount', source: 'tmpfs', target, fstype: 'tmpfs', flags: MOUNT_FLAGS.nosuid | MOUNT_FLAGS.nodev | MOUNT_FLAGS.noexec, data: 'mode=755', mkdir: 'dir' });
    for (const [ctl, dir] of Object.entries(cgroupDirs)) {
      const sub = `${target}/${ctl}`;
      ops.push({ kind: 'mount', source: dir, target: sub, fstype: null, flags: MOUNT_FLAGS.bind, data: null, mkdir: 'dir' });
      ops.push({ kind: 'remount', target: sub, flags: MOUNT_FLAGS.bind | MOUNT_FLAGS.rdonly | MOUNT_FLAGS.nosuid | MOUNT_FLAGS.nodev | MOUNT_FLAGS.noexec });
    }
    // The same tmpfs and binds, built ahead by the spawner: attached in one step, these ops
    // skipped (they run if the spawner could not build it).
    const names = Object.keys(cgroupDirs);
    if (cgroupTree !== undefined && names.length > 0 && cgroupTree.length === names.length && cgroupTree.every((n, k) => n === names[k])) {
      ops.unshift({ kind: 'cgroupTree', target, skip: ops.length });
    }
    if ((opts.flags & MOUNT_FLAGS.rdonly) !== 0) ops.push({ kind: 'remount', target, flags: MOUNT_FLAGS.rdonly | MOUNT_FLAGS.nosuid | MOUNT_FLAGS.nodev | MOUNT_FLAGS.noexec });
    return ops;
  }
  if (isBind) {
    if (m.source === undefined) throw new ConfigError(`mounts[${i}].source`, 'a bind mount needs a source');
    const source = path.resolve(bundle, m.source);
    let st: fs.Stats;
    try {
      st = fs.statSync(source);
    } catch {
      throw new ConfigError(`mounts[${i}].source`, `bind source '${source}' does not exist`);
    }
    const bindFlags = MOUNT_FLAGS.bind | (opts.flags & MOUNT_FLAGS.rec);
    ops.push({ kind: 'mount', source, target, fstype: null, flags: bindFlags, data: null, mkdir: st.isDirectory() ? 'dir' : 'file' });
    const rest = opts.flags & ~(MOUNT_FLAGS.bind | MOUNT_FLAGS.rec | MOUNT_FLAGS.remount);
    if (rest !== 0) ops.push({ kind: 'remount', target, flags: MOUNT_FLAGS.bind | rest });
  } else {
    if (type === '') throw new ConfigError(`mounts[${i}].type`, 'required for a non-bind mount');
    const data = opts.data.join(',');
    ops.push({ kind: 'mount', source: m.source ?? type, target, fstype: type, flags: opts.flags, data: data === '' ? null : data, mkdir: 'dir' });
  }
  if (opts.propagation !== 0) ops.push({ kind: 'propagate', target, flags: opts.propagation });
  return ops;
}

/**
 * A namespace file bind-mounted elsewhere (a pod sandbox's pin, `ip netns` files) reads back
 * as its mount path, not "net:[...]": it is a namespace if it lives on nsfs (the device of our
 * own namespace files). The kernel's setns(fd, nstype) then checks the kind.
 */
function isBindMountedNs(fd: number, type: string): boolean {
  try {
    return fs.fstatSync(fd).dev === fs.statSync(`/proc/self/ns/${NS_PROC[type]}`).dev;
  } catch {
    return false;
  }
}

/** Filters compiled so far, by profile (a daemon runs many containers with the same few). */
const seccompCache = new Map<string, ReturnType<typeof compileSeccomp>>();

/** The BPF of a seccomp profile, compiled once per distinct profile. */
function compiledSeccomp(profile: Seccomp): ReturnType<typeof compileSeccomp> {
  const key = JSON.stringify(profile);
  let out = seccompCache.get(key);
  if (out === undefined) {
    out = compileSeccomp(profile);
    if (seccompCache.size >= 32) seccompCache.delete(seccompCache.keys().next().value!);
    seccompCache.set(key, out);
  }
  return out;
}

/** Compiles a validated spec into the addon's plan. Opens fds (namespaces, fifo, cgroups, /dev/null). */
export function compilePlan(inp: PlanInputs): CompiledPlan {
  const { spec, bundle } = inp;
  const proc = spec.process;
  if (proc === undefined) throw new ConfigError('process', 'required field is missing');
  if (spec.root === undefined) throw new ConfigError('root', 'required field is missing');
  const rootfs = path.resolve(bundle, spec.root.path);
  if (!fs.existsSync(rootfs) || !fs.statSync(rootfs).isDirectory()) throw new ConfigError('root.path', `rootfs '${rootfs}' does not exist or is not a directory`);
  const fds: number[] = [];
  const open = (p: string, flags: number, field: string): number => {
    try {
      const fd = fs.openSync(p, flags);
      fds.push(fd);
      return fd;
    } catch (err) {
      throw new ConfigError(field, `cannot open '${p}': ${(err as NodeJS.ErrnoException).code}`);
    }
  };
  try {
    const linux = spec.linux ?? {};
    let cloneFlags = 0;
    let newTime = false;
    const join: Array<{ fd: number; nstype: number }> = [];
    let joinPidFd: number | undefined;
    const nss = [...(linux.namespaces ?? [])].sort((a, b) => (a.type === 'user' ? -1 : b.type === 'user' ? 1 : 0));
    for (const ns of nss) {
      const field = `linux.namespaces[${(linux.namespaces ?? []).indexOf(ns)}]`;
      if (ns.type === 'cgroup' && !fs.existsSync('/proc/self/ns/cgroup')) throw new ConfigError(field, 'this kernel has no cgroup namespace');
      if (ns.type === 'time' && !fs.existsSync('/proc/self/ns/time')) throw new ConfigError(field, 'this kernel has no time namespace');
      if (ns.path === undefined) {
        if (ns.type === 'time') newTime = true;
        else cloneFlags |= NS_FLAG[ns.type]!;
        continue;
      }
      const fd = open(ns.path, fs.constants.O_RDONLY, `${field}.path`);
      // The file must really be a namespace of that type: compare with our own of the kind.
      const real = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (!real.startsWith(`${NS_PROC[ns.type]}:[`) && !isBindMountedNs(fd, ns.type)) throw new ConfigError(`${field}.path`, `'${ns.path}' is not a ${ns.type} namespace (${real})`);
      if (ns.type === 'pid') joinPidFd = fd;
      else join.push({ fd, nstype: NS_FLAG[ns.type]! });
    }
    const hasMountNs = (cloneFlags & CLONE_FLAGS.mount) !== 0 || join.some((j) => j.nstype === CLONE_FLAGS.mount);
    if (!hasMountNs) throw new ConfigError('linux.namespaces', 'a mount namespace is required (berth-runtime sets up the rootfs in one)');
    const utsNew = (cloneFlags & CLONE_FLAGS.uts) !== 0;
    if (spec.hostname !== undefined && spec.hostname !== '' && !utsNew) throw new ConfigError('hostname', 'setting the hostname needs a new uts namespace');
    if (spec.domainname !== undefined && spec.domainname !== '' && !utsNew) throw new ConfigError('domainname', 'setting the domainname needs a new uts namespace');
    const userns = (cloneFlags & CLONE_FLAGS.user) !== 0;
    const idMap = (maps: typeof linux.uidMappings): string => (maps ?? []).map((m) => `${m.containerID} ${m.hostID} ${m.size}\n`).join('');

    let timeOffsets = '';
    for (const [clock, off] of Object.entries(linux.timeOffsets ?? {})) timeOffsets += `${clock} ${off.secs ?? 0} ${off.nanosecs ?? 0}\n`;
    if (timeOffsets !== '' && !newTime) throw new ConfigError('linux.timeOffsets', 'needs a new time namespace');

    const ops: RootfsOp[] = [];
    const mounts = spec.mounts ?? [];
    for (const [i, m] of mounts.entries()) ops.push(...mountOps(m, i, bundle, inp.cgroupDirs, inp.cgroupTree));
    const devTmpfs = mounts.some((m) => path.posix.normalize(m.destination) === '/dev');
    const devices = [...(devTmpfs ? DEFAULT_DEVICES.map((d) => ({ ...d, type: 'c', fileMode: 0o666 })) : [])];
    for (const [i, d] of (linux.devices ?? []).entries()) {
      if (!['c', 'b', 'u', 'p'].includes(d.type)) throw new ConfigError(`linux.devices[${i}].type`, `expected c, b, u or p, got '${d.type}'`);
      if (!d.path.startsWith('/dev/')) throw new ConfigError(`linux.devices[${i}].path`, `must be under /dev, got '${d.path}'`);
      devices.push({ path: d.path, major: d.major ?? 0, minor: d.minor ?? 0, type: d.type, fileMode: d.fileMode ?? 0o666 });
    }
    for (const d of devices) {
      const target = inRoot(d.path);
      if (userns) {
        // mknod is not allowed in a user namespace: bind the host's node instead.
        ops.push({ kind: 'mount', source: d.path, target, fstype: null, flags: MOUNT_FLAGS.bind, data: null, mkdir: 'file' });
      } else {
        const typeBits = d.type === 'b' ? 0o060000 : d.type === 'p' ? 0o010000 : 0o020000;
        ops.push({ kind: 'mknod', target, mode: typeBits | (d.fileMode & 0o7777), major: d.major, minor: d.minor });
      }
    }
    if (devTmpfs) {
      for (const [link, to] of [['dev/fd', '/proc/self/fd'], ['dev/stdin', '/proc/self/fd/0'], ['dev/stdout', '/proc/self/fd/1'], ['dev/stderr', '/proc/self/fd/2'], ['dev/core', '/proc/kcore']] as const) {
        ops.push({ kind: 'symlink', source: to, target: link });
      }
      if (mounts.some((m) => path.posix.normalize(m.destination) === '/dev/pts')) ops.push({ kind: 'symlink', source: 'pts/ptmx', target: 'dev/ptmx' });
    }
    // The cwd exists (runc creates it too); before masks and read-only paths, as are sysctls
    // (written into the container's procfs before /proc/sys turns read-only).
    if (proc.cwd !== '/') ops.push({ kind: 'mkdir', target: inRoot(proc.cwd) });
    const sysctls = Object.entries(linux.sysctl ?? {}).map(([k, value]) => {
      if (!/^[a-z0-9_][a-z0-9_.\-/]*$/i.test(k) || k.includes('..')) throw new ConfigError(`linux.sysctl.${k}`, 'not a sysctl name');
      if (k.startsWith('net.') && (cloneFlags & CLONE_FLAGS.net) === 0) throw new ConfigError(`linux.sysctl.${k}`, 'needs a new network namespace');
      if ((k.startsWith('kernel.shm') || k.startsWith('kernel.msg') || k === 'kernel.sem' || k.startsWith('fs.mqueue.')) && (cloneFlags & CLONE_FLAGS.ipc) === 0) {
        throw new ConfigError(`linux.sysctl.${k}`, 'needs a new ipc namespace');
      }
      return { kind: 'sysctl' as const, target: k.replace(/\./g, '/'), source: value };
    });
    ops.push(...sysctls);
    for (const p of linux.maskedPaths ?? []) ops.push({ kind: 'mask', target: inRoot(p) });
    for (const p of linux.readonlyPaths ?? []) ops.push({ kind: 'readonly', target: inRoot(p) });

    const rlimits = (proc.rlimits ?? []).map((r, i) => {
      const resource = RLIMITS[r.type];
      if (resource === undefined) throw new ConfigError(`process.rlimits[${i}].type`, `unknown rlimit '${r.type}'`);
      if (r.soft > r.hard) throw new ConfigError(`process.rlimits[${i}].soft`, `soft limit ${r.soft} is above the hard limit ${r.hard}`);
      return { resource, soft: BigInt(r.soft), hard: BigInt(r.hard) };
    });

    const caps = proc.capabilities;
    const env = proc.env ?? [];
    const args = proc.args!;
    let seccomp: Buffer | null = null;
    let seccompFlags = 0;
    if (linux.seccomp !== undefined) ({ filter: seccomp, flags: seccompFlags } = compiledSeccomp(linux.seccomp));

    const prop = linux.rootfsPropagation;
    const rootPropagation = prop !== undefined && prop !== '' ? PROPAGATION[prop]! & ~MOUNT_FLAGS.rec : MOUNT_FLAGS.slave;
    const u = proc.user;
    const plan: ContainerPlan = {
      cloneFlags,
      newTime,
      timeOffsets,
      join,
      joinPidFd,
      uidMap: userns ? idMap(linux.uidMappings) : '',
      gidMap: userns ? idMap(linux.gidMappings) : '',
      cgroupProcsFds: inp.cgroupProcs.map((f) => open(f, fs.constants.O_WRONLY, 'linux.cgroupsPath')),
      oomScoreAdj: proc.oomScoreAdj ?? null,
      rootfs,
      rootPropagation,
      rootReadonly: spec.root.readonly === true,
      noPivot: inp.noPivot === true,
      ops,
      hostname: spec.hostname !== undefined && spec.hostname !== '' ? spec.hostname : null,
      domainname: spec.domainname !== undefined && spec.domainname !== '' ? spec.domainname : null,
      rlimits,
      user: { uid: u.uid, gid: u.gid, groups: u.additionalGids ?? [] },
      umask: u.umask ?? 0o022,
      caps: {
        lastCap: capLast(),
        bounding: capMask(caps?.bounding, 'process.capabilities.bounding'),
        effective: capMask(caps?.effective, 'process.capabilities.effective'),
        permitted: capMask(caps?.permitted, 'process.capabilities.permitted'),
        inheritable: capMask(caps?.inheritable, 'process.capabilities.inheritable'),
        // The kernel raises an ambient capability only if it is permitted and inheritable.
        ambient: capMask(caps?.ambient, 'process.capabilities.ambient') & capMask(caps?.permitted, 'process.capabilities.permitted') & capMask(caps?.inheritable, 'process.capabilities.inheritable'),
      },
      noNewPrivileges: proc.noNewPrivileges === true,
      seccomp,
      seccompFlags,
      cwd: proc.cwd,
      argv: args,
      envp: env,
      candidates: executableCandidates(args[0]!, env),
      stdio: inp.stdio ?? [0, 1, 2],
      preserveFds: inp.preserveFds ?? 0,
      fifoFd: inp.fifo !== null ? open(inp.fifo, O_PATH, 'exec fifo') : -1,
      newKeyring: inp.noNewKeyring !== true,
    };
    if (proc.terminal === true) {
      if (inp.consoleSocket === undefined && inp.consoleFd === undefined) {
        throw new ConfigError('process.terminal', 'a terminal needs --console-socket (the pty master is sent there): cannot allocate tty if berth-runtime will detach without setting console socket');
      }
      if (!mounts.some((m) => path.posix.normalize(m.destination) === '/dev/pts' && m.type === 'devpts')) throw new ConfigError('process.terminal', 'a terminal needs a devpts mount at /dev/pts');
      if (inp.consoleSocket !== undefined) plan.consoleSocket = path.resolve(inp.consoleSocket);
      else plan.consoleFd = inp.consoleFd;
      plan.rows = proc.consoleSize?.height ?? 0;
      plan.cols = proc.consoleSize?.width ?? 0;
    } else if (inp.consoleSocket !== undefined || inp.consoleFd !== undefined) {
      throw new ConfigError('process.terminal', 'cannot use console socket if runtime will not create terminal');
    }
    return { plan, fds, rootfs };
  } catch (err) {
    for (const fd of fds) fs.closeSync(fd);
    throw err;
  }
}
