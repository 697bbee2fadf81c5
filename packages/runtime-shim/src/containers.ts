// ContainerManager: the daemon's containers. Each container has a monitor (a host process that
// serves up to --containers-per-monitor containers, see monitor/monitor.ts) that creates it
// through the runtime library, is its init's parent, holds its stdio, writes its CRI log and
// records its exit; so a kill -9 of the daemon stops no container and loses no exit status.
// The daemon keeps a small record per container on disk (meta.json, written atomically;
// "creating" until the container exists) and, on restart, rebuilds its view from those records,
// the monitors' exit files and the kernel, removing what a crash left half-made.
//
// Containers come from an image in a pod sandbox (the CRI path), or from an OCI bundle named
// by the berth.io/oci-bundle annotation (the issue #5 path, kept for tools and tests).
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { runtime } from '@berth/api';
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from '@berth/common';
import { containerSyscalls, native } from '@berth/native';

import { ociResources } from './cri/resources';
import { buildSpec, type ImageConfig } from './cri/spec';
import { hookPids } from './hooks';
import type { ImageStore } from './images';
import { DEFAULT_ROTATE, type RotateOptions } from './logs/cri-log';
import { DEFAULT_CONTAINERS_PER_MONITOR, exitRecorded, MonitorHosts, MonitorJobError, watchForeignHost } from './monitor/hosts';
import type { ExitRecord, MonitorJob, MonitorReply } from './monitor/monitor';
import { EXIT_FILE } from './monitor/monitor';
import { ConfigError, loadSpec, type Spec } from './oci/config';
import { OrphanReaper } from './reaper';
import { parseSignal, Runtime } from './runtime';
import { POD_INIT_PREFIX, unmountAll, type SandboxManager } from './sandbox/sandbox';
import { pidStartTime, removeFlatDir, RuntimeError } from './state';

/** The annotation naming an OCI bundle to create the container from (instead of an image). */
export const BUNDLE_ANNOTATION = 'berth.io/oci-bundle';
/** Per-container log rotation: bytes per file, and files kept (the live one included). */
export const LOG_MAX_SIZE_ANNOTATION = 'berth.io/log-max-size';
export const LOG_MAX_FILES_ANNOTATION = 'berth.io/log-max-files';

export type ContainerPhase = 'created' | 'running' | 'exited';

/** What meta.json holds: everything needed to rebuild the record after a restart. */
export interface ContainerMeta {
  id: string;
  name: string;
  attempt: number;
  sandboxId: string;
  state: 'creating' | 'created';
  createdAtUs: number;
  startedAtUs: number;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  image: { image: string; annotations: Record<string, string> };
  imageRef: string;
  imageId: string;
  logPath: string;
  bundle: string;
  /** The overlay rootfs this daemon mounted ('' for a bundle's own rootfs). */
  rootfs: string;
  monitorPid: number;
  monitorStart: string;
  stopSignal: string;
  /** runtime.Mount JSON of the config, for ContainerStatus. */
  mounts: unknown[];
  /** runtime.LinuxContainerResources JSON. */
  resources: unknown;
}

export interface ContainerRecord extends ContainerMeta {
  phase: ContainerPhase;
  /** A bundle container run by the daemon itself (no monitor): fast, but not crash-safe. */
  inProcess?: boolean;
  finishedAtUs: number;
  exitCode: number;
  reason: string;
  message: string;
  dir: string;
  exited: Promise<void>;
  /** A start() in progress: the exit is settled (and STOPPED sent) only after it (STARTED). */
  starting?: Promise<void>;
}

export interface CreateRequest {
  sandboxId?: string;
  config: runtime.ContainerConfig;
}

export type ContainerEventKind = 'created' | 'started' | 'stopped' | 'deleted' | 'oom';
export interface ContainerEventInfo {
  kind: ContainerEventKind;
  id: string;
  sandboxId: string;
  atUs: number;
  exitCode: number;
}

export class NotFound extends NotFoundError {}
export class Invalid extends InvalidArgumentError {
  constructor(message: string) {
    super(undefined, message);
  }
}

const nowUs = (): number => Date.now() * 1000;
const ID = /^[0-9a-f]{64}$/;
/** The name a removed bundle container's dir has until it is emptied (see destroy()). */
const TRASH_PREFIX = '.removed-';
const TRASH_DELAY_MS = 5;
/** Bundles whose validated config.json is kept (loadBundleSpec()). */
const SPEC_CACHE_SIZE = 32;

export interface ContainerManagerOptions {
  /** The daemon's state dir: containers/ (runtime state) and cri/ (records) go below. */
  stateDir: string;
  images?: ImageStore;
  sandboxes?: SandboxManager;
  rotate?: RotateOptions;
  warn?: (msg: string) => void;
  /** Containers per monitor host (default 16; 1: a monitor process per container). */
  containersPerMonitor?: number;
}

function writeAtomic(file: string, data: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, data, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function exitCodeOf(e: { code: number | null; signal: string | null }): number {
  if (e.code !== null) return e.code;
  try {
    return 128 + (e.signal !== null ? parseSignal(e.signal) : 9);
  } catch {
    return 137;
  }
}

function positiveInt(v: string | undefined, field: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v)) throw new InvalidArgumentError(field, `expected a non-negative integer, got '${v}'`);
  return Number(v);
}

export class ContainerManager {
  readonly rt: Runtime;
  readonly events = new EventEmitter();
  readonly criRoot: string;
  private readonly records = new Map<string, ContainerRecord>();
  private readonly reaper: OrphanReaper;
  /** The monitor hosts this daemon started (their pids: libuv reaps them, the orphan reaper must not). */
  private readonly monitors: MonitorHosts;
  private readonly warn: (msg: string) => void;
  private readonly devNull: number;
  /** (sandbox, name, attempt) of creates in flight. */
  private readonly naming = new Set<string>();
  /** Validated bundle specs by bundle dir (loadBundleSpec()). */
  private readonly specs = new Map<string, { key: string; spec: Spec }>();
  /** Removed containers' dirs waiting to be emptied, by their timers. */
  private readonly trash = new Map<NodeJS.Timeout, string>();
  /** The sandboxes containers are created in (set once, at setup). */
  sandboxes: SandboxManager | undefined;

  constructor(private readonly opts: ContainerManagerOptions) {
    this.devNull = fs.openSync('/dev/null', 'r+');
    this.sandboxes = opts.sandboxes;
    // Two pooled cgroups: the bundle containers the daemon runs itself skip the cgroup setup.
    this.rt = new Runtime({ root: path.join(opts.stateDir, 'containers'), cgroupPool: 2 });
    this.criRoot = path.join(opts.stateDir, 'cri');
    fs.mkdirSync(this.criRoot, { recursive: true, mode: 0o711 });
    this.warn = opts.warn ?? (() => undefined);
    this.events.setMaxListeners(0);
    this.monitors = new MonitorHosts({ errLog: path.join(opts.stateDir, 'monitors.log'), perHost: opts.containersPerMonitor ?? DEFAULT_CONTAINERS_PER_MONITOR });
    this.reaper = new OrphanReaper(containerSyscalls, () => new Set([...this.rt.ownPids, ...hookPids, ...this.monitors.pids]), () => this.rt.initsInFlight > 0);
  }

  /** Reap orphans reparented to this (subreaper) process. */
  startReaper(): void {
    this.reaper.start();
  }

  private emit(kind: ContainerEventKind, r: ContainerRecord): void {
    this.events.emit('event', { kind, id: r.id, sandboxId: r.sandboxId, atUs: nowUs(), exitCode: r.exitCode } satisfies ContainerEventInfo);
  }

  get(id: string): ContainerRecord {
    const r = this.records.get(id);
    if (r === undefined) throw new NotFound(`container ${id} not found`);
    return r;
  }

  list(): ContainerRecord[] {
    return [...this.records.values()];
  }

  private save(r: ContainerMeta & { dir?: string }): void {
    const meta: ContainerMeta = {
      id: r.id, name: r.name, attempt: r.attempt, sandboxId: r.sandboxId, state: r.state, createdAtUs: r.createdAtUs, startedAtUs: r.startedAtUs,
      labels: r.labels, annotations: r.annotations, image: r.image, imageRef: r.imageRef, imageId: r.imageId, logPath: r.logPath, bundle: r.bundle,
      rootfs: r.rootfs, monitorPid: r.monitorPid, monitorStart: r.monitorStart, stopSignal: r.stopSignal, mounts: r.mounts, resources: r.resources,
    };
    writeAtomic(path.join(this.criRoot, r.id, 'meta.json'), JSON.stringify(meta));
  }

  private rotateFor(annotations: Record<string, string>): RotateOptions {
    const base = this.opts.rotate ?? DEFAULT_ROTATE;
    const maxSize = positiveInt(annotations[LOG_MAX_SIZE_ANNOTATION], `config.annotations.${LOG_MAX_SIZE_ANNOTATION}`) ?? base.maxSize;
    const maxFiles = positiveInt(annotations[LOG_MAX_FILES_ANNOTATION], `config.annotations.${LOG_MAX_FILES_ANNOTATION}`) ?? base.maxFiles;
    if (maxFiles < 1) throw new InvalidArgumentError(`config.annotations.${LOG_MAX_FILES_ANNOTATION}`, 'must be at least 1');
    return { maxSize, maxFiles };
  }

  /**
   * `startAtOnce`: the init does not hold for a start() where the runtime allows it (a bundle
   * container of the daemon without startContainer hooks); the record is then running (or
   * exited) when this returns, and the created and started events are both out.
   */
  async create(req: CreateRequest, o: { startAtOnce?: boolean } = {}): Promise<ContainerRecord> {
    const cfg = req.config;
    const name = cfg.metadata?.name ?? '';
    if (name === '') throw new InvalidArgumentError('config.metadata.name', 'must not be empty');
    const sandboxId = req.sandboxId ?? '';
    const bundleDir = cfg.annotations[BUNDLE_ANNOTATION];
    const sandbox = sandboxId !== '' && this.sandboxes !== undefined ? this.sandboxes.find(sandboxId) : undefined;
    if (bundleDir === undefined) {
      if (sandboxId === '') throw new InvalidArgumentError('pod_sandbox_id', `is required (or name an OCI bundle in annotation ${BUNDLE_ANNOTATION})`);
      if (sandbox === undefined) throw new NotFoundError(`pod sandbox ${sandboxId} not found`);
      if (sandbox.state !== 'ready') throw new FailedPreconditionError(`pod sandbox ${sandboxId} is not ready`);
      if ((cfg.image?.image ?? '') === '') throw new InvalidArgumentError('config.image.image', 'is required');
    } else if (!path.isAbsolute(bundleDir)) {
      throw new InvalidArgumentError(`config.annotations.${BUNDLE_ANNOTATION}`, 'must be an absolute path');
    }
    const attempt = cfg.metadata?.attempt ?? 0;
    const key = JSON.stringify([sandboxId, name, attempt]);
    if (sandboxId !== '' && (this.naming.has(key) || this.list().some((r) => r.sandboxId === sandboxId && r.name === name && r.attempt === attempt))) {
      throw new AlreadyExistsError(`container "${name}" attempt ${attempt} already exists in pod sandbox ${sandboxId}`);
    }
    // Held until the record exists, so two concurrent creates cannot both take the name.
    if (sandboxId !== '') this.naming.add(key);
    try {
      return await this.createNamed(cfg, name, attempt, sandboxId, sandbox, bundleDir, o.startAtOnce === true);
    } finally {
      this.naming.delete(key);
    }
  }

  private async createNamed(cfg: runtime.ContainerConfig, name: string, attempt: number, sandboxId: string, sandbox: ReturnType<SandboxManager['find']>, bundleDir: string | undefined, startAtOnce: boolean): Promise<ContainerRecord> {
    let logPath = '';
    if (cfg.logPath !== '') {
      if (sandbox === undefined || sandbox.logDirectory === '') throw new InvalidArgumentError('config.log_path', 'needs a sandbox with a log_directory');
      if (path.isAbsolute(cfg.logPath) || cfg.logPath.split('/').includes('..')) throw new InvalidArgumentError('config.log_path', `must be relative to the sandbox's log_directory without "..", got '${cfg.logPath}'`);
      logPath = path.join(sandbox.logDirectory, cfg.logPath);
    }
    const rotate = this.rotateFor(cfg.annotations);

    const id = randomBytes(32).toString('hex');
    const dir = path.join(this.criRoot, id);
    const rec: ContainerRecord = {
      id, name, attempt, sandboxId, state: 'creating', createdAtUs: nowUs(), startedAtUs: 0, labels: { ...cfg.labels }, annotations: { ...cfg.annotations },
      image: { image: cfg.image?.image ?? '', annotations: { ...cfg.image?.annotations } }, imageRef: '', imageId: '', logPath, bundle: bundleDir ?? dir, rootfs: '',
      monitorPid: 0, monitorStart: '', stopSignal: 'SIGTERM', mounts: cfg.mounts.map((m) => runtime.Mount.toJSON(m)),
      resources: runtime.LinuxContainerResources.toJSON(runtime.LinuxContainerResources.fromPartial(cfg.linux?.resources ?? {})),
      phase: 'created', finishedAtUs: 0, exitCode: 0, reason: '', message: '', dir, exited: Promise.resolve(),
    };
    fs.mkdirSync(dir, { mode: 0o711 });
    // A dir without meta.json is a half-made container to recovery, as one whose record says
    // "creating": a bundle container takes nothing that needs its record to be undone (no
    // rootfs mount, no image lease), so its first record is the "created" one below.
    if (bundleDir === undefined) this.save(rec);
    try {
      let spec: Spec;
      if (bundleDir !== undefined) {
        spec = this.bundleSpec(bundleDir, cfg);
      } else {
        const images = this.opts.images;
        if (images === undefined) throw new FailedPreconditionError('this runtime has no image store');
        const image = images.find(cfg.image!.image);
        if (image === undefined) throw new NotFoundError(`image "${cfg.image!.image}" is not present; pull it first`);
        rec.imageId = image.id;
        rec.imageRef = image.repoDigests[0] ?? image.id;
        const imageCfg = (JSON.parse(images.content.readBuffer(image.id).toString('utf8')) as { config?: ImageConfig }).config ?? {};
        if (imageCfg.StopSignal !== undefined && imageCfg.StopSignal !== '') rec.stopSignal = imageCfg.StopSignal;
        const prepared = await images.prepareRootfs(id, image.id, dir);
        const rootfs = path.join(dir, 'rootfs');
        fs.mkdirSync(rootfs, { mode: 0o755 });
        rec.rootfs = rootfs;
        this.save(rec);
        this.mountOverlay(rootfs, prepared.options, prepared.cwd);
        spec = buildSpec({ id, cfg, image: imageCfg, sandbox: sandbox!, rootfs, dir });
      }
      if (bundleDir !== undefined && logPath === '') {
        // The tool/test path of issue #5: the daemon is the parent, the output goes nowhere.
        const created = await this.rt.create(id, { bundle: rec.bundle, spec, stdio: [this.devNull, this.devNull, this.devNull], startAtOnce });
        rec.inProcess = true;
        if (created.started) {
          rec.startedAtUs = nowUs();
          rec.phase = 'running';
        }
        rec.exited = created.exited.then(
          (e) => this.settleExit(rec, { code: e.code, signal: e.signal, oomKilled: e.oomKilled, finishedAtUs: nowUs() }),
          () => this.settleExit(rec),
        );
      } else {
        await this.startMonitor(rec, { id, runtimeRoot: this.rt.store.root, bundle: rec.bundle, spec, dir, logPath, rotate });
      }
      rec.state = 'created';
      this.save(rec);
    } catch (err) {
      await this.destroy(rec).catch((e: Error) => this.warn(`container ${id}: cleanup after a failed create: ${e.message}`));
      throw err;
    }
    this.records.set(id, rec);
    this.emit('created', rec);
    if (rec.startedAtUs !== 0) {
      // Before the hooks: the exit may come while they run, and its event goes after this one.
      this.emit('started', rec);
      await this.rt.poststart(id);
    }
    return rec;
  }

  /**
   * loadSpec() of a bundle, kept while its config.json is the same file with the same size,
   * mtime and ctime: a bundle run again and again (a tool's, a test's) is not read, parsed and
   * validated each time (~0.15 ms). Each caller gets its own copy to change.
   */
  private loadBundleSpec(bundleDir: string): Spec {
    let key: string | undefined;
    try {
      const st = fs.statSync(path.join(bundleDir, 'config.json'), { bigint: true });
      key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    } catch {
      key = undefined; // loadSpec() reports it
    }
    const hit = key !== undefined ? this.specs.get(bundleDir) : undefined;
    if (hit !== undefined && hit.key === key) return structuredClone(hit.spec);
    const spec = loadSpec(bundleDir);
    if (key !== undefined) {
      this.specs.delete(bundleDir);
      if (this.specs.size >= SPEC_CACHE_SIZE) this.specs.delete(this.specs.keys().next().value!);
      this.specs.set(bundleDir, { key, spec: structuredClone(spec) });
    }
    return spec;
  }

  private bundleSpec(bundleDir: string, cfg: runtime.ContainerConfig): Spec {
    let spec: Spec;
    try {
      spec = this.loadBundleSpec(bundleDir);
    } catch (err) {
      if (err instanceof ConfigError) throw new InvalidArgumentError(`config.annotations.${BUNDLE_ANNOTATION}`, `bundle ${bundleDir}: ${err.message}`);
      throw err;
    }
    const proc = spec.process;
    if (proc !== undefined) {
      if (cfg.command.length > 0 || cfg.args.length > 0) proc.args = [...cfg.command, ...cfg.args];
      if (cfg.envs.length > 0) proc.env = [...(proc.env ?? []), ...cfg.envs.map((e) => `${e.key}=${e.value}`)];
      if (cfg.workingDir !== '') proc.cwd = cfg.workingDir;
      proc.terminal = false;
    }
    return spec;
  }

  /** Mounts the overlay; relative lower dirs (deep images) are resolved from `cwd`. */
  private mountOverlay(target: string, options: string, cwd: string | undefined): void {
    const back = process.cwd();
    if (cwd !== undefined) process.chdir(cwd);
    try {
      native.mount('overlay', target, 'overlay', ['nodev'], options);
    } finally {
      if (cwd !== undefined) process.chdir(back);
    }
  }

  /** Hands the container's job to a monitor host; its exit is watched from then on. */
  private async startMonitor(rec: ContainerRecord, job: MonitorJob): Promise<MonitorReply & { ok: true }> {
    let gone: Promise<void> = Promise.resolve();
    try {
      // Saved with the "created" record after the reply: a record still "creating" is removed
      // by recovery without asking its monitor (which removes a late create itself).
      const reply = await this.monitors.run(job, (host) => {
        rec.monitorPid = host.pid;
        rec.monitorStart = host.start;
        gone = host.gone;
      });
      rec.exited = exitRecorded(rec.dir, gone).then(() => this.settleExit(rec));
      return reply;
    } catch (err) {
      if (!(err instanceof MonitorJobError)) throw err;
      const msg = err.message;
      if (err.reply.kind === 'ConfigError') throw new InvalidArgumentError(undefined, msg);
      if (err.reply.kind === 'RuntimeError' || err.reply.kind === 'SyscallError') throw new FailedPreconditionError(msg);
      throw new Error(`container monitor: ${msg}`);
    }
  }

  /** The monitor is gone: take the exit it recorded, or note that it was lost. */
  private async settleExit(rec: ContainerRecord, known?: ExitRecord): Promise<void> {
    // A process that exits at once can be seen gone before its start has returned.
    if (rec.starting !== undefined) await rec.starting;
    if (rec.phase === 'exited') return;
    let e = known;
    if (e === undefined) {
      try {
        e = JSON.parse(fs.readFileSync(path.join(rec.dir, EXIT_FILE), 'utf8')) as ExitRecord;
      } catch {
        e = undefined;
      }
    }
    if (e === undefined) {
      // The monitor died without recording an exit (killed): nobody holds the container's
      // output or can report its status any more, so it is stopped and marked as lost.
      try { this.rt.kill(rec.id, 'SIGKILL', true); } catch { /* not running */ }
      rec.exitCode = 255;
      rec.reason = 'Error';
      rec.message = 'the container monitor died; the exit status was lost';
      rec.finishedAtUs = nowUs();
    } else {
      rec.exitCode = exitCodeOf(e);
      rec.reason = e.oomKilled ? 'OOMKilled' : rec.exitCode === 0 ? 'Completed' : 'Error';
      rec.finishedAtUs = e.finishedAtUs;
    }
    rec.phase = 'exited';
    if (e?.oomKilled === true) this.emit('oom', rec);
    this.emit('stopped', rec);
  }

  async start(id: string): Promise<void> {
    const r = this.get(id);
    if (r.phase !== 'created') throw new FailedPreconditionError(`container ${id} is ${r.phase}, not created`);
    if (r.starting !== undefined) throw new FailedPreconditionError(`container ${id} is being started`);
    const starting = this.startNow(r);
    r.starting = starting.then(() => undefined, () => undefined);
    try {
      await starting;
    } finally {
      r.starting = undefined;
    }
  }

  /** start() once checked: settles after the STARTED event (an exit waits for it: settleExit). */
  private async startNow(r: ContainerRecord): Promise<void> {
    // Taken before the release: never after the exit that may follow at once.
    const startedAtUs = nowUs();
    try {
      await this.rt.start(r.id);
    } catch (err) {
      if (err instanceof RuntimeError) throw new FailedPreconditionError(err.message);
      throw err;
    }
    r.startedAtUs = startedAtUs;
    if (r.phase === 'created') r.phase = 'running';
    // The daemon's own bundle containers do not outlive it (a restarted daemon kills them and
    // records their exit as lost, started or not): their record need not follow the start.
    if (r.inProcess !== true) this.save(r);
    this.emit('started', r);
  }

  /**
   * create, then start at once and, with `remove`, remove after the exit (what `runc run` and
   * `docker run --rm` do). Only the create is awaited here: the start and the removal go on
   * whether or not the caller stays to see them. A failed start removes the container.
   * `removed` settles once the container has exited (and, with `remove`, is gone): true if it
   * was removed.
   */
  async run(req: CreateRequest, remove: boolean): Promise<{ rec: ContainerRecord; started: Promise<void>; removed: Promise<boolean> }> {
    const rec = await this.create(req, { startAtOnce: true });
    let startFailed = false;
    const started = (rec.startedAtUs !== 0 ? Promise.resolve() : this.start(rec.id)).catch(async (err: unknown) => {
      startFailed = true;
      await this.remove(rec.id).catch((e: Error) => this.warn(`container ${rec.id}: removal after a failed start: ${e.message}`));
      throw err;
    });
    const removed = started.then(() => rec.exited).then(async () => {
      if (!remove) return false;
      await this.remove(rec.id);
      return true;
    });
    // Nobody may be left to see these (the caller went away): a failed removal is logged.
    started.catch(() => undefined);
    removed.catch((e: Error) => { if (!startFailed) this.warn(`container ${rec.id}: removal after its exit: ${e.message}`); });
    return { rec, started, removed };
  }

  private signal(r: ContainerRecord, sig: string | number): void {
    try {
      this.rt.kill(r.id, sig, true);
    } catch (err) {
      if (!(err instanceof RuntimeError)) throw err;
    }
  }

  /** The stop signal (the image's StopSignal, else SIGTERM), then SIGKILL after `timeoutS` (0: at once). */
  async stop(id: string, timeoutS: number): Promise<void> {
    const r = this.get(id);
    if (r.phase === 'exited') return;
    if (timeoutS > 0 && r.phase === 'running') {
      this.signal(r, r.stopSignal);
      let timer: NodeJS.Timeout | undefined;
      const t = new Promise<'timeout'>((res) => { timer = setTimeout(() => res('timeout'), timeoutS * 1000); });
      const won = await Promise.race([r.exited.then(() => 'exited' as const), t]);
      clearTimeout(timer);
      if (won === 'exited') return;
    }
    this.signal(r, 'SIGKILL');
    await r.exited;
  }

  async remove(id: string): Promise<void> {
    const r = this.records.get(id);
    if (r === undefined) return; // CRI: removing a missing container succeeds
    if (r.phase !== 'exited') {
      this.signal(r, 'SIGKILL');
      await r.exited;
    }
    await this.destroy(r);
    this.records.delete(id);
    this.emit('deleted', r);
  }

  /** Removes what a container made: runtime state and cgroup, rootfs mount, snapshot lease, dir. */
  private async destroy(r: ContainerMeta & { dir: string }): Promise<void> {
    try {
      await this.rt.delete(r.id, true);
    } catch (err) {
      if (!(err instanceof RuntimeError) || !/does not exist/.test(err.message)) throw err;
    }
    // A container from an OCI bundle mounted nothing under its dir and took no image lease: no
    // scan of the mount table (it grows with the node's pods) on its remove.
    const fromBundle = r.bundle !== '' && r.bundle !== r.dir && r.rootfs === '' && r.imageId === '';
    if (!fromBundle) {
      unmountAll(r.dir);
      if (r.rootfs !== '' || r.imageId !== '') await this.opts.images?.removeRootfs(r.id, r.dir);
      else await this.opts.images?.release(r.id);
      removeFlatDir(r.dir);
      return;
    }
    // Its dir holds only files: renamed out of the way now (one syscall; recovery skips such
    // names and clears them), emptied once the answer has gone out. Its removal took the event
    // loop ~0.15 ms between the remove and its answer.
    const trash = path.join(this.criRoot, `${TRASH_PREFIX}${path.basename(r.dir)}`);
    try {
      fs.renameSync(r.dir, trash);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const t = setTimeout(() => this.clearTrash(t), TRASH_DELAY_MS);
    this.trash.set(t, trash);
  }

  /** Empties a removed container's renamed dir (all of them with no timer: close()). */
  private clearTrash(t?: NodeJS.Timeout): void {
    for (const [timer, dir] of [...this.trash]) {
      if (t !== undefined && timer !== t) continue;
      clearTimeout(timer);
      this.trash.delete(timer);
      try {
        removeFlatDir(dir);
      } catch (err) {
        this.warn(`${dir}: ${(err as Error).message}`);
      }
    }
  }

  /** Rebuilds the records from disk and the kernel after a (re)start. */
  async recover(): Promise<void> {
    const known = new Set<string>();
    /** One watch per monitor host of a previous daemon, shared by its containers. */
    const hosts = new Map<number, Promise<void>>();
    for (const id of fs.readdirSync(this.criRoot)) {
      if (id.startsWith(TRASH_PREFIX)) {
        // Removed by a daemon that stopped before it emptied the dir.
        try { removeFlatDir(path.join(this.criRoot, id)); } catch (e) { this.warn(`${id}: ${(e as Error).message}`); }
        continue;
      }
      if (!ID.test(id)) continue;
      const dir = path.join(this.criRoot, id);
      let meta: ContainerMeta | undefined;
      try {
        meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8')) as ContainerMeta;
      } catch {
        meta = undefined;
      }
      if (meta === undefined || meta.state === 'creating') {
        // Half-made by a daemon that crashed: its monitor host may hold a container already,
        // which the destroy kills (the host serves other containers and stays). A create still
        // running in the host when the daemon died is undone by the host itself.
        await this.destroy({ ...(meta ?? this.blankMeta(id)), dir }).catch((e: Error) => this.warn(`container ${id}: cleanup of a half-made container: ${e.message}`));
        continue;
      }
      known.add(id);
      const rec: ContainerRecord = { ...meta, phase: 'created', finishedAtUs: 0, exitCode: 0, reason: '', message: '', dir, exited: Promise.resolve() };
      this.records.set(id, rec);
      const alive = meta.monitorPid > 0 && pidStartTime(meta.monitorPid)?.start === meta.monitorStart;
      if (!alive) {
        await this.settleExit(rec);
        continue;
      }
      let status = 'stopped';
      try { status = this.rt.state(id).status; } catch { /* no state */ }
      if (status === 'running' || status === 'paused') {
        rec.phase = 'running';
        if (rec.startedAtUs === 0) rec.startedAtUs = nowUs();
      }
      let gone = hosts.get(meta.monitorPid);
      if (gone === undefined) hosts.set(meta.monitorPid, (gone = watchForeignHost(meta.monitorPid)));
      rec.exited = exitRecorded(dir, gone).then(() => this.settleExit(rec));
    }
    // Runtime state nobody has a record of (a create cut short between the two).
    // (The inits of shared pid namespaces are the sandboxes' own.)
    for (const id of this.rt.store.ids()) if (!known.has(id) && !id.startsWith(POD_INIT_PREFIX)) await this.rt.delete(id, true).catch(() => undefined);
  }

  private blankMeta(id: string): ContainerMeta {
    return {
      id, name: '', attempt: 0, sandboxId: '', state: 'creating', createdAtUs: 0, startedAtUs: 0, labels: {}, annotations: {}, image: { image: '', annotations: {} },
      imageRef: '', imageId: '', logPath: '', bundle: '', rootfs: '', monitorPid: 0, monitorStart: '', stopSignal: 'SIGTERM', mounts: [], resources: {},
    };
  }

  /** New cgroup limits for a running container, kept in its record for ContainerStatus. */
  async updateResources(id: string, linux: runtime.LinuxContainerResources | undefined): Promise<void> {
    const r = this.get(id);
    if (r.phase === 'exited') throw new FailedPreconditionError(`container ${id} has exited`);
    try {
      await this.rt.update(id, ociResources(linux, 'linux'));
    } catch (err) {
      if (err instanceof RuntimeError) throw new FailedPreconditionError(err.message);
      throw err;
    }
    r.resources = runtime.LinuxContainerResources.toJSON(runtime.LinuxContainerResources.fromPartial(linux ?? {}));
    this.save(r);
  }

  /** Sends SIGUSR1 to the monitor host, which reopens the log files it writes (this one among them). */
  reopenLog(id: string): void {
    const r = this.get(id);
    if (r.phase !== 'running') throw new FailedPreconditionError(`container ${id} is not running`);
    if (r.logPath === '') throw new FailedPreconditionError(`container ${id} has no log path`);
    if (pidStartTime(r.monitorPid)?.start !== r.monitorStart) throw new FailedPreconditionError(`container ${id} has no monitor`);
    process.kill(r.monitorPid, 'SIGUSR1');
  }

  /**
   * On shutdown the containers with monitors keep running (a new daemon takes them over); the
   * daemon's own bundle containers cannot be, and are removed.
   */
  async close(): Promise<void> {
    await this.monitors.close();
    for (const r of this.list()) if (r.inProcess === true) await this.remove(r.id).catch(() => undefined);
    await this.rt.close();
    this.clearTrash();
    this.reaper.stop();
    fs.closeSync(this.devNull);
  }
}
