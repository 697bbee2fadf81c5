// A real local process runner for tests: "containers" are plain child processes on this
// machine. It implements the exec seam the probes use and reports containers the way the
// runtime would, so logic above the runtime runs against real processes (real exits, real
// signals, real timeouts) until runtime-shim is wired in.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Clock } from '../clock';
import type { ObservedContainer } from '../pod-actions';
import type { ContainerExec, ExecResult } from '../probes/prober';

interface Proc {
  name: string;
  id: string;
  child: ChildProcess;
  observed: ObservedContainer;
  exited: Promise<void>;
}

let seq = 0;

export class LocalProcesses implements ContainerExec {
  private readonly procs = new Map<string, Proc>();
  private readonly latest = new Map<string, Proc>();

  constructor(private readonly clock: Clock) {}

  start(name: string, argv: string[], attempt: number): string {
    const id = `local-${process.pid}-${++seq}`;
    const child = spawn(argv[0], argv.slice(1), { stdio: 'ignore' });
    const observed: ObservedContainer = { name, id, state: 'running', exitCode: 0, startedAt: this.clock.now(), finishedAt: 0, reason: '', attempt };
    const exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        observed.state = 'exited';
        observed.exitCode = code ?? 128 + (signal ? signalNumber(signal) : 0);
        observed.reason = observed.exitCode === 0 ? 'Completed' : 'Error';
        observed.finishedAt = this.clock.now();
        resolve();
      });
      child.once('error', () => {
        observed.state = 'exited';
        observed.exitCode = 127;
        observed.reason = 'StartError';
        observed.finishedAt = this.clock.now();
        resolve();
      });
    });
    const p = { name, id, child, observed, exited };
    this.procs.set(id, p);
    this.latest.set(name, p);
    return id;
  }

  observed(): ObservedContainer[] {
    return [...this.latest.values()].map((p) => ({ ...p.observed }));
  }

  async waitExit(id: string): Promise<void> {
    await this.procs.get(id)?.exited;
  }

  kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): void {
    const p = this.procs.get(id);
    if (p && p.observed.state === 'running') p.child.kill(signal);
  }

  /** What the runtime's StopContainer does: SIGTERM, wait up to the timeout, then SIGKILL. */
  async stop(id: string, timeoutSeconds: number): Promise<void> {
    const p = this.procs.get(id);
    if (!p || p.observed.state !== 'running') return;
    if (timeoutSeconds > 0) {
      p.child.kill('SIGTERM');
      const killed = await Promise.race([p.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutSeconds * 1000))]);
      if (killed) return;
    }
    p.child.kill('SIGKILL');
    await p.exited;
  }

  /** Runs a command "in" the container (here: on the host), killing it at the timeout. */
  exec(containerId: string, cmd: string[], timeoutMs: number): Promise<ExecResult> {
    if (!this.procs.has(containerId)) return Promise.reject(new Error(`container ${containerId} not found`));
    return new Promise((resolve) => {
      const child = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      child.stdout!.on('data', (b: Buffer) => out.push(b));
      child.stderr!.on('data', (b: Buffer) => out.push(b));
      let timedOut = false;
      const t = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
      child.once('error', (e) => { clearTimeout(t); resolve({ exitCode: 127, output: String(e.message), timedOut: false }); });
      child.once('close', (code, sig) => {
        clearTimeout(t);
        resolve({ exitCode: code ?? 128 + (sig ? signalNumber(sig) : 0), output: Buffer.concat(out).toString('utf8'), timedOut });
      });
    });
  }

  /** Kills every process still running and waits for them (test teardown). */
  async close(): Promise<void> {
    for (const p of this.procs.values()) if (p.observed.state === 'running') p.child.kill('SIGKILL');
    await Promise.all([...this.procs.values()].map((p) => p.exited));
  }
}

function signalNumber(sig: NodeJS.Signals): number {
  return (require('node:os') as typeof import('node:os')).constants.signals[sig] ?? 0;
}
