// The OCI runtime library: create/start/state/kill/delete/run/exec/pause/resume/ps/update.
// `berth-runtime` (the CLI) and the runtime-shim daemon both drive this class; the daemon
// in-process, so the hot path never execs a CLI.
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';

import { CLONE_FLAGS, containerSyscalls, SyscallError, type ContainerExit, type ContainerPlan, type ContainerSyscalls } from '@berth/native';

import { cgroupDriver, cgroupPath, CgroupV1, CgroupV2, detectCgroupVersion, type CgroupDriver, type CgroupStats } from './cgroups/cgroups';
import { CgroupPool, isPoolPath } from './cgroups/pool';
import type { runHooks as RunHooks } from './hooks';
import { ConfigError, loadSpec, validateSpec, type Hook, type Process, type Resources, type Spec } from './oci/config';
import { compilePlan } from './oci/plan';
import { checkId, isoTime, pidStartTime, RuntimeError, StateStore, unlinkIfExists, type OciState, type Status, type StoredState } from './state';

export interface RuntimeOptions {
  root: string;
  syscalls?: ContainerSyscalls;
  systemdCgroup?: boolean;
  /** cgroup fs root (tests point the v2 driver at a fixture). */
  cgroupRoot?: string;
  warn?: (msg: string) => void;
  /** --debug: one line per step of create. */
  debug?: (msg: string) => void;
  /**
   * A long-running process (the daemon): keep this many container cgroups ready, each with a
   * spawner thread already inside (cgroup v1 only; see cgroups/pool.ts). Call close() at the end.
   */
  cgroupPool?: number;
  /**
   * The parent cgroup of a container whose config has no linux.cgroupsPath: /berth by default
   * (a daemon's pool lives there); '' puts it at `/<id>` of each hierarchy, as runc and crun do
   * (the CLI: no parent to make before and remove after each run).
   */
  defaultCgroupParent?: string;
  /**
   * A one-shot runtime (the CLI): on cgroup v1, each init is cloned by a thread of this process
   * that attached itself to the container's cgroups while the limits were written and the plan
   * compiled, so that no thread pool starts and no attach sits between the clone and the init's
   * setup. A long-running runtime keeps the pool's way (a daemon's warm cgroups, or a pool
   * thread that writes the init into its cgroups).
   */
  oneShot?: boolean;
}

export interface CreateOptions {
  bundle: string;
  pidFile?: string;
  noPivot?: boolean;
  preserveFds?: number;
  stdio?: [number, number, number];
  /** A spec already loaded (the daemon builds it itself); default: <bundle>/config.json. */
  spec?: Spec;
  /**
   * `spec` is what loadSpec() returned, unchanged since (a CLI that looked at it first): not
   * validated a second time. A spec built or edited after loading is validated again.
   */
  specFromLoadSpec?: boolean;
  consoleSocket?: string;
  /** Or a connected unix socket to send the pty master on (see `run` of the CLI). */
  consoleFd?: number;
  noNewKeyring?: boolean;
  /**
   * run: the init goes on to execve as soon as it is set up, without holding at the exec fifo
   * (no fifo, no `node:net` for it, one wake-up less), unless a startContainer hook must run
   * before the process; Created.started says which.
   */
  startAtOnce?: boolean;
}

export interface Created {
  state: OciState;
  /** The init did not hold (CreateOptions.startAtOnce): it is running, start() is not needed. */
  started: boolean;
  /** Settles when the init process exits, with OOM kills counted; only for our own children. */
  exited: Promise<ContainerExit & { oomKilled: boolean }>;
}

/** SIGKILL, KILL, 9 -> 9. */
export function parseSignal(sig: string): number {
  const signals = osConstants.signals as Record<string, number>;
  if (/^\d+$/.test(sig)) {
    const n = Number(sig);
    if (n >= 1 && n <= 64) return n;
  } else {
    const up = sig.toUpperCase();
    const n = signals[up.startsWith('SIG') ? up : `SIG${up}`];
    if (n !== undefined) return n;
  }
  throw new RuntimeError(`unknown signal "${sig}"`);
}

const OCI_VERSION = '1.0.2';

/** OCI hooks in the runtime's namespaces; hooks.ts (and child_process) load only when there are some. */
const runHooks: typeof RunHooks = async (hooks, state, name) => {
  if (hooks === undefined || hooks.length === 0) return;
  await (await import('./hooks.js')).runHooks(hooks, state, name);
};

/** What the runtime keeps in state.json: the stored state plus the cgroup ancestors its create made. */
interface RuntimeState extends StoredState {
  /** Removed with the container when empty (see CgroupDriver.destroy). */
  cgroupCreated?: string[];
}

/** Turns a SyscallError of the init path into a message naming the config field it came from. */
export function describeInitFailure(err: unknown, plan: ContainerPlan, spec: Spec): unknown {
  if (!(err instanceof SyscallError)) return err;
  const op = (err as SyscallError & { op?: number }).op ?? -1;
  const proc = spec.process!;
  let what: string;
  switch (err.stage) {
    case 'executable':
      what = err.code === 'ENOENT' ? `process.args[0]: exec: "${proc.args![0]}": executable file not found in $PATH` : `process.args[0]: exec: "${proc.args![0]}"`;
      break;
    case 'cwd':
      what = `process.cwd: '${proc.cwd}'`;
      break;
    case 'rlimit': {
      const r = proc.rlimits?.[op];
      what = `process.rlimits[${op}]: ${r?.type} soft ${r?.soft} hard ${r?.hard}${err.code === 'EPERM' ? ' (above the hard limit this runtime may set)' : ''}`;
      break;
    }
    case 'mount': {
      const o = plan.ops?.[op];
      what = o !== undefined ? `${o.kind} ${'source' in o && o.source !== null && o.kind !== 'sysctl' ? `'${o.source}' ` : ''}on '/${o.target}'` : 'mount';
      if (o?.kind === 'mkdir' && `/${o.target}` === path.posix.normalize(proc.cwd)) what = `process.cwd: '${proc.cwd}'`;
      if (o?.kind === 'sysctl') what = `linux.sysctl.${o.target.replace(/\//g, '.')}${err.code === 'EXDEV' ? ': /proc in the container is not a procfs' : ''}`;
      break;
    }
    case 'uid_map':
    case 'gid_map':
      what = `linux.${err.stage === 'uid_map' ? 'uidMappings' : 'gidMappings'}`;
      break;
    case 'hostname':
      what = 'hostname';
      break;
    case 'init_died':
      what = 'the init process died before its first report (killed from outside?)';
      break;
    case 'seccomp':
      what = 'linux.seccomp';
      break;
    case 'user':
      what = 'process.user';
      break;
    default:
      what = err.stage ?? 'init';
  }
  return new RuntimeError(`container init failed: ${what}: ${err.message}`);
}

/**
 * The cgroup ancestors a container's delete may remove when empty: those its create made, and
 * for a relative linux.cgroupsPath (or none) every level under the runtime's parent, which the
 * runtime named and so owns (whichever container made it). Levels of an absolute path belong
 * to whoever named them (a pod cgroup keeps its limits between containers).
 */
function ownedCgroupParents(spec: Spec, cgPath: string, created: readonly string[]): string[] {
  const owned = new Set(created);
  const p = spec.linux?.cgroupsPath;
  if (p === undefined || !p.startsWith('/')) {
    const parts = cgPath.split('/').filter(Boolean);
    for (let i = 2; i < parts.length; i++) owned.add(`/${parts.slice(0, i).join('/')}`);
  }
  return [...owned];
}

/**
 * The processes of a container's cgroups: never this process, whose spawner thread
 * (cgroups/pool.ts) sits in a pooled cgroup until the init it cloned has exec'd.
 */
function tasksOf(cg: CgroupDriver): number[] {
  return cg.pids().filter((p) => p !== process.pid);
}

export class Runtime {
  readonly store: StateStore;
  private readonly sys: ContainerSyscalls;
  private readonly warn: (msg: string) => void;
  /** Exit promises of the containers this process created (their parent is us). */
  private readonly exits = new Map<string, Created['exited']>();
  /** Those of them whose init has exited (seen on its pidfd): stopped, no /proc lookup needed. */
  private readonly exitSeen = new Set<string>();
  /** Pids of our children that a pidfd watch reaps (container inits, execs). */
  readonly ownPids = new Set<number>();
  /**
   * Container inits being spawned, whose pid is not in ownPids yet. One that does not hold for
   * a start (startAtOnce) can run and exit before its pid is known here: while any is in
   * flight, an orphan reaper must leave unknown zombies alone, or it takes that init's exit.
   */
  initsInFlight = 0;
  /** Removals of empty cgroup parents still waiting for the kernel (see settle()). */
  private readonly cleanups = new Set<Promise<void>>();
  /** The warm cgroups of a long-running runtime (RuntimeOptions.cgroupPool). */
  readonly pool: CgroupPool | undefined;

  constructor(private readonly opts: RuntimeOptions) {
    this.store = new StateStore(opts.root);
    this.sys = opts.syscalls ?? containerSyscalls;
    this.warn = opts.warn ?? (() => undefined);
    if ((opts.cgroupPool ?? 0) > 0 && opts.cgroupRoot === undefined && opts.systemdCgroup !== true && detectCgroupVersion() === 1) {
      this.pool = new CgroupPool(this.sys, opts.root, opts.cgroupPool);
      this.pool.removeStale();
    }
  }

  /** Fills the cgroup pool (if any) before the first create needs it; see CgroupPool.ready(). */
  async warm(): Promise<void> {
    await this.pool?.ready();
  }

  /** Lets the cgroup pool go (its threads and directories) and waits for background cleanups. */
  async close(): Promise<void> {
    // The deleted containers' cgroups first: the pool's close() then removes the parent.
    await this.settle();
    await this.pool?.close();
    await this.settle();
  }

  private driver(s: Pick<StoredState, 'cgroupPath' | 'cgroupVersion' | 'cgroupPaths'>): CgroupDriver {
    if (s.cgroupVersion === 2) return new CgroupV2(s.cgroupPath, this.opts.cgroupRoot);
    return new CgroupV1(s.cgroupPath, Object.fromEntries(Object.entries(s.cgroupPaths).map(([k, v]) => [k, v.slice(0, v.length - s.cgroupPath.length)])));
  }

  private ociState(s: StoredState, status: Status): OciState {
    const out: OciState = { ociVersion: OCI_VERSION, id: s.id, pid: status === 'stopped' ? 0 : s.pid, status, bundle: s.bundle, rootfs: s.rootfs, created: s.created, owner: '' };
    if (Object.keys(s.annotations).length > 0) out.annotations = s.annotations;
    return out;
  }

  status(s: StoredState): Status {
    if (this.exitSeen.has(s.id)) return 'stopped';
    const now = pidStartTime(s.pid);
    if (now === undefined || now.start !== s.pidStartTime || now.state === 'Z' || now.state === 'X') return 'stopped';
    if (this.driver(s).frozen()) return 'paused';
    return fs.existsSync(this.store.fifo(s.id)) ? 'created' : 'running';
  }

  state(id: string): OciState {
    const s = this.store.read(checkId(id));
    return this.ociState(s, this.status(s));
  }

  list(): OciState[] {
    const out: OciState[] = [];
    for (const id of this.store.ids()) {
      try {
        out.push(this.state(id));
      } catch {
        // a half-created container: nothing to list
      }
    }
    return out;
  }

  async create(id: string, o: CreateOptions): Promise<Created> {
    checkId(id);
    const bundle = path.resolve(o.bundle);
    const spec = o.spec !== undefined ? (o.specFromLoadSpec === true ? o.spec : validateSpec(o.spec)) : loadSpec(bundle);
    if (spec.process === undefined) throw new ConfigError('process', 'required field is missing');
    const cgPath = cgroupPath(spec.linux?.cgroupsPath, id, this.opts.systemdCgroup === true, this.opts.defaultCgroupParent);
    const dir = this.store.claim(id);
    // A pooled cgroup for the default path: the spawner thread inside clones the init, so the
    // init never migrates. Not with a pids limit (the spawner counts as a task until it exits),
    // nor with a new time namespace (such an init is a fork-style copy, cloned by a pool thread).
    const newNs = new Set((spec.linux?.namespaces ?? []).filter((n) => n.path === undefined).map((n) => n.type));
    const pooled = spec.linux?.cgroupsPath === undefined && spec.linux?.resources?.pids === undefined && !newNs.has('time') ? this.pool?.take(cgPath, newNs) : undefined;
    // A pooled cgroup keeps its pool name until the init is set up (see PooledCgroup.commit()).
    let cg: CgroupDriver = pooled?.driver ?? cgroupDriver(cgPath, this.opts.cgroupRoot);
    let spawner = pooled?.spawner;
    let pidfd = -1;
    let pid = -1;
    let pausedInit: number | undefined;
    let fds: number[] = [];
    try {
      if (pooled === undefined) await cg.create();
      else this.store.notePooledCgroup(id, pooled.poolPath);
      // A one-shot runtime on cgroup v1 has its init cloned by a thread of its own that attaches
      // itself to the container's cgroups now (see RuntimeOptions.oneShot). Not where the pool
      // is not used either: a pids limit (the thread would count), a new time or user namespace.
      let cgroupTree = pooled?.cgroupTree;
      if (spawner === undefined && this.opts.oneShot === true && cg.version === 1 && spec.linux?.resources?.pids === undefined && !newNs.has('time') && !newNs.has('user')) {
        const tasks: number[] = [];
        try {
          for (const d of new Set(Object.values(cg.paths))) tasks.push(fs.openSync(path.join(d, 'tasks'), 'w'));
          // It builds the container's /sys/fs/cgroup too, while this thread writes the limits
          // and compiles the plan (see PlanInputs.cgroupTree).
          const tree = Object.entries(cg.paths);
          spawner = this.sys.createSpawner(tasks, 0, tree);
          cgroupTree = tree.map(([name]) => name);
        } catch (err) {
          for (const fd of tasks) fs.closeSync(fd);
          throw err;
        }
      }
      await cg.apply(spec.linux?.resources ?? {});
      // The OCI start splits from create at the fifo; startContainer hooks run in that gap.
      const started = o.startAtOnce === true && (spec.hooks?.startContainer?.length ?? 0) === 0;
      const fifo = started ? null : path.join(dir, 'exec.fifo');
      if (fifo !== null) this.sys.mkfifo(fifo, 0o622);
      const compiled = compilePlan({
        spec, bundle, fifo,
        cgroupProcs: spawner !== undefined ? [] : cg.procsFiles(),
        cgroupDirs: cg.version === 1 ? cg.paths : {},
        cgroupTree,
        noPivot: o.noPivot, preserveFds: o.preserveFds, stdio: o.stdio, consoleSocket: o.consoleSocket, consoleFd: o.consoleFd, noNewKeyring: o.noNewKeyring,
      });
      fds = compiled.fds;
      this.opts.debug?.(`create ${id}: rootfs ${compiled.rootfs}, cgroup v${cg.version} ${cgPath}, clone flags 0x${compiled.plan.cloneFlags.toString(16)}, ${compiled.plan.ops?.length ?? 0} rootfs ops, exec candidates ${compiled.plan.candidates.join(':')}`);
      const createdAt = isoTime();
      const hooks = spec.hooks ?? {};
      // The OCI points of these hooks: the environment is set up (namespaces, cgroups, mounts)
      // but pivot_root has not happened yet. The init waits there while they run.
      compiled.plan.pauseBeforePivot = [hooks.prestart, hooks.createRuntime, hooks.createContainer].some((h) => (h?.length ?? 0) > 0);
      const beforePivot = async (initPid: number): Promise<void> => {
        // Ours from here: a daemon's orphan reaper must leave it to the spawn's own reaping.
        pausedInit = initPid;
        this.ownPids.add(initPid);
        const state: OciState = { ociVersion: OCI_VERSION, id, pid: initPid, status: 'creating', bundle, rootfs: compiled.rootfs, created: createdAt, owner: '' };
        if (Object.keys(spec.annotations ?? {}).length > 0) state.annotations = spec.annotations;
        this.opts.debug?.(`create ${id}: init ${initPid} waits before pivot_root for the createRuntime/createContainer hooks`);
        await runHooks(hooks.prestart, state, 'prestart');
        await runHooks(hooks.createRuntime, state, 'createRuntime');
        for (const hook of hooks.createContainer ?? []) await this.hookBeforePivot(initPid, dir, spec, cg, hook, state);
      };
      const via = spawner;
      spawner = undefined;
      try {
        this.initsInFlight++;
        ({ pid, pidfd } = await this.sys.spawnContainer(compiled.plan, beforePivot, via));
      } catch (err) {
        // Refused before the hand-over (a plan the addon will not take): the spawner is still
        // ours, and its thread would hold the cgroup (no-op once handed over).
        if (via !== undefined) this.sys.releaseSpawner(via);
        throw describeInitFailure(err, compiled.plan, spec);
      } finally {
        // Decremented in the same turn as the pid goes into ownPids below: no timer between.
        this.initsInFlight--;
      }
      for (const fd of fds) fs.closeSync(fd);
      fds = [];
      if (pooled !== undefined) cg = pooled.commit();
      const stored: RuntimeState = {
        id, pid, pidStartTime: pidStartTime(pid)?.start ?? '', bundle, rootfs: compiled.rootfs,
        created: createdAt, annotations: spec.annotations ?? {},
        cgroupPath: cgPath, cgroupVersion: cg.version, cgroupPaths: cg.paths, spec, cgroupCreated: ownedCgroupParents(spec, cgPath, cg.created),
      };
      this.store.write(stored);
      this.opts.debug?.(fifo !== null ? `create ${id}: init pid ${pid} holds at ${fifo}` : `create ${id}: init pid ${pid} started at once`);
      const state = this.ociState(stored, started ? 'running' : 'created');
      if (o.pidFile !== undefined) {
        const tmp = `${o.pidFile}.${process.pid}.tmp`;
        fs.writeFileSync(tmp, String(pid));
        fs.renameSync(tmp, path.resolve(o.pidFile));
      }
      const watchFd = pidfd;
      pidfd = -1;
      const initPid = pid;
      this.ownPids.add(initPid);
      const exited = this.sys.watchExit(watchFd).then((e) => {
        this.ownPids.delete(initPid);
        if (this.exits.get(id) === exited) this.exitSeen.add(id);
        return { ...e, oomKilled: cg.oomKills() > 0 };
      });
      exited.catch(() => undefined);
      this.exits.set(id, exited);
      return { state, started, exited };
    } catch (err) {
      for (const fd of fds) fs.closeSync(fd);
      if (spawner !== undefined) this.sys.releaseSpawner(spawner);
      if (pid > 0) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        if (pidfd >= 0) await this.sys.watchExit(pidfd).catch(() => undefined);
      }
      if (pausedInit !== undefined) this.ownPids.delete(pausedInit);
      await cg.destroy().catch(() => undefined);
      // A commit that failed half-way and could not be undone: the other name too.
      if (pooled !== undefined) await (cg === pooled.driver ? cgroupDriver(cgPath, this.opts.cgroupRoot) : pooled.driver).destroyLeaf().catch(() => undefined);
      this.store.remove(id);
      throw err;
    }
  }

  async start(id: string): Promise<OciState> {
    const s = this.store.read(checkId(id));
    const status = this.status(s);
    if (status !== 'created') throw new RuntimeError(`cannot start a container that has ${status === 'stopped' ? 'stopped' : `already been started (status ${status})`}`);
    const fifo = this.store.fifo(id);
    const state = this.ociState(s, 'running');
    // In the container's namespaces, before its process runs (a failure stops the start).
    for (const hook of s.spec.hooks?.startContainer ?? []) {
      try {
        await this.hookInContainer(s, hook, this.ociState(s, 'created'), 'startContainer');
      } catch (err) {
        await this.delete(id, true).catch(() => undefined);
        throw err;
      }
    }
    // The held init has the fifo open for writing pending; opening the read side lets it go on,
    // and it writes one byte right before execve. EOF without it: the init died.
    const fd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    // node:net loaded only here (a plain require: import() would start the ESM loader): the
    // CLI's other commands do not pay for it.
    const net = require('node:net') as typeof import('node:net');
    await new Promise<void>((resolve, reject) => {
      const sock = new net.Socket({ fd, readable: true, writable: false });
      let got = false;
      sock.on('data', () => {
        got = true;
        sock.destroy();
        resolve();
      });
      sock.on('end', () => {
        if (!got) reject(new RuntimeError(`cannot start container ${id}: its init process exited before exec`));
        sock.destroy();
      });
      sock.on('error', reject);
    });
    unlinkIfExists(fifo);
    await runHooks(s.spec.hooks?.poststart, state, 'poststart').catch((e: Error) => this.warn(e.message));
    return state;
  }

  kill(id: string, signal: string | number = 'SIGTERM', all = false): void {
    const s = this.store.read(checkId(id));
    const sig = typeof signal === 'number' ? signal : parseSignal(signal);
    const status = this.status(s);
    if (status === 'stopped') throw new RuntimeError('container not running');
    const pids = all ? tasksOf(this.driver(s)) : [s.pid];
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    if (all && this.driver(s).frozen()) this.driver(s).thaw();
  }

  /** Resolves when the init process (and, with --all, the cgroup) is gone. */
  private async waitGone(s: StoredState): Promise<void> {
    const own = this.exits.get(s.id);
    if (own !== undefined) {
      await own.catch(() => undefined);
      return;
    }
    let fd: number;
    try {
      fd = this.sys.pidfdOpen(s.pid);
    } catch {
      return;
    }
    // Not our child: the pidfd still becomes readable at exit (waitid then says ECHILD).
    if (pidStartTime(s.pid)?.start !== s.pidStartTime) {
      this.sys.closeFd(fd);
      return;
    }
    await this.sys.watchExit(fd).catch(() => undefined);
  }

  async delete(id: string, force = false): Promise<void> {
    checkId(id);
    let s: RuntimeState;
    try {
      s = this.store.read(id);
    } catch (err) {
      if (force && fs.existsSync(this.store.dir(id))) {
        // A create that crashed before writing state.json: its cgroup (at the default path, or
        // still under the pool name it noted) and anything already in it go too.
        const pooledPath = this.store.pooledCgroup(id);
        const cgs = [cgroupDriver(cgroupPath(undefined, id, false, this.opts.defaultCgroupParent), this.opts.cgroupRoot)];
        if (pooledPath !== undefined && isPoolPath(pooledPath)) cgs.push(cgroupDriver(pooledPath, this.opts.cgroupRoot));
        for (const cg of cgs) {
          for (const pid of tasksOf(cg)) {
            try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
          }
          for (let i = 0; i < 100 && tasksOf(cg).length > 0; i++) await new Promise((r) => setTimeout(r, 5));
          await cg.destroy().catch((e: Error) => this.warn(`cgroup cleanup: ${e.message}`));
        }
        this.store.remove(id);
        return;
      }
      throw err;
    }
    const status = this.status(s);
    const cg = this.driver(s);
    if (status === 'running' || status === 'paused') {
      if (!force) throw new RuntimeError(`cannot delete container ${id} that is not stopped: ${status}`);
    }
    if (status !== 'stopped') {
      for (const pid of new Set([s.pid, ...tasksOf(cg)])) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
      if (status === 'paused') cg.thaw();
      await this.waitGone(s);
    }
    // Everything else in the cgroup (a pid namespace dies with its init; without one, kill).
    for (let i = 0; i < 100 && tasksOf(cg).length > 0; i++) {
      for (const pid of tasksOf(cg)) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    this.exits.delete(id);
    this.exitSeen.delete(id);
    // A long-running runtime removes a cgroup in its own parent after delete returns, on
    // libuv's threads (the kernel can take a moment to let go of it, e.g. while the thread that
    // cloned the init is on its way out), and only then the state dir: a crash in between
    // leaves the state for a restart's delete --force, which removes the cgroup, so nothing is
    // left that no one knows of. The id stays taken until then (a daemon's ids are random).
    // Its only parent is the runtime's, which holds the pool's entries: not tried (ten failing
    // rmdirs per delete); the pool's close() removes it.
    const leaf = s.cgroupVersion === 1 ? this.pool?.removeLeaf(s.cgroupPath) : undefined;
    if (leaf !== undefined) {
      this.background(leaf.then(() => this.store.remove(id)));
    } else {
      await cg.destroyLeaf().catch((e: Error) => this.warn(`cgroup cleanup: ${e.message}`));
      // The parents can take the kernel a moment to let go of: not on delete's path (a daemon
      // lets it finish in the background; a CLI awaits settle() before it exits).
      this.background(cg.removeParents(s.cgroupCreated ?? []));
      this.store.remove(id);
    }
    await runHooks(s.spec.hooks?.poststop, this.ociState(s, 'stopped'), 'poststop').catch((e: Error) => this.warn(e.message));
  }

  /** Tracks a cleanup that runs on after the call that started it (see settle()). */
  private background(p: Promise<void>): void {
    const tracked = p.catch((e: Error) => this.warn(`cleanup: ${e.message}`));
    this.cleanups.add(tracked);
    void tracked.finally(() => this.cleanups.delete(tracked));
  }

  /** Resolves when the background cleanups of deleted containers (cgroups, state dirs) are done. */
  async settle(): Promise<void> {
    while (this.cleanups.size > 0) await Promise.all([...this.cleanups]);
  }

  /** The poststart hooks of a container created with startAtOnce that did not hold (start() runs them otherwise); a failed hook is a warning. */
  async poststart(id: string): Promise<void> {
    const s = this.store.read(checkId(id));
    await runHooks(s.spec.hooks?.poststart, this.ociState(s, 'running'), 'poststart').catch((e: Error) => this.warn(e.message));
  }

  /** create + start + wait; returns the exit code (128+signal when killed), like runc run. */
  async run(id: string, o: CreateOptions & { detach?: boolean; keep?: boolean }): Promise<number> {
    const created = await this.create(id, { ...o, startAtOnce: true });
    try {
      if (created.started) {
        await this.poststart(id);
      } else {
        await this.start(id);
      }
    } catch (err) {
      await this.delete(id, true).catch(() => undefined);
      throw err;
    }
    if (o.detach === true) return 0;
    const exit = await created.exited;
    if (o.keep !== true) await this.delete(id, true);
    if (exit.code !== null) return exit.code;
    return 128 + (exit.signal !== null ? parseSignal(exit.signal) : 9);
  }

  async pause(id: string): Promise<void> {
    const s = this.store.read(checkId(id));
    const status = this.status(s);
    if (status !== 'running' && status !== 'created') throw new RuntimeError(`container not running: ${status}`);
    await this.driver(s).freeze();
  }

  resume(id: string): void {
    const s = this.store.read(checkId(id));
    if (this.status(s) !== 'paused') throw new RuntimeError('container not paused');
    this.driver(s).thaw();
  }

  ps(id: string): number[] {
    return tasksOf(this.driver(this.store.read(checkId(id))));
  }

  stats(id: string): CgroupStats {
    const s = this.store.read(checkId(id));
    if (this.status(s) === 'stopped') throw new RuntimeError('container not running');
    return this.driver(s).stats();
  }

  async update(id: string, res: Resources): Promise<void> {
    const s = this.store.read(checkId(id));
    if (this.status(s) === 'stopped') throw new RuntimeError('container not running');
    validateSpec({ ociVersion: '1.0.0', linux: { resources: res } });
    await this.driver(s).apply(res, 'resources');
  }

  /**
   * Runs one hook process with the state on stdin and its stderr kept for the error; a timeout
   * kills it. `spawn` starts it with the given stdio.
   */
  private async runHookProcess(dir: string, hook: Hook, state: OciState, name: string, spawn: (stdio: [number, number, number]) => Promise<{ pid: number; exited: Promise<ContainerExit> }>): Promise<void> {
    if (hook.timeout !== undefined && hook.timeout <= 0) throw new RuntimeError(`${name} hook ${hook.path}: timeout must be positive`);
    const stdinFile = path.join(dir, `.hook-stdin-${process.pid}`);
    fs.writeFileSync(stdinFile, JSON.stringify(state), { mode: 0o600 });
    const stdin = fs.openSync(stdinFile, 'r');
    fs.unlinkSync(stdinFile);
    const errFile = path.join(dir, `.hook-stderr-${process.pid}`);
    const err = fs.openSync(errFile, 'w+');
    fs.unlinkSync(errFile);
    try {
      const { pid, exited } = await spawn([stdin, err, err]);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => {
        if (hook.timeout !== undefined) timer = setTimeout(() => resolve('timeout'), hook.timeout * 1000);
      });
      const res = await Promise.race([exited, timedOut]);
      clearTimeout(timer);
      if (res === 'timeout') {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        await exited.catch(() => undefined);
        throw new RuntimeError(`${name} hook ${hook.path}: timed out after ${hook.timeout}s`);
      }
      if (res.code !== 0) {
        const buf = Buffer.alloc(4096);
        const msg = buf.subarray(0, fs.readSync(err, buf, 0, buf.length, 0)).toString().trim();
        throw new RuntimeError(`${name} hook ${hook.path} failed: ${res.code !== null ? `exit status ${res.code}` : `signal ${res.signal}`}${msg !== '' ? `: ${msg}` : ''}`);
      }
    } finally {
      fs.closeSync(stdin);
      fs.closeSync(err);
    }
  }

  /**
   * A createContainer hook (OCI): its path resolved in the runtime's mount namespace, run in
   * the container's namespaces and cgroups while the init waits before pivot_root (so the
   * rootfs is still at its host path there), as root with the runtime's capabilities, like
   * runc's hooks run by its init.
   */
  private async hookBeforePivot(initPid: number, dir: string, spec: Spec, cg: CgroupDriver, hook: Hook, state: OciState): Promise<void> {
    const nsFile: Record<string, string> = { pid: 'pid', network: 'net', ipc: 'ipc', uts: 'uts', mount: 'mnt', user: 'user', cgroup: 'cgroup', time: 'time' };
    const types = (spec.linux?.namespaces ?? []).map((n) => n.type).sort((a, b) => (a === 'user' ? -1 : b === 'user' ? 1 : 0));
    const fds: number[] = [];
    const open = (p: string, flags: number): number => {
      const fd = fs.openSync(p, flags);
      fds.push(fd);
      return fd;
    };
    try {
      const join: Array<{ fd: number; nstype: number }> = [];
      let joinPidFd: number | undefined;
      for (const t of types) {
        const fd = open(`/proc/${initPid}/ns/${nsFile[t]}`, fs.constants.O_RDONLY);
        if (t === 'pid') joinPidFd = fd;
        else join.push({ fd, nstype: CLONE_FLAGS[(t === 'network' ? 'net' : t) as keyof typeof CLONE_FLAGS] });
      }
      const args = hook.args ?? [hook.path];
      const cgroupProcsFds = cg.procsFiles().map((f) => open(f, fs.constants.O_WRONLY));
      await this.runHookProcess(dir, hook, state, 'createContainer', (stdio) => this.spawnOwned({
        cloneFlags: 0, join, joinPidFd, cgroupProcsFds,
        argv: [args[0] ?? hook.path, ...args.slice(1)], envp: hook.env ?? [], candidates: [hook.path], stdio,
      }));
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
  }

  /**
   * A startContainer hook (OCI): its path resolved in the container's root, run in the
   * container's namespaces and cgroups like an exec (after pivot_root, before the process).
   */
  private async hookInContainer(s: StoredState, hook: Hook, state: OciState, name: string): Promise<void> {
    const proc: Process = { user: { uid: 0, gid: 0 }, cwd: '/', args: [hook.path, ...(hook.args ?? [hook.path]).slice(1)], env: hook.env ?? [] };
    await this.runHookProcess(this.store.dir(s.id), hook, state, name, (stdio) => this.exec(s.id, proc, { stdio, argv0: (hook.args ?? [hook.path])[0] }));
  }

  /**
   * Starts a process that enters a container (exec, hook) as our own child: its pid is
   * registered while it waits before execve, so a daemon's orphan reaper never takes the exit
   * of a process that exits as soon as it runs; the exit promise reaps it.
   */
  private async spawnOwned(plan: ContainerPlan): Promise<{ pid: number; exited: Promise<ContainerExit> }> {
    let paused: number | undefined;
    try {
      const { pid, pidfd } = await this.sys.spawnContainer({ ...plan, pauseBeforeExec: true }, async (p) => {
        paused = p;
        this.ownPids.add(p);
      });
      this.ownPids.add(pid);
      return { pid, exited: this.sys.watchExit(pidfd).finally(() => this.ownPids.delete(pid)) };
    } catch (err) {
      if (paused !== undefined) this.ownPids.delete(paused);
      throw err;
    }
  }

  /** Runs `proc` inside the running container: its namespaces (setns), cgroups, and root. */
  async exec(id: string, proc: Process, o: { pidFile?: string; stdio?: [number, number, number]; preserveFds?: number; consoleSocket?: string; consoleFd?: number; argv0?: string } = {}): Promise<{ pid: number; exited: Promise<ContainerExit> }> {
    const s = this.store.read(checkId(id));
    const status = this.status(s);
    if (status !== 'running' && status !== 'created') throw new RuntimeError(`cannot exec in a ${status} container`);
    validateSpec({ ociVersion: '1.0.0', process: proc });
    const spec: Spec = { ...s.spec, process: proc, mounts: [], hooks: {}, hostname: undefined, domainname: undefined };
    const base = s.spec.linux?.namespaces ?? [];
    const nsFile: Record<string, string> = { pid: 'pid', network: 'net', ipc: 'ipc', uts: 'uts', mount: 'mnt', user: 'user', cgroup: 'cgroup', time: 'time' };
    spec.linux = { ...s.spec.linux, namespaces: base.map((n) => ({ type: n.type, path: `/proc/${s.pid}/ns/${nsFile[n.type]}` })), uidMappings: undefined, gidMappings: undefined, sysctl: undefined, timeOffsets: undefined };
    const cg = this.driver(s);
    // The devpts check of compilePlan looks at the container's mounts, which exec does not redo.
    const compiled = compilePlan({ spec: { ...spec, mounts: (s.spec.mounts ?? []).filter((m) => m.type === 'devpts') }, bundle: s.bundle, fifo: null, cgroupProcs: cg.procsFiles(), cgroupDirs: {}, preserveFds: o.preserveFds, stdio: o.stdio, consoleSocket: o.consoleSocket, consoleFd: o.consoleFd });
    // Setting up the container's rootfs again is not what exec does: the joined mount namespace
    // already has it.
    const plan = { ...compiled.plan, rootfs: null, ops: [], hostname: null, domainname: null, noSetsid: false };
    if (o.argv0 !== undefined) plan.argv = [o.argv0, ...plan.argv.slice(1)];
    try {
      if (pidStartTime(s.pid)?.start !== s.pidStartTime) throw new RuntimeError('container not running');
      const { pid, exited } = await this.spawnOwned(plan);
      if (o.pidFile !== undefined) fs.writeFileSync(o.pidFile, String(pid));
      return { pid, exited };
    } finally {
      for (const fd of compiled.fds) fs.closeSync(fd);
    }
  }
}

export { ConfigError, RuntimeError, SyscallError };
