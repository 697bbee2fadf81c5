// What the kernel itself shows of a node's pods, beside what the Store, the runtime and the
// cni-manager say: the pod cgroups under the node's cgroup root (`pod<uid>` directories) with the
// processes in them, and the veth links in the node's network namespace. The chaos run compares
// the two: a Running pod must have processes, nothing may run or stay in a cgroup of a pod the
// Store does not have, and every veth must belong to an attachment and every attachment have its
// veth.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface NodeKernelView {
  /** Pod uid -> processes in its cgroup (and the cgroups below it). */
  podCgroups: Map<string, number>;
  /** veth links in the node's network namespace (its own underlay `eth0` left out). */
  veths: Set<string>;
}

/** The controller hierarchy the pod cgroups are read from: pids (every process is in it), else memory. */
function hierarchy(cgroupRoot: string): string | undefined {
  for (const c of ['pids', 'memory']) if (fs.existsSync(path.join(cgroupRoot, c))) return path.join(cgroupRoot, c);
  return undefined;
}

function processesBelow(dir: string): number {
  let n = 0;
  try { n = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).length; } catch { return 0; }
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) if (d.isDirectory()) n += processesBelow(path.join(dir, d.name));
  return n;
}

/** Every `pod<uid>` cgroup under `top` (the QoS levels are walked through), with its process count. */
export function podCgroups(top: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[];
    try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
    for (const d of entries) {
      if (!d.isDirectory()) continue;
      const m = /^pod([0-9a-zA-Z-]+)$/.exec(d.name);
      if (m) out.set(m[1], processesBelow(path.join(dir, d.name)));
      else if (depth < 3) walk(path.join(dir, d.name), depth + 1);
    }
  };
  walk(top, 0);
  return out;
}

export function nodeKernelView(node: { netns: string; cgroupRoot: string }): NodeKernelView {
  const top = hierarchy(node.cgroupRoot);
  const r = spawnSync('ip', ['-n', node.netns, '-j', 'link', 'show', 'type', 'veth'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip -n ${node.netns} link show: ${r.stderr.trim()}`);
  const links = JSON.parse(r.stdout || '[]') as { ifname: string }[];
  return { podCgroups: top ? podCgroups(top) : new Map(), veths: new Set(links.map((l) => l.ifname).filter((n) => n !== 'eth0')) };
}

/**
 * Where the kernel disagrees with the Store (pods on this node: uid -> phase) and the
 * cni-manager (its attachments' host veths).
 */
export function kernelMismatches(node: string, view: NodeKernelView, pods: { uid: string; name: string; phase: string }[], attachments: { hostVeth: string; podName: string }[]): string[] {
  const out: string[] = [];
  const byUid = new Map(pods.map((p) => [p.uid, p]));
  for (const p of pods) {
    if (p.phase === 'Running' && !view.podCgroups.get(p.uid)) out.push(`pod ${p.name} is Running in the Store but no process runs in its cgroup on ${node}`);
    if ((p.phase === 'Succeeded' || p.phase === 'Failed') && view.podCgroups.get(p.uid)) out.push(`pod ${p.name} is ${p.phase} in the Store but ${view.podCgroups.get(p.uid)} process(es) run in its cgroup on ${node}`);
  }
  for (const [uid, procs] of view.podCgroups) {
    if (byUid.has(uid)) continue;
    out.push(procs ? `${node}: ${procs} process(es) run in the cgroup of pod uid ${uid}, which the Store does not have` : `${node}: leaked cgroup of pod uid ${uid} (not in the Store)`);
  }
  const owned = new Set(attachments.map((a) => a.hostVeth).filter(Boolean));
  for (const v of view.veths) if (!owned.has(v)) out.push(`${node}: leaked link ${v} (no attachment has it)`);
  for (const a of attachments) if (a.hostVeth && !view.veths.has(a.hostVeth)) out.push(`${node}: the attachment of ${a.podName} names veth ${a.hostVeth}, which the kernel does not have`);
  return out;
}
