// Helper processes of the image code (mknod, setfattr, zstd) in a daemon that is a child
// subreaper: its OrphanReaper reaps, on SIGCHLD, every zombie child whose pid nobody registered.
// A helper it reaps first never reports its exit to libuv, so the 'close' its caller awaits never
// comes: that hung the unpack of the test image's second layer (its whiteout template is the
// first mknod of a fresh daemon) in about one import in three. Each helper's pid is therefore
// registered, from spawn (synchronous, so before any SIGCHLD handler can run) until libuv has
// reaped it ('exit'), in the set the reaper skips; and every wait for a helper is bounded.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import * as fs from 'node:fs';
import { hookPids } from '../hooks';

/** How long a helper may run before it is killed and its caller fails (overridable for tests). */
export const HELPER_TIMEOUT_MS = { value: 120_000 };

/** spawn(), with the child's pid kept from the OrphanReaper until libuv has reaped it. */
export function spawnHelper(cmd: string, args: string[], opts: SpawnOptions): ChildProcess {
  const child = spawn(cmd, args, opts);
  const pid = child.pid;
  if (pid !== undefined) {
    hookPids.add(pid);
    child.once('exit', () => hookPids.delete(pid));
  }
  return child;
}

function isOurChild(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid;
  } catch {
    return false;
  }
}

/** Runs a helper to completion: rejects naming the command on a non-zero exit, a spawn error or a timeout. */
export function runHelper(cmd: string, args: string[], opts: { cwd?: string; input?: string; timeoutMs?: number } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawnHelper(cmd, args, { cwd: opts.cwd, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
    const ms = opts.timeoutMs ?? HELPER_TIMEOUT_MS.value;
    let err = '';
    const timer = setTimeout(() => {
      // Only while the pid is still our child: if something else reaped it, it may be reused.
      if (p.pid !== undefined && isOurChild(p.pid)) p.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not finish within ${ms} ms`));
    }, ms);
    p.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
    p.on('error', (e) => { clearTimeout(timer); reject(new Error(`${cmd}: ${e.message}`)); });
    p.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${err.trim()}`));
    });
    if (p.stdin) {
      p.stdin.on('error', () => { /* the exit status tells */ });
      p.stdin.end(opts.input);
    }
  });
}
