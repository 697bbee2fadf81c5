// The eviction manager: when a hard threshold is met it measures each pod's usage of the starved
// resource (memory: the pod cgroup's working set, read from the kernel), ranks the pods the way
// the kubelet does, and evicts the first one — at most one per round, so the node can recover
// before the next victim is chosen. Eviction itself (kill the pod, status Failed/Evicted, event
// Evicted) goes through the callback the pod workers provide.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { core } from '@berth/api';
import { podCgroupPlan } from './cgroups/plan';
import { evictionMessage, rankForEviction, thresholdsMet, type SignalName, type Signals } from './eviction';
import { podResources } from './qos';

/** Working set of a cgroup v1 memory cgroup: usage − inactive file pages (what the kubelet uses). */
export function memoryWorkingSet(memoryCgroupDir: string): bigint {
  const usage = BigInt(fs.readFileSync(path.join(memoryCgroupDir, 'memory.usage_in_bytes'), 'utf8').trim());
  const stat = fs.readFileSync(path.join(memoryCgroupDir, 'memory.stat'), 'utf8');
  const inactive = BigInt(/^total_inactive_file (\d+)$/m.exec(stat)?.[1] ?? '0');
  return usage > inactive ? usage - inactive : 0n;
}

export interface EvictionManagerOptions {
  signals: () => Signals;
  evictionHard: Partial<Record<SignalName, string>>;
  pods: () => core.Pod[];
  /** Directory of a pod's memory cgroup (v1: /sys/fs/cgroup/memory/<root>/kubepods/...). */
  memoryCgroupDir: (cgroupPath: string[]) => string;
  evict: (pod: core.Pod, reason: 'Evicted', message: string) => Promise<void>;
}

export interface EvictionRound {
  met: SignalName[];
  victim?: core.Pod;
  message?: string;
}

export class EvictionManager {
  constructor(private readonly o: EvictionManagerOptions) {}

  async synchronize(): Promise<EvictionRound> {
    const met = thresholdsMet(this.o.signals(), this.o.evictionHard);
    if (!met.length) return { met };
    // Memory first: it is the signal that ends in the kernel OOM killer if ignored.
    const signal = met.includes('memory.available') ? 'memory.available' : met[0];
    const usages = this.o.pods()
      .filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed')
      .map((pod) => ({ pod, usage: signal === 'memory.available' ? this.memoryOf(pod) : 0n }));
    const [first] = rankForEviction(usages, signal);
    if (!first) return { met };
    const req = first.pod.spec ? podResources(first.pod.spec, 'requests').get('memory')?.value() ?? 0n : 0n;
    const message = evictionMessage(signal, this.o.evictionHard[signal]!, first.usage, req);
    await this.o.evict(first.pod, 'Evicted', message);
    return { met, victim: first.pod, message };
  }

  private memoryOf(pod: core.Pod): bigint {
    try {
      return memoryWorkingSet(this.o.memoryCgroupDir(podCgroupPlan(pod).path));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0n; // no cgroup yet: uses nothing
      throw e;
    }
  }
}
