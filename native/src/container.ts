/**
 * The container init path of the addon (container.cc): one flat plan, compiled from an OCI
 * config by the runtime library (policy lives there), executed between clone and execve.
 * `containerSyscalls` is the real implementation; `RecordingContainerFake` records plans for
 * pure-logic tests.
 */
import { closeSync, writeFileSync } from 'node:fs';

import { signalName, SyscallError } from './errors';
import { binding } from './loader';

/** One filesystem step inside the rootfs; `target` is relative to the rootfs. */
export type RootfsOp =
  | { kind: 'mount'; source: string | null; target: string; fstype: string | null; flags: number; data: string | null; mkdir: 'dir' | 'file' | null }
  | { kind: 'remount'; target: string; flags: number; data?: string | null }
  | { kind: 'propagate'; target: string; flags: number }
  | { kind: 'mknod'; target: string; mode: number; major: number; minor: number }
  | { kind: 'symlink'; source: string; target: string }
  | { kind: 'mask'; target: string }
  | { kind: 'readonly'; target: string }
  | { kind: 'mkdir'; target: string }
  /** Writes `source` to <rootfs>/proc/sys/<target> after checking that /proc is a procfs. */
  | { kind: 'sysctl'; target: string; source: string }
  /**
   * Attaches the spawner's prebuilt /sys/fs/cgroup tree (createSpawner's `cgroupTree`) at
   * `target` and skips the next `skip` ops, which build the same tree the old way; a no-op
   * (those ops run) for a spawn without such a tree.
   */
  | { kind: 'cgroupTree'; target: string; skip: number };

const OP_KINDS = { mount: 0, remount: 1, propagate: 2, mknod: 3, symlink: 4, mask: 5, readonly: 6, mkdir: 7, sysctl: 8, cgroupTree: 9 } as const;

export interface ContainerPlan {
  /** CLONE_NEW* bits of the namespaces to create, without CLONE_NEWTIME. */
  cloneFlags: number;
  newTime?: boolean;
  /** /proc/self/timens_offsets content, e.g. "monotonic 10 0\nboottime 5 0". */
  timeOffsets?: string;
  /** Namespaces to join (fds of ns files, CLONE_NEW* type), in order; not pid. */
  join?: Array<{ fd: number; nstype: number }>;
  /** A pid namespace to join (fd); the process is cloned into it. */
  joinPidFd?: number;
  uidMap?: string;
  gidMap?: string;
  setgroupsDeny?: boolean;
  /** Open cgroup.procs files; the parent writes the pid into each before the child goes on. */
  cgroupProcsFds?: number[];
  oomScoreAdj?: number | null;
  /** Host path of the rootfs; absent: no filesystem setup (exec into a running container). */
  rootfs?: string | null;
  /**
   * Stop after the rootfs ops, before pivot_root, and call spawnContainer's `onPause` (the OCI
   * createRuntime/createContainer hooks run there); needs `rootfs`.
   */
  pauseBeforePivot?: boolean;
  /**
   * Stop right before execve and call `onPause` (a process entering a running container: its
   * pid is known before it can exit); not with `fifoFd`.
   */
  pauseBeforeExec?: boolean;
  rootPropagation?: number;
  rootReadonly?: boolean;
  noPivot?: boolean;
  ops?: RootfsOp[];
  hostname?: string | null;
  domainname?: string | null;
  rlimits?: Array<{ resource: number; soft: bigint; hard: bigint }>;
  user?: { uid: number; gid: number; groups?: number[] } | null;
  umask?: number | null;
  caps?: { lastCap: number; bounding: bigint; effective: bigint; permitted: bigint; inheritable: bigint; ambient: bigint } | null;
  noNewPrivileges?: boolean;
  /** struct sock_filter[] as bytes. */
  seccomp?: Buffer | null;
  seccompFlags?: number;
  cwd?: string | null;
  argv: string[];
  envp: string[];
  /** Absolute paths (inside the container) to try for argv[0], in order. */
  candidates: string[];
  stdio?: [number, number, number];
  preserveFds?: number;
  /** An O_PATH fd of the exec fifo: hold before execve until it is opened for reading. */
  fifoFd?: number;
  noSetsid?: boolean;
  /** Join a new session keyring (runc's default; --no-new-keyring turns it off). */
  newKeyring?: boolean;
  /** A terminal: the pty master goes to this unix socket (SCM_RIGHTS); the slave is stdio. */
  consoleSocket?: string | null;
  /** Or a connected unix socket (inherited by the child) to send the pty master on. */
  consoleFd?: number;
  rows?: number;
  cols?: number;
}

/** Where a container init failed, as the child reported it. */
export type ContainerStage =
  | 'prepare' | 'clone' | 'init_died' | 'join_pid' | 'setgroups' | 'uid_map' | 'gid_map' | 'cgroup' | 'oom_score_adj' | 'sync'
  | 'setns' | 'timens' | 'setsid' | 'propagation' | 'rootfs' | 'mount' | 'pivot_root' | 'hostname' | 'domainname'
  | 'rlimit' | 'sysctl' | 'seccomp' | 'capbset' | 'user' | 'capabilities' | 'umask' | 'cwd' | 'no_new_privileges'
  | 'executable' | 'stdio' | 'close_range' | 'procfs' | 'console' | 'keyring' | 'cgroupns' | 'status';

/** A container init failure: a SyscallError with `op`, the index of the failing op/rlimit/sysctl. */
export type ContainerSpawnError = SyscallError & { op?: number };

export interface ContainerExit {
  code: number | null;
  signal: string | null;
}

/**
 * A thread of this process that has moved itself into a container's cgroups (v1: its tid
 * written to each hierarchy's `tasks`) and waits there for that container's plan: the init it
 * clones is born in those cgroups, so no migration (and no RCU grace period of the kernel's
 * cgroup attach) is on the create's path. Used by one spawnContainer, or released.
 */
export interface CgroupSpawner {
  readonly kind: 'cgroup-spawner';
}

export interface ContainerSyscalls {
  /**
   * Clones and sets up the container; resolves once it holds at the fifo (or has exec'd). With
   * plan.pauseBeforePivot or pauseBeforeExec, `onPause(pid)` runs while the child waits there;
   * if it rejects, the child is killed and reaped and spawnContainer rejects with that error.
   * With a `spawner`, its thread clones the init (plan.cgroupProcsFds is then usually empty).
   */
  spawnContainer(plan: ContainerPlan, onPause?: (pid: number) => Promise<void>, spawner?: CgroupSpawner): Promise<{ pid: number; pidfd: number }>;
  /**
   * Starts a spawner thread that attaches itself to the cgroups behind `tasksFds` (open
   * O_WRONLY `tasks` files, which become its own: the caller must not close them) and makes
   * the namespaces of `unshareFlags` (CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS only) ahead:
   * its init inherits them, so a plan it runs must ask for each of them (cloneFlags).
   * `cgroupTree` ([name, host dir] pairs): the thread also builds, detached, the v1
   * /sys/fs/cgroup those dirs make (see RootfsOp 'cgroupTree'); if it cannot, the ops run.
   */
  createSpawner(tasksFds: number[], unshareFlags?: number, cgroupTree?: Array<[string, string]>): CgroupSpawner;
  /** Lets an unused spawner's thread exit (it leaves its cgroups as it does); no-op once used. */
  releaseSpawner(spawner: CgroupSpawner): void;
  /** Resolves when the child behind the pidfd has exited and been reaped; closes the pidfd. */
  watchExit(pidfd: number): Promise<ContainerExit>;
  mkfifo(path: string, mode: number): void;
  pidfdOpen(pid: number): number;
  setChildSubreaper(): void;
  closeFd(fd: number): void;
  /** Reaps this one child if it is a zombie; true if it was reaped. */
  reapZombie(pid: number): boolean;
}

interface ContainerBinding {
  containerSpawn(plan: object, cb: (err: ContainerSpawnError | null, pid: number, pidfd: number, statusFd: number, syncFd: number) => void, spawner?: object): void;
  spawnerCreate(tasksFds: number[], unshareFlags: number, cgroupTree?: Array<[string, string]>): object;
  spawnerRelease(spawner: object): void;
  containerResume(pid: number, pidfd: number, statusFd: number, syncFd: number, holds: boolean, go: boolean, cb: (err: ContainerSpawnError | null, pid: number, pidfd: number) => void): void;
  watchPidfd(pidfd: number, cb: (err: SyscallError | null, code: number | null, signal: number | null) => void): void;
  mkfifo(path: string, mode: number): void;
  pidfdOpen(pid: number): number;
  setChildSubreaper(): void;
  closeFd(fd: number): void;
  reapZombie(pid: number): boolean;
  socketpair(): [number, number];
  recvFd(sock: number): number;
  setWinsize(fd: number, rows: number, cols: number): void;
  isDumpable(): boolean;
}

const raw = (): ContainerBinding => binding() as unknown as ContainerBinding;

/** Numbers per op in PackedOps.nums: kind, flags, mkdir (0 no, 1 dir, 2 file), mode, major, minor. */
const OP_NUMS = 6;

/**
 * The rootfs ops as the addon reads them: one Float64Array and one string instead of ~50
 * objects of 9 properties each, whose one-by-one reads from C++ cost ~0.1 ms per create. The
 * string holds source, target, fstype and data of each op in turn, each as "1" + value (or
 * "0" when absent) and a NUL: no op string may hold a NUL.
 */
function packOps(ops: RootfsOp[]): { nums: Float64Array; strs: string } {
  const nums = new Float64Array(ops.length * OP_NUMS);
  const parts: string[] = [];
  const field = (v: string | null | undefined, what: string, i: number): void => {
    if (typeof v !== 'string') {
      parts.push('0');
      return;
    }
    if (v.includes('\0')) throw new RangeError(`container plan ops[${i}].${what} must not contain NUL bytes`);
    parts.push(`1${v}`);
  };
  ops.forEach((op, i) => {
    const o = op as Partial<{ source: string | null; fstype: string | null; data: string | null; flags: number; mkdir: 'dir' | 'file' | null; mode: number; major: number; minor: number; skip: number }> & { kind: RootfsOp['kind']; target: string };
    const b = i * OP_NUMS;
    nums[b] = OP_KINDS[o.kind];
    if (o.kind === 'cgroupTree' && (!Number.isInteger(o.skip) || o.skip! < 0 || i + o.skip! >= ops.length)) throw new RangeError(`container plan ops[${i}].skip must count ops that follow it`);
    nums[b + 1] = o.kind === 'cgroupTree' ? o.skip! : o.flags ?? 0;
    nums[b + 2] = o.mkdir === 'dir' ? 1 : o.mkdir === 'file' ? 2 : 0;
    nums[b + 3] = o.mode ?? 0;
    nums[b + 4] = o.major ?? 0;
    nums[b + 5] = o.minor ?? 0;
    field(o.source, 'source', i);
    field(o.target, 'target', i);
    field(o.fstype, 'fstype', i);
    field(o.data, 'data', i);
  });
  return { nums, strs: parts.length === 0 ? '' : `${parts.join('\0')}\0` };
}

function checkPlan(plan: ContainerPlan): object {
  if (!Array.isArray(plan.argv) || plan.argv.length === 0) throw new RangeError('container plan argv must not be empty');
  if (!Array.isArray(plan.candidates) || plan.candidates.length === 0) {
    throw new RangeError('container plan candidates must list at least one executable path');
  }
  for (const s of [...plan.argv, ...plan.envp, ...plan.candidates, plan.rootfs ?? '', plan.cwd ?? '']) {
    if (typeof s !== 'string' || s.includes('\0')) throw new RangeError('container plan strings must not contain NUL bytes');
  }
  if ((plan.cloneFlags & 0x80) !== 0) throw new RangeError('container plan: use newTime for the time namespace, not cloneFlags');
  return {
    ...plan,
    join: plan.join ?? [],
    cgroupProcsFds: plan.cgroupProcsFds ?? [],
    rlimits: plan.rlimits ?? [],
    ops: packOps(plan.ops ?? []),
    oomScoreAdj: plan.oomScoreAdj ?? undefined,
    hostname: plan.hostname ?? undefined,
    domainname: plan.domainname ?? undefined,
    rootfs: plan.rootfs ?? undefined,
    cwd: plan.cwd ?? undefined,
    umask: plan.umask ?? undefined,
    user: plan.user ?? undefined,
    caps: plan.caps ?? undefined,
    seccomp: plan.seccomp ?? undefined,
    consoleSocket: plan.consoleSocket ?? undefined,
  };
}

/**
 * Whether this process is dumpable (PR_GET_DUMPABLE). A CLONE_VM init makes the memory it shares
 * with us non-dumpable until its execve; the process is dumpable again once none is left.
 */
export function isDumpable(): boolean {
  return raw().isDumpable();
}

/** Two connected AF_UNIX stream sockets (O_CLOEXEC), e.g. for a container's console. */
export function socketpair(): [number, number] {
  return raw().socketpair();
}

/** The fd sent on a unix socket with SCM_RIGHTS (O_CLOEXEC); throws EAGAIN if none is there yet. */
export function recvFd(sock: number): number {
  if (!Number.isInteger(sock) || sock < 0) throw new RangeError(`recvFd socket must be a file descriptor, got ${sock}`);
  return raw().recvFd(sock);
}

/** Sets the window size of a terminal (e.g. a container's pty master, when ours changes). */
export function setWinsize(fd: number, rows: number, cols: number): void {
  for (const [n, v] of [['fd', fd], ['rows', rows], ['cols', cols]] as const) {
    if (!Number.isInteger(v) || v < 0 || (n !== 'fd' && v > 0xffff)) throw new RangeError(`setWinsize ${n} must be a non-negative integer${n === 'fd' ? '' : ' up to 65535'}, got ${v}`);
  }
  raw().setWinsize(fd, rows, cols);
}

/** CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS: what a spawner thread may make ahead. */
const SPAWNER_NAMESPACES = 0x40000000 | 0x08000000 | 0x04000000;

/** The addon's handle behind a CgroupSpawner. */
const spawnerHandles = new WeakMap<CgroupSpawner, object>();

export const containerSyscalls: ContainerSyscalls = {
  spawnContainer(plan, onPause, spawner) {
    const checked = checkPlan(plan);
    const holds = plan.fifoFd !== undefined && plan.fifoFd >= 0;
    const resume = (pid: number, pidfd: number, statusFd: number, syncFd: number, go: boolean): Promise<{ pid: number; pidfd: number }> =>
      new Promise((resolve, reject) => {
        raw().containerResume(pid, pidfd, statusFd, syncFd, holds, go, (err, p, fd) => (err !== null ? reject(err) : resolve({ pid: p, pidfd: fd })));
      });
    return new Promise((resolve, reject) => {
      const cb = (err: ContainerSpawnError | null, pid: number, pidfd: number, statusFd: number, syncFd: number): void => {
        if (err !== null) return reject(err);
        if (statusFd < 0) return resolve({ pid, pidfd });
        (onPause ?? (async () => undefined))(pid).then(
          () => resume(pid, pidfd, statusFd, syncFd, true).then(resolve, reject),
          (hookErr: unknown) => resume(pid, pidfd, statusFd, syncFd, false).then(() => reject(hookErr), reject),
        );
      };
      const handle = spawner !== undefined ? spawnerHandles.get(spawner) : undefined;
      if (spawner !== undefined) {
        if (handle === undefined) return reject(new RangeError('spawnContainer: the spawner was already used or released'));
        spawnerHandles.delete(spawner);
        raw().containerSpawn(checked, cb, handle);
      } else {
        raw().containerSpawn(checked, cb);
      }
    });
  },
  createSpawner(tasksFds, unshareFlags = 0, cgroupTree) {
    if (!Array.isArray(tasksFds) || tasksFds.some((fd) => !Number.isInteger(fd) || fd < 0)) throw new RangeError('createSpawner tasksFds must be file descriptors');
    if (!Number.isInteger(unshareFlags) || (unshareFlags & ~SPAWNER_NAMESPACES) !== 0) throw new RangeError(`createSpawner unshareFlags may hold only CLONE_NEWNET, CLONE_NEWIPC and CLONE_NEWUTS, got 0x${unshareFlags.toString(16)}`);
    for (const [i, b] of (cgroupTree ?? []).entries()) {
      const ok = Array.isArray(b) && typeof b[0] === 'string' && /^[\w.,=-]+$/.test(b[0]) && b[0] !== '.' && b[0] !== '..' && typeof b[1] === 'string' && b[1].startsWith('/') && !b[1].includes('\0');
      if (!ok) throw new RangeError(`createSpawner cgroupTree[${i}] must be [a plain name, an absolute dir]`);
    }
    const spawner: CgroupSpawner = { kind: 'cgroup-spawner' };
    spawnerHandles.set(spawner, raw().spawnerCreate(tasksFds, unshareFlags, cgroupTree));
    return spawner;
  },
  releaseSpawner(spawner) {
    const handle = spawnerHandles.get(spawner);
    if (handle === undefined) return;
    spawnerHandles.delete(spawner);
    raw().spawnerRelease(handle);
  },
  watchExit(pidfd) {
    return new Promise((resolve, reject) => {
      raw().watchPidfd(pidfd, (err, code, signal) => {
        if (err !== null) reject(err);
        else resolve({ code, signal: signal === null ? null : signalName(signal) });
      });
    });
  },
  mkfifo(path, mode) {
    if (path.includes('\0')) throw new RangeError('mkfifo path must not contain NUL bytes');
    raw().mkfifo(path, mode);
  },
  pidfdOpen: (pid) => raw().pidfdOpen(pid),
  setChildSubreaper: () => raw().setChildSubreaper(),
  closeFd: (fd) => raw().closeFd(fd),
  reapZombie(pid) {
    if (!Number.isInteger(pid) || pid <= 0) throw new RangeError(`reapZombie pid must be a positive integer, got ${pid}`);
    return raw().reapZombie(pid);
  },
};

/** ContainerSyscalls for pure-logic tests: records every plan; containers "exit 0" when told. */
export class RecordingContainerFake implements ContainerSyscalls {
  readonly plans: ContainerPlan[] = [];
  readonly fifos: string[] = [];
  private nextPid = 5000;
  private readonly exits = new Map<number, (e: ContainerExit) => void>();
  failNext: Error | null = null;

  /** Spawners handed out and not yet used or released. */
  readonly spawners = new Set<CgroupSpawner>();
  async spawnContainer(plan: ContainerPlan, onPause?: (pid: number) => Promise<void>, spawner?: CgroupSpawner): Promise<{ pid: number; pidfd: number }> {
    checkPlan(plan);
    if (spawner !== undefined && !this.spawners.delete(spawner)) throw new RangeError('spawnContainer: the spawner was already used or released');
    this.plans.push(plan);
    if (this.failNext !== null) {
      const err = this.failNext;
      this.failNext = null;
      throw err;
    }
    const pid = this.nextPid++;
    if ((plan.pauseBeforePivot === true && plan.rootfs !== undefined && plan.rootfs !== null) || (plan.pauseBeforeExec === true && (plan.fifoFd ?? -1) < 0)) await onPause?.(pid);
    return { pid, pidfd: pid };
  }
  watchExit(pidfd: number): Promise<ContainerExit> {
    return new Promise((resolve) => this.exits.set(pidfd, resolve));
  }
  /** Ends the fake container with this exit. */
  exit(pid: number, status: ContainerExit = { code: 0, signal: null }): void {
    this.exits.get(pid)?.(status);
    this.exits.delete(pid);
  }
  /** Records the fifo and leaves an empty regular file in its place, so it can be opened. */
  mkfifo(path: string): void {
    this.fifos.push(path);
    writeFileSync(path, '');
  }
  pidfdOpen(pid: number): number {
    return pid;
  }
  /** Closes the fds (the real one's thread does once attached). */
  createSpawner(tasksFds: number[]): CgroupSpawner {
    for (const fd of tasksFds) closeSync(fd);
    const s: CgroupSpawner = { kind: 'cgroup-spawner' };
    this.spawners.add(s);
    return s;
  }
  releaseSpawner(spawner: CgroupSpawner): void {
    this.spawners.delete(spawner);
  }
  setChildSubreaper(): void {}
  closeFd(): void {}
  reapZombie(): boolean {
    return false;
  }
}
