// Runs a Berth service binary as a real child process (tests, `berth up`-like tools) and stops it.
import { spawn, type ChildProcess } from 'node:child_process';

export interface ServiceProcess {
  proc: ChildProcess;
  /** Collected stdout+stderr. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with how it exited. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface ServiceProcessOptions {
  /** Run inside this network namespace (a file like /run/netns/NAME), through nsenter --net only,
   *  so cgroupfs and mounts stay the host's (unlike `ip netns exec`, which remounts /sys). */
  netns?: string;
  /** Extra flags for node itself (e.g. --cpu-prof). */
  nodeArgs?: string[];
}

export function startServiceProcess(bin: string, args: string[], env: NodeJS.ProcessEnv = process.env, opts: ServiceProcessOptions = {}): ServiceProcess {
  const argv = [...(opts.nodeArgs ?? []), bin, ...args];
  const proc = opts.netns !== undefined
    ? spawn('nsenter', [`--net=${opts.netns}`, '--', process.execPath, ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    proc,
    output: () => out,
    exited,
    stop: async (graceMs = 10_000) => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
        const r = await exited;
        clearTimeout(t);
        return r;
      }
      return exited;
    },
  };
}
