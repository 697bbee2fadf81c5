// The daemon's side of the monitor hosts (see monitor.ts): it starts them, sends each a
// container's job and pairs the reply with it, keeps one spare host started ahead of need, gives
// a host at most `perHost` containers, and tells when a container's exit was recorded.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';

import { containerSyscalls } from '@berth/native';

import { pidStartTime } from '../state';
import { EXIT_FILE, type HostReply, type HostRequest, type MonitorJob, type MonitorReply } from './monitor';

/** Containers per monitor host unless configured: a host that dies loses this many at most. */
export const DEFAULT_CONTAINERS_PER_MONITOR = 16;
/** How long a host may take to create a container (a slow image rootfs setup included). */
const REPLY_TIMEOUT_MS = 120_000;

/** The host's script: next to this file when built; from dist when running the sources (tests). */
export function hostScript(): string {
  const here = path.join(__dirname, 'monitor.js');
  return pickHostScript(fs.existsSync(here) ? __dirname : path.resolve(__dirname, '..', '..', 'dist', 'monitor'));
}

/**
 * The package build also bundles the host into one file (tools/bundle-cli.js): a host then
 * starts in about node + 10 ms of CPU instead of node + 50 (resolving, reading and compiling the
 * module tree). A bundle older than the compiled module (tsc run again without the bundle step)
 * holds older code: the module is taken then.
 */
export function pickHostScript(dir: string): string {
  const mod = path.join(dir, 'monitor.js');
  const bundle = path.join(dir, 'monitor.bundle.js');
  const b = fs.statSync(bundle, { throwIfNoEntry: false });
  const m = fs.statSync(mod, { throwIfNoEntry: false });
  // The build writes the bundle right after the modules; a restore from a cache writes both within moments.
  return b !== undefined && (m === undefined || m.mtimeMs <= b.mtimeMs + 1000) ? bundle : mod;
}

/** A job's create failed in the host: its error as the host reported it. */
export class MonitorJobError extends Error {
  constructor(readonly reply: MonitorReply & { ok: false }) {
    super(reply.error);
  }
}

interface Pending {
  resolve(r: MonitorReply & { ok: true }): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** One running host, as its parent daemon sees it. */
export class MonitorHostProcess {
  readonly pid: number;
  /** Its start time (/proc), which together with the pid names it across pid reuse. */
  readonly start: string;
  /** Settles when it exits. */
  readonly gone: Promise<void>;
  /** Containers given to this host (taken by a create, sent or about to be). */
  taken = 0;
  private sent = 0;
  private retired = false;
  private exited = false;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly child: ChildProcess, private readonly errLog: string) {
    this.pid = child.pid!;
    this.start = pidStartTime(this.pid)?.start ?? '';
    this.gone = new Promise<void>((resolve) => child.on('exit', (code, signal) => {
      this.exited = true;
      const why = new Error(`container monitor exited (${code ?? signal}) before it reported: ${this.log()}`);
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(why);
      }
      this.pending.clear();
      resolve();
    }));
    child.on('error', () => undefined);
    child.stdin!.on('error', () => undefined);
    const replies = readline.createInterface({ input: child.stdout!, crlfDelay: Infinity });
    replies.on('line', (line) => this.onReply(line));
  }

  alive(): boolean {
    return !this.exited;
  }

  /** Sends a job; settles with the host's reply. */
  send(job: MonitorJob): Promise<MonitorReply & { ok: true }> {
    if (this.exited) return Promise.reject(new Error(`container monitor ${this.pid} has exited: ${this.log()}`));
    const seq = ++this.seq;
    this.sent++;
    return new Promise((resolve, reject) => {
      // A host that never answers must not hold the caller forever. It is killed, which ends
      // the monitoring of its other containers too (each is then stopped and reported as lost,
      // like after any monitor death): a host stuck this long is not trusted with them.
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        this.child.kill('SIGKILL');
        reject(new Error(`container monitor did not report within ${REPLY_TIMEOUT_MS / 1000}s: ${this.log()}`));
      }, REPLY_TIMEOUT_MS);
      timer.unref();
      this.pending.set(seq, { resolve, reject, timer });
      this.child.stdin!.write(`${JSON.stringify({ seq, job } satisfies HostRequest)}\n`);
    });
  }

  private onReply(line: string): void {
    let r: HostReply;
    try {
      r = JSON.parse(line) as HostReply;
    } catch {
      return;
    }
    const p = this.pending.get(r.seq);
    if (p === undefined) return;
    this.pending.delete(r.seq);
    clearTimeout(p.timer);
    if (r.ok) p.resolve(r);
    else p.reject(new MonitorJobError(r));
    this.endIfRetired();
  }

  /** A container taken for this host will not be sent after all. */
  untake(): void {
    this.taken--;
    this.endIfRetired();
  }

  /** No more jobs for this host: once the replies are in, its stdin ends and it exits after its last container. */
  retire(): void {
    this.retired = true;
    this.endIfRetired();
  }

  private endIfRetired(): void {
    if (!this.retired || this.pending.size > 0 || this.sent < this.taken || this.child.stdin!.writableEnded) return;
    this.child.stdin!.end();
    this.child.stdout!.destroy();
    // Its exit is still seen while the daemon runs; it no longer keeps the daemon's loop alive.
    this.child.unref();
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }

  /** The tail of the hosts' shared stderr log, for error messages. */
  log(): string {
    try {
      return fs.readFileSync(this.errLog, 'utf8').trim().slice(-2000);
    } catch {
      return '';
    }
  }
}

export interface MonitorHostsOptions {
  /** Where the hosts' stderr goes (monitors.log). */
  errLog: string;
  /** Containers per host (>= 1; 1 gives each container a monitor process of its own). */
  perHost: number;
}

/** The hosts of a daemon: the one taking jobs now and a spare started ahead of need. */
export class MonitorHosts {
  /** Pids of the hosts that are our children (libuv reaps them; the orphan reaper must not). */
  readonly pids = new Set<number>();
  private current: MonitorHostProcess | undefined;
  private spare: MonitorHostProcess | undefined;
  private closed = false;

  constructor(private readonly opts: MonitorHostsOptions) {
    if (!Number.isInteger(opts.perHost) || opts.perHost < 1) throw new RangeError(`containers per monitor: expected an integer >= 1, got ${opts.perHost}`);
  }

  private spawnHost(): MonitorHostProcess {
    const errLog = fs.openSync(this.opts.errLog, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [hostScript()], { detached: true, stdio: ['pipe', 'pipe', errLog] });
    } finally {
      fs.closeSync(errLog);
    }
    const host = new MonitorHostProcess(child, this.opts.errLog);
    this.pids.add(host.pid);
    void host.gone.then(() => this.pids.delete(host.pid));
    return host;
  }

  /**
   * Sends a job to a host with room for it; `beforeSend` sees the host first (the caller records
   * which host runs the container before the container can exist). When the spare becomes the
   * host taking jobs, a new spare starts in the next tick, so a burst finds the next host already
   * started when this one is full.
   */
  run(job: MonitorJob, beforeSend: (host: MonitorHostProcess) => void): Promise<MonitorReply & { ok: true }> {
    if (this.current === undefined || !this.current.alive()) {
      let next = this.spare;
      this.spare = undefined;
      if (next === undefined || !next.alive()) next = this.spawnHost();
      this.current = next;
      setImmediate(() => {
        if (this.spare === undefined && !this.closed) this.spare = this.spawnHost();
      });
    }
    const host = this.current;
    host.taken++;
    if (host.taken >= this.opts.perHost) {
      // Full: its stdin ends once this job is sent and every reply is in.
      this.current = undefined;
      host.retire();
    }
    try {
      beforeSend(host);
    } catch (err) {
      host.untake();
      throw err;
    }
    return host.send(job);
  }

  /** Shutdown: the spare goes; the host taking jobs takes no more and exits after its containers. */
  async close(): Promise<void> {
    this.closed = true;
    const spare = this.spare;
    this.spare = undefined;
    this.current?.retire();
    this.current = undefined;
    if (spare !== undefined && spare.alive()) {
      spare.kill();
      await spare.gone;
    }
  }
}

/** A host that is not our child (a previous daemon's): it is gone when its pidfd turns readable. */
export function watchForeignHost(pid: number): Promise<void> {
  let fd: number;
  try {
    fd = containerSyscalls.pidfdOpen(pid);
  } catch {
    return Promise.resolve();
  }
  // Not our child: the pidfd turns readable at its exit (waitid then says ECHILD).
  return containerSyscalls.watchExit(fd).then(() => undefined, () => undefined);
}

/**
 * Settles when the container's exit is recorded in `dir` (the host renames exit.json into place)
 * or its host is gone (then exit.json is there or never will be).
 */
export function exitRecorded(dir: string, hostGone: Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let watcher: fs.FSWatcher | undefined;
    let settled = false;
    const done = (): void => {
      if (settled) return;
      settled = true;
      watcher?.close();
      resolve();
    };
    try {
      watcher = fs.watch(dir, { persistent: false }, (_event, name) => {
        if (name === EXIT_FILE) done();
      });
      watcher.on('error', done);
    } catch {
      done();
      return;
    }
    // Watched first, then looked at: an exit recorded in between is not missed.
    if (fs.existsSync(path.join(dir, EXIT_FILE))) done();
    void hostGone.then(done);
  });
}
