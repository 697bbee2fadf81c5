// The pod cgroup plan: where a pod's cgroup lives and what limits it carries, independent of the
// cgroup driver. Guaranteed pods sit directly under kubepods; the others under kubepods/burstable
// or kubepods/besteffort, as in the kubelet's cgroupfs driver.
import type { core } from '@berth/api';
import { limitsDeclared, podResources, qosClassOf, type QosClass } from '../qos';

export const MIN_SHARES = 2;
export const MAX_SHARES = 262_144;
export const SHARES_PER_CPU = 1024;
export const DEFAULT_CFS_PERIOD_US = 100_000;
/** The kernel refuses quotas below 1 ms. */
export const MIN_QUOTA_PERIOD_US = 1_000;

/** Limits of one cgroup; `undefined` means "leave the kernel's default (unlimited)". */
export interface CgroupResources {
  cpuShares: number;
  /** -1 = unlimited. */
  cpuQuotaUs?: number;
  cpuPeriodUs?: number;
  memoryLimitBytes?: bigint;
  pidsLimit?: number;
}

export interface PodCgroupPlan {
  qos: QosClass;
  /** Path relative to the cgroup root of each controller, e.g. ["kubepods", "burstable", "pod<uid>"]. */
  path: string[];
  resources: CgroupResources;
}

export function milliCpuToShares(milliCpu: bigint): number {
  if (milliCpu <= 0n) return MIN_SHARES;
  const shares = (milliCpu * BigInt(SHARES_PER_CPU)) / 1000n;
  if (shares < BigInt(MIN_SHARES)) return MIN_SHARES;
  if (shares > BigInt(MAX_SHARES)) return MAX_SHARES;
  return Number(shares);
}

/** CFS quota for a CPU limit; 0 milli-CPU means no quota (-1). Never under the kernel's 1 ms. */
export function milliCpuToQuota(milliCpu: bigint, periodUs = DEFAULT_CFS_PERIOD_US): number {
  if (milliCpu <= 0n) return -1;
  const quota = (milliCpu * BigInt(periodUs)) / 1000n;
  return quota < BigInt(MIN_QUOTA_PERIOD_US) ? MIN_QUOTA_PERIOD_US : Number(quota);
}

export function podCgroupPath(qos: QosClass, uid: string): string[] {
  // The uid comes from the Store (or a static manifest's hash); refuse anything that could
  // climb out of the cgroup tree.
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/.test(uid)) throw new RangeError(`metadata.uid: ${JSON.stringify(uid)} is not a valid pod uid for a cgroup name`);
  const pod = `pod${uid}`;
  if (qos === 'Guaranteed') return ['kubepods', pod];
  return ['kubepods', qos === 'Burstable' ? 'burstable' : 'besteffort', pod];
}

export interface PlanOptions {
  cfsPeriodUs?: number;
  /** Enforce CPU limits with CFS quota (kubelet's cpuCFSQuota, default true). */
  cpuCfsQuota?: boolean;
  podPidsLimit?: number;
}

export function podCgroupPlan(pod: core.Pod, opts: PlanOptions = {}): PodCgroupPlan {
  const spec = pod.spec;
  if (!spec) throw new TypeError('pod.spec: required to plan the pod cgroup');
  const uid = pod.metadata?.uid ?? '';
  const qos = qosClassOf(spec);
  const period = opts.cfsPeriodUs ?? DEFAULT_CFS_PERIOD_US;
  const req = podResources(spec, 'requests');
  const lim = podResources(spec, 'limits');
  const resources: CgroupResources = { cpuShares: MIN_SHARES };
  if (qos !== 'BestEffort') {
    resources.cpuShares = milliCpuToShares(req.get('cpu')?.milli() ?? 0n);
    if ((opts.cpuCfsQuota ?? true) && limitsDeclared(spec, 'cpu')) {
      resources.cpuQuotaUs = milliCpuToQuota(lim.get('cpu')?.milli() ?? 0n, period);
      resources.cpuPeriodUs = period;
    }
    if (limitsDeclared(spec, 'memory')) resources.memoryLimitBytes = lim.get('memory')!.value();
  }
  if (opts.podPidsLimit !== undefined && opts.podPidsLimit > 0) resources.pidsLimit = opts.podPidsLimit;
  return { qos, path: podCgroupPath(qos, uid), resources };
}

/**
 * The QoS-level cgroups: kubepods carries the node's allocatable; burstable's shares are the sum of
 * its pods' CPU requests (so it competes fairly with Guaranteed pods); besteffort gets the minimum.
 */
export function qosCgroupPlans(pods: core.Pod[], allocatable: { milliCpu: bigint; memoryBytes: bigint }): { path: string[]; resources: CgroupResources }[] {
  let burstableMilli = 0n;
  for (const p of pods) {
    if (!p.spec || qosClassOf(p.spec) !== 'Burstable') continue;
    burstableMilli += podResources(p.spec, 'requests').get('cpu')?.milli() ?? 0n;
  }
  return [
    { path: ['kubepods'], resources: { cpuShares: milliCpuToShares(allocatable.milliCpu), memoryLimitBytes: allocatable.memoryBytes } },
    { path: ['kubepods', 'burstable'], resources: { cpuShares: milliCpuToShares(burstableMilli) } },
    { path: ['kubepods', 'besteffort'], resources: { cpuShares: MIN_SHARES } },
  ];
}
