// ContainerManager: the daemon's containers, driven in-process through the same Runtime as
// the berth-runtime CLI (no CLI exec on the hot path). The daemon is the parent (and a child
// subreaper) of every container, so exits and OOM kills are reported from the pidfd, not polled.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { containerSyscalls } from '@berth/native';

import { hookPids } from './hooks';
import { ConfigError, loadSpec, type Spec } from './oci/config';
import { OrphanReaper } from './reaper';
import { parseSignal, Runtime, type RuntimeOptions } from './runtime';
import { RuntimeError } from './state';

/** The annotation naming an OCI bundle to create the container from (until images, issue #8). */
export const BUNDLE_ANNOTATION = 'berth.io/oci-bundle';

export type ContainerPhase = 'created' | 'running' | 'exited';

export interface ContainerRecord {
  id: string;
  name: string;
  attempt: number;
  sandboxId: string;
  phase: ContainerPhase;
  createdAtUs: number;
  startedAtUs: number;
  finishedAtUs: number;
  exitCode: number;
  reason: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  bundle: string;
  exited: Promise<void>;
}

export interface CreateRequest {
  name: string;
  attempt?: number;
  sandboxId?: string;
  command?: string[];
  args?: string[];
  env?: Array<{ key: string; value: string }>;
  workingDir?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export type ContainerEventKind = 'created' | 'started' | 'stopped' | 'deleted' | 'oom';
export interface ContainerEventInfo {
  kind: ContainerEventKind;
  id: string;
  sandboxId: string;
  atUs: number;
  exitCode: number;
}

export class NotFound extends Error {}
export class Invalid extends Error {}
export class NeedsIssue8 extends Error {}

const nowUs = (): number => Date.now() * 1000;

export class ContainerManager {
  readonly rt: Runtime;
  readonly events = new EventEmitter();
  private readonly records = new Map<string, ContainerRecord>();
  private readonly devNull: number;
  private readonly reaper: OrphanReaper;

  constructor(opts: RuntimeOptions) {
    this.rt = new Runtime(opts);
    this.devNull = fs.openSync('/dev/null', 'r+');
    this.events.setMaxListeners(0);
    this.reaper = new OrphanReaper(opts.syscalls ?? containerSyscalls, () => new Set([...this.rt.ownPids, ...hookPids]));
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

  async create(req: CreateRequest): Promise<ContainerRecord> {
    if (req.name === '') throw new Invalid('config.metadata.name: must not be empty');
    const bundleDir = req.annotations?.[BUNDLE_ANNOTATION];
    if (bundleDir === undefined || bundleDir === '') {
      throw new NeedsIssue8(`creating a container from an image in a pod sandbox is not built yet (issue #8); pass an OCI bundle directory in annotation ${BUNDLE_ANNOTATION}`);
    }
    if (!path.isAbsolute(bundleDir)) throw new Invalid(`config.annotations.${BUNDLE_ANNOTATION}: must be an absolute path`);
    let spec: Spec;
    try {
      spec = loadSpec(bundleDir);
    } catch (err) {
      if (err instanceof ConfigError) throw new Invalid(`bundle ${bundleDir}: ${err.message}`);
      throw err;
    }
    const proc = spec.process;
    if (proc !== undefined) {
      if ((req.command?.length ?? 0) > 0 || (req.args?.length ?? 0) > 0) proc.args = [...(req.command ?? []), ...(req.args ?? [])];
      if (req.env !== undefined) proc.env = [...(proc.env ?? []), ...req.env.map((e) => `${e.key}=${e.value}`)];
      if (req.workingDir !== undefined && req.workingDir !== '') proc.cwd = req.workingDir;
      proc.terminal = false;
    }
    const id = randomBytes(16).toString('hex');
    const created = await this.rt.create(id, { bundle: bundleDir, spec, stdio: [this.devNull, this.devNull, this.devNull] });
    const rec: ContainerRecord = {
      id, name: req.name, attempt: req.attempt ?? 0, sandboxId: req.sandboxId ?? '', phase: 'created',
      createdAtUs: nowUs(), startedAtUs: 0, finishedAtUs: 0, exitCode: 0, reason: '',
      labels: req.labels ?? {}, annotations: req.annotations ?? {}, bundle: bundleDir,
      exited: created.exited.then(
        (e) => {
          rec.phase = 'exited';
          rec.finishedAtUs = nowUs();
          rec.exitCode = e.code ?? 128 + (e.signal !== null ? parseSignal(e.signal) : 9);
          rec.reason = e.oomKilled ? 'OOMKilled' : rec.exitCode === 0 ? 'Completed' : 'Error';
          if (e.oomKilled) this.emit('oom', rec);
          this.emit('stopped', rec);
        },
        () => undefined,
      ),
    };
    this.records.set(id, rec);
    this.emit('created', rec);
    return rec;
  }

  async start(id: string): Promise<void> {
    const r = this.get(id);
    if (r.phase !== 'created') throw new RuntimeError(`container ${id} is ${r.phase}, not created`);
    await this.rt.start(id);
    if (r.phase === 'created') r.phase = 'running';
    r.startedAtUs = nowUs();
    this.emit('started', r);
  }

  /** SIGTERM, then SIGKILL after `timeoutS` seconds (0: at once). */
  async stop(id: string, timeoutS: number): Promise<void> {
    const r = this.get(id);
    if (r.phase === 'exited') return;
    try {
      this.rt.kill(id, timeoutS > 0 ? 'SIGTERM' : 'SIGKILL', true);
    } catch (err) {
      if (!(err instanceof RuntimeError)) throw err;
    }
    if (timeoutS > 0) {
      const timer = new Promise<'timeout'>((res) => setTimeout(() => res('timeout'), timeoutS * 1000).unref());
      if ((await Promise.race([r.exited.then(() => 'exited' as const), timer])) === 'timeout') {
        try { this.rt.kill(id, 'SIGKILL', true); } catch { /* exited meanwhile */ }
      }
    }
    await r.exited;
  }

  async remove(id: string): Promise<void> {
    const r = this.records.get(id);
    if (r === undefined) return; // CRI: removing a missing container succeeds
    await this.rt.delete(id, true);
    await r.exited;
    this.records.delete(id);
    this.emit('deleted', r);
  }

  async close(): Promise<void> {
    this.reaper.stop();
    for (const id of [...this.records.keys()]) await this.remove(id).catch(() => undefined);
    fs.closeSync(this.devNull);
  }
}
