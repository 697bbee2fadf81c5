// Exec into a running container: the process joins the container's namespaces and cgroups
// through the runtime library's setns-based exec, with the container's user, environment,
// working directory and capabilities unless the request says otherwise. ExecSync collects
// the output (probes); ExecSession streams it.
import * as fs from 'node:fs';
import * as net from 'node:net';

import { BerthError, FailedPreconditionError, InvalidArgumentError } from '@berth/common';
import { recvFd, setWinsize, socketpair, SyscallError, type ContainerExit } from '@berth/native';

import type { ContainerManager } from '../containers';
import { resolveUser } from '../cri/user';
import { pipePair } from '../monitor/pipes';
import type { Process } from '../oci/config';
import { parseSignal } from '../runtime';
import { RuntimeError } from '../state';

/** Bytes of output ExecSync keeps per stream (the kubelet caps probe output too). */
export const EXEC_SYNC_MAX_OUTPUT = 16 * 1024 * 1024;

export interface ExecOptions {
  cmd: string[];
  env?: Array<{ key: string; value: string }>;
  workingDir?: string;
  /** "uid[:gid]", or "name[:group]" looked up in the container's /etc/passwd and /etc/group. */
  user?: string;
}

function processFor(mgr: ContainerManager, id: string, o: ExecOptions): Process {
  const r = mgr.get(id);
  if (r.phase !== 'running') throw new FailedPreconditionError(`container ${id} is not running (${r.phase}); cannot exec`);
  if (o.cmd.length === 0) throw new InvalidArgumentError('cmd', 'must not be empty');
  const base = mgr.rt.store.read(id).spec.process!;
  let user = base.user;
  if (o.user !== undefined && o.user !== '') {
    const m = /^([0-9]+)(?::([0-9]+))?$/.exec(o.user);
    if (m !== null) {
      user = { uid: Number(m[1]), gid: m[2] !== undefined ? Number(m[2]) : 0 };
    } else {
      // A name: looked up in the container's own /etc/passwd (resolved inside its rootfs).
      if (r.rootfs === '') throw new InvalidArgumentError('user', `expected uid[:gid] for a container without an image rootfs, got '${o.user}'`);
      const u = resolveUser(r.rootfs, o.user, 'user');
      user = { uid: u.uid, gid: u.gid, ...(u.additionalGids.length > 0 ? { additionalGids: u.additionalGids } : {}) };
    }
  }
  const env = [...(base.env ?? []), ...(o.env ?? []).map((e, i) => {
    if (e.key === '' || e.key.includes('=')) throw new InvalidArgumentError(`env[${i}].key`, `'${e.key}' is not a valid variable name`);
    return `${e.key}=${e.value}`;
  })];
  const cwd = o.workingDir !== undefined && o.workingDir !== '' ? o.workingDir : base.cwd;
  if (!cwd.startsWith('/')) throw new InvalidArgumentError('working_dir', `must be an absolute path, got '${cwd}'`);
  return { terminal: false, user, args: o.cmd, env, cwd, capabilities: base.capabilities, noNewPrivileges: base.noNewPrivileges, ...(base.rlimits !== undefined ? { rlimits: base.rlimits } : {}) };
}

export function exitCodeOf(e: ContainerExit): number {
  if (e.code !== null) return e.code;
  try {
    return 128 + (e.signal !== null ? parseSignal(e.signal) : 9);
  } catch {
    return 137;
  }
}

function collect(fd: number, max: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let n = 0;
    const sock = new net.Socket({ fd, readable: true, writable: false });
    sock.on('data', (d: Buffer) => {
      if (n < max) parts.push(d.subarray(0, max - n));
      n += d.length;
    });
    const done = (): void => resolve(Buffer.concat(parts));
    sock.on('end', done);
    sock.on('error', done);
    sock.on('close', done);
  });
}

export interface Spawned {
  pid: number;
  exited: Promise<ContainerExit>;
  stdout: number;
  stderr: number;
  stdin?: number;
}

async function spawnExec(mgr: ContainerManager, id: string, proc: Process, withStdin: boolean): Promise<Spawned> {
  const dir = mgr.get(id).dir;
  const out = pipePair(dir);
  const err = pipePair(dir);
  const inp = withStdin ? pipePair(dir, 'w') : undefined;
  const nul = inp === undefined ? fs.openSync('/dev/null', 'r') : -1;
  try {
    const { pid, exited } = await mgr.rt.exec(id, proc, { stdio: [inp?.r ?? nul, out.w, err.w] });
    return { pid, exited, stdout: out.r, stderr: err.r, ...(inp !== undefined ? { stdin: inp.w } : {}) };
  } catch (e) {
    for (const fd of [out.r, err.r, ...(inp !== undefined ? [inp.w] : [])]) fs.closeSync(fd);
    if (e instanceof RuntimeError) throw new FailedPreconditionError(`exec in container ${id}: ${e.message}`);
    if (e instanceof SyscallError && e.stage === 'executable') throw new InvalidArgumentError('cmd[0]', `exec "${proc.args![0]}" in container ${id}: ${e.code === 'ENOENT' ? 'executable file not found' : e.message}`);
    throw e;
  } finally {
    for (const fd of [out.w, err.w, ...(inp !== undefined ? [inp.r] : []), ...(nul >= 0 ? [nul] : [])]) fs.closeSync(fd);
  }
}

/** Runs `cmd` to completion; after `timeoutS` seconds (0: none) it is killed and DEADLINE_EXCEEDED returned. */
export async function execSync(mgr: ContainerManager, id: string, cmd: string[], timeoutS: number): Promise<{ stdout: Buffer; stderr: Buffer; exitCode: number }> {
  const proc = processFor(mgr, id, { cmd });
  const p = await spawnExec(mgr, id, proc, false);
  const output = Promise.all([collect(p.stdout, EXEC_SYNC_MAX_OUTPUT), collect(p.stderr, EXEC_SYNC_MAX_OUTPUT)]);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((res) => {
    if (timeoutS > 0) timer = setTimeout(() => res('timeout'), timeoutS * 1000);
  });
  const res = await Promise.race([p.exited, timedOut]);
  clearTimeout(timer);
  if (res === 'timeout') {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
    await p.exited.catch(() => undefined);
    throw new BerthError('DeadlineExceeded', `command ${JSON.stringify(cmd)} in container ${id} timed out after ${timeoutS}s`);
  }
  // Children of the command that keep the pipes open must not hold the probe forever.
  const [stdout, stderr] = await Promise.race([output, new Promise<[Buffer, Buffer]>((r) => setTimeout(() => r([Buffer.alloc(0), Buffer.alloc(0)]), 2000).unref())]);
  return { stdout, stderr, exitCode: exitCodeOf(res) };
}

export interface ExecSessionEvents {
  stdout(d: Buffer): void;
  stderr(d: Buffer): void;
}

/** An interactive exec: stdin in, stdout/stderr out (one stream with a tty), signals, the exit code at the end. */
export class ExecSession {
  private constructor(
    private readonly pid: number,
    readonly done: Promise<{ exitCode: number; reason: string }>,
    private readonly input: { write(d: Buffer): void; close(): void; destroy(): void } | undefined,
    /** With a terminal: sets its size (the process gets SIGWINCH). */
    private readonly winsize?: (width: number, height: number) => void,
  ) {}

  static async start(mgr: ContainerManager, id: string, o: ExecOptions & { stdin: boolean; tty: boolean; size?: { width: number; height: number } }, on: ExecSessionEvents): Promise<ExecSession> {
    const proc = processFor(mgr, id, o);
    if (o.tty) return ExecSession.startTty(mgr, id, proc, o, on);
    const p = await spawnExec(mgr, id, proc, o.stdin);
    const pipe = (fd: number, cb: (d: Buffer) => void): Promise<void> => new Promise((resolve) => {
      const s = new net.Socket({ fd, readable: true, writable: false });
      s.on('data', cb);
      s.on('end', resolve);
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
    const streams = Promise.all([pipe(p.stdout, on.stdout), pipe(p.stderr, on.stderr)]);
    const done = p.exited.then(async (e) => {
      await Promise.race([streams, new Promise((r) => setTimeout(r, 2000).unref())]);
      return { exitCode: exitCodeOf(e), reason: e.signal !== null ? 'Signaled' : '' };
    });
    let input: ExecSession['input'];
    if (p.stdin !== undefined) {
      const sock = new net.Socket({ fd: p.stdin, readable: false, writable: true });
      sock.on('error', () => undefined);
      input = { write: (d) => { sock.write(d); }, close: () => { sock.end(); }, destroy: () => { sock.destroy(); } };
    }
    return new ExecSession(p.pid, done, input);
  }

  /**
   * With a terminal: the pty is made in the container (its devpts) and its master comes back
   * over a socketpair; output is read from the master on the pool (a pty master is no socket).
   */
  private static async startTty(mgr: ContainerManager, id: string, proc: Process, o: { stdin: boolean; size?: { width: number; height: number } }, on: ExecSessionEvents): Promise<ExecSession> {
    const size = o.size !== undefined && o.size.width > 0 && o.size.height > 0 ? { consoleSize: { width: o.size.width, height: o.size.height } } : {};
    const [mine, theirs] = socketpair();
    let spawned: { pid: number; exited: Promise<ContainerExit> };
    try {
      spawned = await mgr.rt.exec(id, { ...proc, terminal: true, ...size }, { consoleFd: theirs });
    } catch (e) {
      fs.closeSync(mine);
      if (e instanceof RuntimeError) throw new FailedPreconditionError(`exec in container ${id}: ${e.message}`);
      if (e instanceof SyscallError && e.stage === 'executable') throw new InvalidArgumentError('cmd[0]', `exec "${proc.args![0]}" in container ${id}: ${e.code === 'ENOENT' ? 'executable file not found' : e.message}`);
      throw e;
    } finally {
      fs.closeSync(theirs);
    }
    let master: number;
    try {
      master = recvFd(mine);
    } catch (e) {
      try { process.kill(spawned.pid, 'SIGKILL'); } catch { /* gone */ }
      throw e;
    } finally {
      fs.closeSync(mine);
    }
    // EIO once the last slave fd is closed: the end of the output.
    const copied = new Promise<void>((resolve) => {
      const rs = fs.createReadStream('', { fd: master, autoClose: false, highWaterMark: 16384 });
      rs.on('data', (d) => on.stdout(d as Buffer));
      rs.on('error', () => resolve());
      rs.on('end', () => resolve());
    });
    let open = true;
    const done = spawned.exited.then(async (e) => {
      await Promise.race([copied, new Promise((r) => setTimeout(r, 1000).unref())]);
      open = false;
      fs.closeSync(master);
      return { exitCode: exitCodeOf(e), reason: e.signal !== null ? 'Signaled' : '' };
    });
    const write = (d: Buffer): void => {
      if (!open) return;
      try { fs.writeSync(master, d); } catch { /* the process is gone */ }
    };
    // A terminal has no half-close: end of input is the EOF character, as a user typing ^D.
    const input = o.stdin ? { write, close: () => write(Buffer.from([4])), destroy: () => undefined } : undefined;
    const winsize = (width: number, height: number): void => {
      if (open) setWinsize(master, height, width);
    };
    return new ExecSession(spawned.pid, done, input, winsize);
  }

  write(d: Buffer): void {
    this.input?.write(d);
  }

  closeStdin(): void {
    this.input?.close();
  }

  /** A new terminal size; INVALID_ARGUMENT without a terminal. */
  resize(width: number, height: number): void {
    if (this.winsize === undefined) throw new InvalidArgumentError('resize', 'the exec has no terminal');
    if (width < 1 || height < 1 || width > 0xffff || height > 0xffff) throw new InvalidArgumentError('resize', `expected a size of 1..65535 cells, got ${width}x${height}`);
    this.winsize(width, height);
  }

  signal(sig: string): void {
    let n: number;
    try {
      n = parseSignal(sig);
    } catch {
      throw new InvalidArgumentError('signal', `unknown signal '${sig}'`);
    }
    try { process.kill(this.pid, n); } catch { /* exited */ }
  }

  kill(): void {
    try { process.kill(this.pid, 'SIGKILL'); } catch { /* exited */ }
    this.input?.destroy();
  }
}
