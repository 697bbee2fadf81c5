// The service processes one `berth up` (or `berth join`) runs: each in its own process group and
// (for a node) its own network namespace, logging to a file, its pid recorded so that the next
// run can stop what a crashed one left. Stopping is SIGTERM, then SIGKILL after a grace period.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ServiceChild {
  /** e.g. `etcd-client` or `node-1/kubelet-agent` */
  name: string;
  proc: ChildProcess;
  socket: string;
  log: string;
  exited: Promise<number | null>;
}

/** Running and not a zombie (a killed orphan stays a zombie until init reaps it). */
export function isRunning(pid: number): boolean {
  try { return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
}

export function isAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Kills the processes a crashed run left behind (its pids file), if they still run one of ours. */
export function killRecorded(pidsFile: string, say: (s: string) => void): void {
  let pids: number[] = [];
  try { pids = fs.readFileSync(pidsFile, 'utf8').split('\n').filter(Boolean).map(Number); } catch { return; }
  for (const pid of pids) {
    let cmd = '';
    try { cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { continue; }
    // Only what we started: a berth service or etcd (a recycled pid is left alone).
    if (!/berth-[a-z-]+\.js|\betcd\b/.test(cmd)) continue;
    try { process.kill(pid, 'SIGKILL'); say(`stopped leftover process ${pid} (${cmd.split('\0').find((a) => /berth-|etcd/.test(a)) ?? ''})`); } catch { /* gone */ }
    // Wait until it is gone (reaped by init), so its ports and sockets are free for us.
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && isRunning(pid)) sleepSync(20);
  }
  fs.rmSync(pidsFile, { force: true });
}

export class ServiceProcesses {
  readonly children: ServiceChild[] = [];
  /** Set once a stop began: nothing exited is started again from then on (etcd members neither). */
  stopping = false;
  /** Extra pids to record (etcd members). */
  extraPids: () => number[] = () => [];

  constructor(private readonly pidsFile: string, private readonly logDir: string, private readonly say: (s: string) => void) {}

  record(): void {
    const pids = [...this.children.map((c) => c.proc.pid), ...this.extraPids()].filter(Boolean);
    fs.writeFileSync(this.pidsFile, pids.join('\n'), { mode: 0o600 });
  }

  /**
   * Starts `node <bin> <args>`; with `netns`, inside that network namespace only (nsenter
   * --net: the mount namespace stays the host's, so cgroupfs, /run/netns and the sockets of
   * the other services are where they are for everyone). A service that exits while the run is
   * not stopping is started again, like a unit with Restart=always: after 1 s, doubling up to
   * 30 s while it keeps failing, back to 1 s once it has run for a minute.
   */
  start(name: string, bin: string, args: string[], o: { socket: string; env: NodeJS.ProcessEnv; netns?: string }): ServiceChild {
    const log = path.join(this.logDir, `${name.replace(/\//g, '.')}.log`);
    const argv = [bin, ...args];
    let backoffMs = 1000;
    const launch = (): { proc: ChildProcess; exited: Promise<number | null> } => {
      const fd = fs.openSync(log, 'a', 0o600);
      // Own process group: a terminal's Ctrl-C reaches only `berth up`, which then stops each
      // service once, gracefully, instead of the service seeing SIGINT and SIGTERM at once.
      const proc = o.netns
        ? spawn('nsenter', [`--net=${o.netns}`, '--', process.execPath, ...argv], { stdio: ['ignore', fd, fd], detached: true, env: o.env })
        : spawn(process.execPath, argv, { stdio: ['ignore', fd, fd], detached: true, env: o.env });
      fs.closeSync(fd);
      const started = Date.now();
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
      void exited.then((code) => {
        if (this.stopping) return;
        if (Date.now() - started > 60_000) backoffMs = 1000;
        this.say(`${name} exited unexpectedly (code ${code ?? proc.signalCode}); starting it again in ${backoffMs / 1000} s; see ${log}`);
        setTimeout(() => {
          if (this.stopping) return;
          Object.assign(child, launch());
          this.record();
        }, backoffMs);
        backoffMs = Math.min(backoffMs * 2, 30_000);
      });
      return { proc, exited };
    };
    const child: ServiceChild = { name, socket: o.socket, log, ...launch() };
    this.children.push(child);
    this.record();
    return child;
  }

  /** Stops the given children (all by default) in parallel: SIGTERM, SIGKILL after `graceMs`. */
  async stop(which: (c: ServiceChild) => boolean = () => true, graceMs = 10_000): Promise<void> {
    this.stopping = true;
    await Promise.all(this.children.filter(which).map(async (c) => {
      if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
      c.proc.kill('SIGTERM');
      const t = setTimeout(() => c.proc.kill('SIGKILL'), graceMs);
      await c.exited;
      clearTimeout(t);
    }));
  }
}
