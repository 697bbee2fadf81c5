// The container monitor: one small process per container, the parent of its init, so that a
// kill -9 of the daemon neither stops the container nor loses its exit status (the conmon /
// containerd-shim design). It
// - creates the container through the runtime library (so it is the init's parent and reaper),
// - holds the read ends of the container's stdout/stderr and writes them to the CRI log,
// - reopens the log on SIGUSR1 (ReopenContainerLog),
// - writes exit.json (code, signal, OOM kill, time) atomically when the init exits, then exits.
// The daemon hands it one JSON job on stdin and gets one JSON line back on stdout; after that
// the monitor needs nothing from the daemon, which may die and come back at any time.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

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

export interface ExitRecord {
  code: number | null;
  signal: string | null;
  oomKilled: boolean;
  finishedAtUs: number;
}

export const EXIT_FILE = 'exit.json';

function readJob(): Promise<MonitorJob> {
  return new Promise((resolve, reject) => {
    let buf = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        process.stdin.pause();
        try {
          resolve(JSON.parse(buf.slice(0, nl)) as MonitorJob);
        } catch (err) {
          reject(err);
        }
      }
    });
    process.stdin.on('end', () => reject(new Error('no job on stdin')));
  });
}

function reply(r: MonitorReply): Promise<void> {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(r)}\n`, () => resolve()));
}

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

export async function main(): Promise<void> {
  // The daemon's terminal or process group must not take the container's monitor with it.
  for (const s of ['SIGINT', 'SIGHUP', 'SIGPIPE'] as const) process.on(s, () => undefined);
  // A spare monitor waits for its job: load the addon now, not on the container's clock.
  try {
    loadNativeBinding();
  } catch {
    // reported by the create that needs it
  }
  let job: MonitorJob;
  try {
    job = await readJob();
  } catch {
    // A spare monitor whose daemon went away before it had a job: nothing to do.
    process.exit(0);
  }
  let log: CriLogWriter | undefined;
  const fds: number[] = [];
  try {
    if (job.logPath !== '') {
      fs.mkdirSync(path.dirname(job.logPath), { recursive: true, mode: 0o755 });
      log = new CriLogWriter(job.logPath, job.rotate);
    }
    const t0 = process.hrtime.bigint();
    const rt = new Runtime({ root: job.runtimeRoot });
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
    process.on('SIGUSR1', () => {
      try {
        log?.reopen();
      } catch {
        // the log directory is gone: keep writing to the old file
      }
    });
    await reply({ ok: true, pid: created.state.pid, createMs: Number(process.hrtime.bigint() - t0) / 1e6 });
    // From here the daemon may be gone: never write to stdout again.
    const exit = await created.exited;
    const finishedAtUs = Date.now() * 1000;
    // Processes that outlive the init (no pid namespace) may hold the pipes: do not wait forever.
    await Promise.race([drained, new Promise((r) => setTimeout(r, 2000).unref())]);
    log?.close();
    const rec: ExitRecord = { code: exit.code, signal: exit.signal, oomKilled: exit.oomKilled, finishedAtUs };
    const tmp = path.join(job.dir, `.${EXIT_FILE}.tmp`);
    fs.writeFileSync(tmp, JSON.stringify(rec));
    fs.renameSync(tmp, path.join(job.dir, EXIT_FILE));
    process.exit(0);
  } catch (err) {
    for (const fd of fds) fs.closeSync(fd);
    log?.close();
    const e = err as Error & { field?: string };
    await reply({ ok: false, error: e.message, kind: e.name, ...(e.field !== undefined ? { field: e.field } : {}) });
    process.exit(1);
  }
}

if (require.main === module) void main();
