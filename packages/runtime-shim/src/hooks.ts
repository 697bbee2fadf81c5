// OCI hooks: each runs as its own process with the container state as JSON on stdin; a
// non-zero exit or a timeout fails the step (poststart/poststop failures are only warnings,
// as in runc).
import { spawn } from 'node:child_process';

import type { Hook } from './oci/config';
import type { OciState } from './state';

/** Pids of running hook processes: child_process children, reaped by libuv, not by the OrphanReaper. */
export const hookPids = new Set<number>();

export async function runHook(hook: Hook, state: OciState, name: string): Promise<void> {
  const args = hook.args ?? [hook.path];
  await new Promise<void>((resolve, reject) => {
    const child = spawn(hook.path, args.slice(1), { argv0: args[0], env: Object.fromEntries((hook.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])), stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    if (child.pid !== undefined) hookPids.add(child.pid);
    if (hook.timeout !== undefined) {
      if (hook.timeout <= 0) return reject(new Error(`${name} hook ${hook.path}: timeout must be positive`));
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${name} hook ${hook.path}: timed out after ${hook.timeout}s`));
      }, hook.timeout * 1000);
    }
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(JSON.stringify(state));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${name} hook ${hook.path}: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (child.pid !== undefined) hookPids.delete(child.pid);
      if (code === 0) resolve();
      else reject(new Error(`${name} hook ${hook.path} failed: ${code !== null ? `exit status ${code}` : `signal ${signal}`}${stderr !== '' ? `: ${stderr.trim()}` : ''}`));
    });
  });
}

export async function runHooks(hooks: Hook[] | undefined, state: OciState, name: string): Promise<void> {
  for (const h of hooks ?? []) await runHook(h, state, name);
}
