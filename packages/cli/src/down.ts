// `berth down`, and the clean-up a `berth up` does when it takes over from a crashed run: stop
// the running `berth up` (SIGTERM: it stops everything itself), or — when it is gone — kill the
// processes it recorded and remove what its run made on the host: mounts under its run and
// state dirs, the node network namespaces (with every pod link, route and iptables rule
// inside), the underlay bridge and veths, and the node cgroups.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runDir as defaultRunDir, stateRoot } from '@berth/common';
import { deleteCgroups, leftoverCgroups } from './cluster-cgroups';
import { deleteNetwork, leftoverNetwork, runId } from './cluster-net';
import { isAlive, isRunning, killRecorded } from './cluster-processes';

/** Mount points under any of `roots` (deepest first), from /proc/self/mountinfo. */
export function mountsUnder(roots: string[]): string[] {
  const prefixes = roots.map((r) => path.resolve(r) + '/');
  const out: string[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const mp = f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (prefixes.some((p) => mp.startsWith(p) || mp + '/' === p)) out.push(mp);
  }
  return [...new Set(out)].sort((a, b) => b.length - a.length);
}

export interface Leftovers { processes: number[]; mounts: string[]; netns: string[]; links: string[]; cgroups: string[] }

/** What a run (by its run dir) still has on this host. Empty lists: nothing left. */
export function leftovers(runDir: string, stateDir: string): Leftovers {
  const id = runId(runDir);
  let pids: number[] = [];
  try { pids = fs.readFileSync(path.join(runDir, 'up.children'), 'utf8').split('\n').filter(Boolean).map(Number); } catch { /* none */ }
  return {
    processes: pids.filter(isRunning),
    // The whole state dir: `berth up` keeps node state under nodes/, `berth join` right in it.
    mounts: mountsUnder([runDir, stateDir]),
    ...leftoverNetwork(id),
    cgroups: leftoverCgroups(id),
  };
}

/** Removes everything a stopped (or crashed) run left. Returns what could not be removed. */
export async function cleanupRun(runDir: string, stateDir: string, say: (s: string) => void): Promise<string[]> {
  killRecorded(path.join(runDir, 'up.children'), say);
  const errors: string[] = [];
  for (const m of mountsUnder([runDir, stateDir])) {
    // Lazy: a mount a dying process still holds goes as soon as it lets go.
    try { execFileSync('umount', ['-l', m], { stdio: ['ignore', 'ignore', 'pipe'] }); } catch (e) {
      errors.push(`umount ${m}: ${((e as { stderr?: Buffer }).stderr ?? '').toString().trim()}`);
    }
  }
  const id = runId(runDir);
  errors.push(...deleteNetwork(id));
  errors.push(...(await deleteCgroups(id)));
  return errors;
}

/** `berth down`: stops the `berth up` of this run dir, or cleans up after a crashed one. */
export async function down(o: { runDir?: string; stateDir?: string; out?: NodeJS.WritableStream; timeoutMs?: number } = {}): Promise<number> {
  const runDir = o.runDir ?? defaultRunDir();
  const stateDir = o.stateDir ?? stateRoot();
  const out = o.out ?? process.stdout;
  const say = (s: string) => out.write(`${s}\n`);
  let pid = 0;
  try { pid = Number(fs.readFileSync(path.join(runDir, 'up.pid'), 'utf8')); } catch { /* not running */ }
  if (pid && isAlive(pid)) {
    say(`stopping berth up (pid ${pid}) ...`);
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + (o.timeoutMs ?? 60_000);
    while (isRunning(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (isRunning(pid)) { say(`berth up (pid ${pid}) did not stop within ${(o.timeoutMs ?? 60_000) / 1000} s; killing it`); process.kill(pid, 'SIGKILL'); }
  }
  const errors = await cleanupRun(runDir, stateDir, say);
  fs.rmSync(path.join(runDir, 'up.pid'), { force: true });
  fs.rmSync(path.join(runDir, 'cluster.json'), { force: true });
  const left = leftovers(runDir, stateDir);
  const remaining = [...left.processes.map((p) => `process ${p}`), ...left.mounts, ...left.netns.map((n) => `netns ${n}`), ...left.links.map((l) => `link ${l}`), ...left.cgroups];
  if (errors.length || remaining.length) {
    say(`berth down: could not remove everything:\n  ${[...errors, ...remaining].join('\n  ')}`);
    return 1;
  }
  say('berth down: nothing left running.');
  return 0;
}
