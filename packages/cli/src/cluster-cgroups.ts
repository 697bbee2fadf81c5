// A cgroup root per node, so two kubelet-agents on one machine each own their `kubepods` tree
// (and never take the other node's pods for orphans to kill). Each node gets a cgroup
// `berth-<run>-<node>` in every v1 controller hierarchy, and a directory of symlinks
// `<root>/<controller> -> /sys/fs/cgroup/<controller>/berth-<run>-<node>` that is passed to the
// agent as --cgroup-root: the agent sees an ordinary cgroupfs layout whose top is the node's
// cgroup. No mount is made, so nothing is left mounted after a crash.
import * as fs from 'node:fs';
import * as path from 'node:path';

export const CGROUP_FS = '/sys/fs/cgroup';

/** The v1 controller hierarchies of this machine (named hierarchies and the v2 tree excluded). */
export function v1Controllers(fsRoot = CGROUP_FS): string[] {
  let entries: fs.Dirent[];
  try { entries = fs.readdirSync(fsRoot, { withFileTypes: true }); } catch { return []; }
  return entries
    .filter((d) => d.isDirectory() && d.name !== 'systemd' && d.name !== 'unified')
    .filter((d) => fs.existsSync(path.join(fsRoot, d.name, 'cgroup.procs')) && !fs.existsSync(path.join(fsRoot, d.name, 'cgroup.controllers')))
    .map((d) => d.name)
    .sort();
}

export const nodeCgroupName = (id: string, node: string) => `berth-${id}-${node}`;

/** Creates the node's cgroups and the symlink root; returns the root to pass as --cgroup-root. */
export function createNodeCgroupRoot(id: string, node: string, root: string, fsRoot = CGROUP_FS): string {
  fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(root, { recursive: true, mode: 0o700 });
  const name = nodeCgroupName(id, node);
  for (const c of v1Controllers(fsRoot)) {
    const dir = path.join(fsRoot, c, name);
    fs.mkdirSync(dir, { recursive: true });
    // A new cpuset cgroup starts with no CPUs and no memory nodes: give it its parent's.
    if (c === 'cpuset' || c.split(',').includes('cpuset')) {
      for (const f of ['cpuset.cpus', 'cpuset.mems']) {
        const parent = fs.readFileSync(path.join(fsRoot, c, f), 'utf8').trim();
        if (!fs.readFileSync(path.join(dir, f), 'utf8').trim()) fs.writeFileSync(path.join(dir, f), parent);
      }
    }
    fs.symlinkSync(dir, path.join(root, c));
  }
  return root;
}

/** The cgroups of run `id` (one per node per controller) that exist now. */
export function leftoverCgroups(id: string, fsRoot = CGROUP_FS): string[] {
  const out: string[] = [];
  for (const c of v1Controllers(fsRoot)) {
    let names: string[] = [];
    try { names = fs.readdirSync(path.join(fsRoot, c)); } catch { continue; }
    for (const n of names) if (n.startsWith(`berth-${id}-`)) out.push(path.join(fsRoot, c, n));
  }
  return out;
}

function pidsIn(dir: string): number[] {
  try {
    return fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch { return []; }
}

/**
 * Removes a cgroup tree deepest first, SIGKILLing what still runs in it (a container a crashed
 * agent left behind). Returns what could not be removed.
 */
export async function removeCgroupTree(dir: string): Promise<string[]> {
  let entries: fs.Dirent[];
  try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return []; }
  const errors: string[] = [];
  for (const d of entries) if (d.isDirectory()) errors.push(...(await removeCgroupTree(path.join(dir, d.name))));
  for (let attempt = 0; ; attempt++) {
    for (const pid of pidsIn(dir)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    try {
      fs.rmdirSync(dir);
      return errors;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return errors;
      // EBUSY while the killed tasks are still exiting.
      if (attempt >= 100) return [...errors, `${dir}: ${code}`];
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export async function deleteCgroups(id: string, fsRoot = CGROUP_FS): Promise<string[]> {
  const errors: string[] = [];
  for (const dir of leftoverCgroups(id, fsRoot)) errors.push(...(await removeCgroupTree(dir)));
  return errors;
}
