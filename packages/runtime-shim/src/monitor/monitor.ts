// The container monitor host: one small process that is the parent of the inits of up to N
// containers (the conmon / containerd-shim design, shared), so that a kill -9 of the daemon
// neither stops a container nor loses its exit status. For each container it
// - creates it through the runtime library (so it is the init's parent and reaper),
// - holds the read ends of its stdout/stderr and writes them to its CRI log,
// - writes its exit.json (code, signal, OOM kill, time) atomically when the init exits.
// SIGUSR1 (ReopenContainerLog) reopens every log it holds.
//
// One Node process per container cost ~60 ms of CPU and ~50 MB of memory each: a burst of 100
// pods spent seconds of CPU on Node start-ups alone. A host serves many containers; the daemon
// bounds how many (--containers-per-monitor), since a host that dies takes the monitoring of all
// of its containers with it.
//
// Protocol: the daemon writes one JSON HostRequest per line on stdin and reads one JSON
// HostReply per request on stdout. When stdin ends, no more jobs come (the daemon retired this
// host, or died): the host exits after its last container. A container whose create finishes
// after the daemon went away is killed, because no record will ever name it (the daemon's
// recovery removes records still "creating").
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as readline from 'node:readline';

import { loadNativeBinding, recvFd, socketpair } from '@berth/native';

import { CriLogWriter, type LogStream, type RotateOptions } from '../logs/cri-log';
import type { Spec } from '../oci/config';
import { Runtime } from '../runtime';
import { pipePair } from './pipes';

export interface MonitorJob {
  id: string;
  /** --root of the runtime library (container state). */
  runtimeRoot: string;
  bundle: string;
  spec: Spec;
  /** Directory for exit.json. */
  dir: string;
  /** CRI log file; '' discards the output. */
  logPath: string;
  rotate: RotateOptions;
}

export type MonitorReply = { ok: true; pid: number; /** Time from the job to the container created (diagnostics). */ createMs: number } | { ok: false; error: string; kind: string; field?: string };

/** One line on the host's stdin; `seq` pairs it with its reply. */
export interface HostRequest {
  seq: number;
  job: MonitorJob;
}

export type HostReply = MonitorReply & { seq: number };

export interface ExitRecord {
  code: number | null;
  signal: string | null;
  oomKilled: boolean;
  finishedAtUs: number;
}

export const EXIT_FILE = 'exit.json';

/** Copies a pipe into the log until EOF. */
function drain(fd: number, stream: LogStream, log: CriLogWriter | undefined): Promise<void> {
  return new Promise((resolve) => {
    const sock = new net.Socket({ fd, readable: true, writable: false });
    sock.on('data', (d: Buffer) => log?.write(stream, d));
    sock.on('end', () => {
      log?.end(stream);
      resolve();
    });
    sock.on('error', () => resolve());
    sock.on('close', () => resolve());
  });
}

/** Copies a pty master into the log until EIO (the last slave fd closed); reads run on the pool. */
function drainPty(master: number, log: CriLogWriter | undefined): Promise<void> {
  return new Promise((resolve) => {
    const rs = fs.createReadStream('', { fd: master, autoClose: true, highWaterMark: 16384 });
    rs.on('data', (d) => log?.write('stdout', d as Buffer));
    const end = (): void => {
      log?.end('stdout');
      resolve();
    };
    rs.on('error', end);
    rs.on('end', end);
  });
}

export function writeExitRecord(dir: string, rec: ExitRecord): void {
  const tmp = path.join(dir, `.${EXIT_FILE}.tmp`);
  fs.writeFileSync(tmp, JSON.stringify(rec));
  fs.renameSync(tmp, path.join(dir, EXIT_FILE));
}

class MonitorHost {
  /** Jobs taken and containers not yet recorded as exited. */
  private live = 0;
  private daemonGone = false;
  /** Logs still being written (SIGUSR1 reopens them; closed ones leave the set). */
  private readonly logs = new Set<CriLogWriter>();
  private readonly runtimes = new Map<string, Runtime>();

  constructor(private readonly warn: (msg: string) => void) {}

  private runtime(root: string): Runtime {
    let rt = this.runtimes.get(root);
    if (rt === undefined) this.runtimes.set(root, (rt = new Runtime({ root })));
    return rt;
  }

  reopenLogs(): void {
    for (const log of this.logs) {
      try {
        log.reopen();
      } catch (err) {
        // the log directory is gone: keep writing to the old file
        this.warn(`reopen of a log: ${(err as Error).message}`);
      }
    }
  }

  /** No more jobs: stdin ended. */
  endOfJobs(): void {
    this.daemonGone = true;
    this.exitIfDone();
  }

  private exitIfDone(): void {
    if (this.daemonGone && this.live === 0) process.exit(0);
  }

  private reply(r: HostReply): void {
    if (this.daemonGone) return;
    process.stdout.write(`${JSON.stringify(r)}\n`);
  }

  async run(req: HostRequest): Promise<void> {
    const { seq, job } = req;
    this.live++;
    let log: CriLogWriter | undefined;
    const fds: number[] = [];
    try {
      if (job.logPath !== '') {
        fs.mkdirSync(path.dirname(job.logPath), { recursive: true, mode: 0o755 });
        log = new CriLogWriter(job.logPath, job.rotate);
        this.logs.add(log);
      }
      const t0 = process.hrtime.bigint();
      const rt = this.runtime(job.runtimeRoot);
      let created: Awaited<ReturnType<Runtime['create']>>;
      let drained: Promise<unknown>;
      if (job.spec.process?.terminal === true) {
        // A terminal: the pty is made in the container, its master comes back over a socketpair,
        // and everything the container writes to it is its stdout.
        const [mine, theirs] = socketpair();
        fds.push(mine, theirs);
        created = await rt.create(job.id, { bundle: job.bundle, spec: job.spec, consoleFd: theirs });
        const master = recvFd(mine);
        fs.closeSync(mine);
        fs.closeSync(theirs);
        fds.length = 0;
        drained = drainPty(master, log);
      } else {
        const out = pipePair(job.dir);
        const err = pipePair(job.dir);
        fds.push(out.r, out.w, err.r, err.w);
        const nul = fs.openSync('/dev/null', 'r');
        fds.push(nul);
        created = await rt.create(job.id, { bundle: job.bundle, spec: job.spec, stdio: [nul, out.w, err.w] });
        // Only the container holds the write ends now: EOF comes when its last process closes them.
        fs.closeSync(out.w);
        fs.closeSync(err.w);
        fs.closeSync(nul);
        fds.length = 0;
        drained = Promise.all([drain(out.r, 'stdout', log), drain(err.r, 'stderr', log)]);
      }
      if (this.daemonGone) {
        // Nobody took this container and no record will name it: it must not run unseen.
        this.warn(`container ${job.id}: created after the daemon went away; removed`);
        await rt.delete(job.id, true).catch(() => undefined);
      } else {
        this.reply({ seq, ok: true, pid: created.state.pid, createMs: Number(process.hrtime.bigint() - t0) / 1e6 });
      }
      const exit = await created.exited;
      const finishedAtUs = Date.now() * 1000;
      // Processes that outlive the init (no pid namespace) may hold the pipes: do not wait forever.
      await Promise.race([drained, new Promise((r) => setTimeout(r, 2000).unref())]);
      this.closeLog(log);
      try {
        writeExitRecord(job.dir, { code: exit.code, signal: exit.signal, oomKilled: exit.oomKilled, finishedAtUs });
      } catch (err) {
        // The container was removed meanwhile (its directory went away with it).
        this.warn(`container ${job.id}: exit not recorded: ${(err as Error).message}`);
      }
    } catch (err) {
      for (const fd of fds) fs.closeSync(fd);
      this.closeLog(log);
      const e = err as Error & { field?: string };
      this.reply({ seq, ok: false, error: e.message, kind: e.name, ...(e.field !== undefined ? { field: e.field } : {}) });
    } finally {
      this.live--;
      this.exitIfDone();
    }
  }

  private closeLog(log: CriLogWriter | undefined): void {
    if (log === undefined) return;
    this.logs.delete(log);
    log.close();
  }
}

export function main(): void {
  // The daemon's terminal or process group must not take the containers' monitor with it.
  for (const s of ['SIGINT', 'SIGHUP', 'SIGPIPE'] as const) process.on(s, () => undefined);
  const warn = (msg: string): void => void process.stderr.write(`monitor ${process.pid}: ${msg}\n`);
  // One container's failure must not end the monitoring of the others.
  process.on('uncaughtException', (err) => warn(`uncaught: ${err.stack ?? err.message}`));
  // The daemon may die at any time: a reply into a closed pipe is not an error here.
  process.stdout.on('error', () => undefined);
  // A spare host waits for its first job: load the addon now, not on the container's clock.
  try {
    loadNativeBinding();
  } catch {
    // reported by the create that needs it
  }
  const host = new MonitorHost(warn);
  process.on('SIGUSR1', () => host.reopenLogs());
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on('line', (line) => {
    let req: HostRequest;
    try {
      req = JSON.parse(line) as HostRequest;
    } catch {
      warn('a job that is not JSON: ignored');
      return;
    }
    void host.run(req);
  });
  lines.on('close', () => host.endOfJobs());
}

if (require.main === module) main();
