// ContainerStats from the container's cgroups (and its writable layer on disk). The CPU rate
// (usage_nano_cores) needs two samples: the previous one per container is kept here.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { runtime } from '@berth/api';

import type { ContainerManager, ContainerRecord } from '../containers';

function memoryStat(dir: string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  if (dir === undefined) return out;
  try {
    for (const line of fs.readFileSync(path.join(dir, 'memory.stat'), 'utf8').split('\n')) {
      const [k, v] = line.split(' ');
      if (k !== undefined && v !== undefined) out.set(k, Number(v));
    }
  } catch {
    // no memory controller
  }
  return out;
}

/** Bytes and inodes under `dir`, not following symlinks or crossing into other filesystems. */
export function diskUsage(dir: string): { bytes: number; inodes: number } {
  let bytes = 0;
  let inodes = 0;
  let dev: number;
  try {
    dev = fs.lstatSync(dir).dev;
  } catch {
    return { bytes, inodes };
  }
  const stack = [dir];
  const seen = new Set<number>();
  while (stack.length > 0) {
    const d = stack.pop()!;
    let names: string[];
    try { names = fs.readdirSync(d); } catch { continue; }
    for (const n of names) {
      const p = path.join(d, n);
      let st: fs.Stats;
      try { st = fs.lstatSync(p); } catch { continue; }
      if (st.dev !== dev) continue;
      if (st.nlink > 1) {
        if (seen.has(st.ino)) continue;
        seen.add(st.ino);
      }
      inodes++;
      bytes += st.blocks * 512;
      if (st.isDirectory()) stack.push(p);
    }
  }
  return { bytes, inodes };
}

export class StatsSampler {
  private readonly last = new Map<string, { atNs: bigint; usageNs: number }>();

  constructor(private readonly mgr: ContainerManager) {}

  sample(r: ContainerRecord): runtime.ContainerStats {
    const attributes = { id: r.id, metadata: { name: r.name, attempt: r.attempt }, labels: r.labels, annotations: r.annotations };
    const nowUs = Date.now() * 1000;
    const upper = path.join(r.dir, 'upper');
    const disk = r.rootfs !== '' ? diskUsage(upper) : undefined;
    const writableLayer = disk !== undefined ? { timestampUs: nowUs, fsId: { mountpoint: upper }, usedBytes: disk.bytes, inodesUsed: disk.inodes } : undefined;
    if (r.phase !== 'running') {
      this.last.delete(r.id);
      return runtime.ContainerStats.fromPartial({ attributes, writableLayer });
    }
    let cg;
    let memDir: string | undefined;
    try {
      cg = this.mgr.rt.stats(r.id);
      const st = this.mgr.rt.store.read(r.id);
      memDir = st.cgroupVersion === 1 ? st.cgroupPaths['memory'] : undefined;
    } catch {
      return runtime.ContainerStats.fromPartial({ attributes, writableLayer });
    }
    const atNs = process.hrtime.bigint();
    const prev = this.last.get(r.id);
    this.last.set(r.id, { atNs, usageNs: cg.cpu.usageNs });
    let usageNanoCores: number | undefined;
    if (prev !== undefined && atNs > prev.atNs) usageNanoCores = Math.max(0, Math.round(((cg.cpu.usageNs - prev.usageNs) / Number(atNs - prev.atNs)) * 1e9));
    const ms = memoryStat(memDir);
    const inactiveFile = ms.get('total_inactive_file') ?? ms.get('inactive_file') ?? 0;
    const workingSet = Math.max(0, cg.memory.usage - inactiveFile);
    // v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages).
    const limited = cg.memory.limit > 0 && cg.memory.limit < 2 ** 60;
    return runtime.ContainerStats.fromPartial({
      attributes,
      cpu: { timestampUs: nowUs, usageCoreNanoSeconds: cg.cpu.usageNs, ...(usageNanoCores !== undefined ? { usageNanoCores } : {}) },
      memory: {
        timestampUs: nowUs, workingSetBytes: workingSet, usageBytes: cg.memory.usage,
        ...(limited ? { availableBytes: Math.max(0, cg.memory.limit - workingSet) } : {}),
        rssBytes: (ms.get('total_rss') ?? ms.get('rss') ?? ms.get('anon') ?? 0),
        pageFaults: ms.get('total_pgfault') ?? ms.get('pgfault') ?? 0,
        majorPageFaults: ms.get('total_pgmajfault') ?? ms.get('pgmajfault') ?? 0,
      },
      pids: { timestampUs: nowUs, current: cg.pids.current, ...(cg.pids.limit > 0 ? { limit: cg.pids.limit } : {}) },
      writableLayer,
    });
  }

  forget(id: string): void {
    this.last.delete(id);
  }
}
