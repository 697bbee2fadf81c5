// Keeps the node's pod cgroup tree in line with the pods it runs: the QoS-level cgroups
// (kubepods, burstable with the sum of its pods' CPU requests, besteffort) and one cgroup per
// pod; cgroups of pods that are gone (deleted while the agent was down, half-made sandboxes) are
// emptied — their processes SIGKILLed — and removed, as the kubelet's orphan cleanup does.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { core } from '@berth/api';
import type { CgroupManager } from './manager';
import { podCgroupPlan, qosCgroupPlans, type PlanOptions } from './plan';

export interface PodCgroupsOptions extends PlanOptions {
  manager: CgroupManager;
  allocatable: { milliCpu: bigint; memoryBytes: bigint };
  /** Where cgroup.procs of a cgroup lives (v1: the cpu controller's dir; v2: the dir itself). */
  procsFile: (cgroupPath: string[]) => string;
}

export interface PodCgroupsReport {
  ensured: string[];
  removed: string[];
  killed: number[];
}

export class PodCgroups {
  constructor(private readonly opts: PodCgroupsOptions) {}

  /** Creates/updates the QoS cgroups and the cgroups of `pods`; removes pod cgroups not among them. */
  async sync(pods: core.Pod[]): Promise<PodCgroupsReport> {
    const m = this.opts.manager;
    const report: PodCgroupsReport = { ensured: [], removed: [], killed: [] };
    for (const q of qosCgroupPlans(pods, this.opts.allocatable)) m.ensure(q.path, q.resources);
    const want = new Set<string>();
    for (const p of pods) {
      const plan = podCgroupPlan(p, this.opts);
      m.ensure(plan.path, plan.resources);
      want.add(plan.path.join('/'));
      report.ensured.push(plan.path.join('/'));
    }
    for (const parent of [['kubepods'], ['kubepods', 'burstable'], ['kubepods', 'besteffort']]) {
      for (const child of m.children(parent)) {
        if (!child.startsWith('pod')) continue;
        const p = [...parent, child];
        if (want.has(p.join('/'))) continue;
        report.killed.push(...(await this.killAll(p)));
        m.remove(p);
        report.removed.push(p.join('/'));
      }
    }
    return report;
  }

  /** SIGKILLs every process in the cgroup (and below) and waits until it is empty. */
  private async killAll(p: string[]): Promise<number[]> {
    const killed: number[] = [];
    const pids = (): number[] => {
      const out: number[] = [];
      const walk = (dir: string): void => {
        try {
          out.push(...fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number));
          for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(dir, e.name));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        }
      };
      walk(path.dirname(this.opts.procsFile(p)));
      return out;
    };
    // Processes can fork while we kill: repeat until the cgroup stays empty (bounded).
    for (let round = 0; round < 50; round++) {
      const list = pids();
      if (!list.length) return killed;
      for (const pid of list) {
        try {
          process.kill(pid, 'SIGKILL');
          killed.push(pid);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
        }
      }
      // Killed processes leave cgroup.procs as they exit; give the kernel a moment.
      await new Promise((r) => setTimeout(r, 20));
    }
    return killed;
  }
}
