// CRI LinuxContainerResources -> OCI linux.resources (zero means "not set" in CRI, so it is
// left out rather than written as a limit of 0).
import { runtime } from '@berth/api';
import { InvalidArgumentError } from '@berth/common';

import type { Resources } from '../oci/config';

export function ociResources(r: runtime.LinuxContainerResources | undefined, at: string): Resources {
  const out: Resources = {};
  if (r === undefined) return out;
  const cpu: NonNullable<Resources['cpu']> = {};
  if (r.cpuShares < 0) throw new InvalidArgumentError(`${at}.cpu_shares`, 'must not be negative');
  if (r.cpuShares > 0) cpu.shares = r.cpuShares;
  if (r.cpuQuota > 0) cpu.quota = r.cpuQuota;
  if (r.cpuPeriod > 0) cpu.period = r.cpuPeriod;
  if (r.cpusetCpus !== '') cpu.cpus = r.cpusetCpus;
  if (r.cpusetMems !== '') cpu.mems = r.cpusetMems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;
  const mem: NonNullable<Resources['memory']> = {};
  if (r.memoryLimitInBytes < 0) throw new InvalidArgumentError(`${at}.memory_limit_in_bytes`, 'must not be negative');
  if (r.memoryLimitInBytes > 0) mem.limit = r.memoryLimitInBytes;
  if (r.memorySwapLimitInBytes > 0) {
    if (r.memoryLimitInBytes > 0 && r.memorySwapLimitInBytes < r.memoryLimitInBytes) throw new InvalidArgumentError(`${at}.memory_swap_limit_in_bytes`, 'must be at least memory_limit_in_bytes');
    mem.swap = r.memorySwapLimitInBytes;
  }
  if (Object.keys(mem).length > 0) out.memory = mem;
  if (r.pidsLimit > 0) out.pids = { limit: r.pidsLimit };
  if (r.hugepageLimits.length > 0) out.hugepageLimits = r.hugepageLimits.map((h) => ({ pageSize: h.pageSize, limit: h.limit }));
  if (Object.keys(r.unified).length > 0) out.unified = { ...r.unified };
  return out;
}
