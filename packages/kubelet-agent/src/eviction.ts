// Node-pressure eviction: the signals (memory.available, nodefs.available, pid.available) read
// from the real machine, compared with hard thresholds, and the order pods are evicted in —
// first pods whose usage exceeds their request (BestEffort always does), by priority (lowest
// first), then by how far usage is above request (largest first) — as the kubelet ranks them.
import * as fs from 'node:fs';
import type { core } from '@berth/api';
import { Quantity } from '@berth/apimachinery';
import { podResources, qosClassOf } from './qos';

export interface Signals {
  'memory.available': bigint;
  'nodefs.available': bigint;
  'pid.available': bigint;
  capacity: { memory: bigint; nodefs: bigint; pids: bigint };
}

/**
 * memory.available = capacity − working set of the root memory cgroup (usage − inactive file),
 * as the kubelet computes it; nodefs from statfs of `rootDir`; pids from pid_max and the count of
 * processes.
 */
export function readSignals(rootDir: string, cgroupRoot = '/sys/fs/cgroup', procRoot = '/proc'): Signals {
  const memTotal = BigInt(/^MemTotal:\s+(\d+) kB$/m.exec(fs.readFileSync(`${procRoot}/meminfo`, 'utf8'))![1]) * 1024n;
  let workingSet: bigint;
  try {
    const usage = BigInt(fs.readFileSync(`${cgroupRoot}/memory/memory.usage_in_bytes`, 'utf8').trim());
    const stat = fs.readFileSync(`${cgroupRoot}/memory/memory.stat`, 'utf8');
    const inactive = BigInt(/^total_inactive_file (\d+)$/m.exec(stat)?.[1] ?? /^inactive_file (\d+)$/m.exec(stat)?.[1] ?? '0');
    workingSet = usage > inactive ? usage - inactive : 0n;
  } catch {
    const avail = BigInt(/^MemAvailable:\s+(\d+) kB$/m.exec(fs.readFileSync(`${procRoot}/meminfo`, 'utf8'))![1]) * 1024n;
    workingSet = memTotal - avail;
  }
  const st = fs.statfsSync(rootDir, { bigint: true });
  const pidMax = BigInt(fs.readFileSync(`${procRoot}/sys/kernel/pid_max`, 'utf8').trim());
  const procs = BigInt(fs.readdirSync(procRoot).filter((n) => /^\d+$/.test(n)).length);
  return {
    'memory.available': memTotal - workingSet,
    'nodefs.available': st.bavail * st.bsize,
    'pid.available': pidMax - procs,
    capacity: { memory: memTotal, nodefs: st.blocks * st.bsize, pids: pidMax },
  };
}

export type SignalName = 'memory.available' | 'nodefs.available' | 'pid.available';

/** "100Mi" or "10%" of the signal's capacity → bytes (or pids). */
export function parseThreshold(signal: SignalName, value: string, capacity: bigint): bigint {
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(value);
  if (pct) {
    const v = Number(pct[1]);
    if (v < 0 || v > 100) throw new RangeError(`evictionHard.${signal}: percentage must be within 0-100%, got ${value}`);
    return (capacity * BigInt(Math.round(v * 1000))) / 100_000n;
  }
  try {
    return Quantity.parse(value).value();
  } catch (e) {
    throw new RangeError(`evictionHard.${signal}: ${(e as Error).message}`);
  }
}

export function thresholdsMet(s: Signals, hard: Partial<Record<SignalName, string>>): SignalName[] {
  const cap: Record<SignalName, bigint> = { 'memory.available': s.capacity.memory, 'nodefs.available': s.capacity.nodefs, 'pid.available': s.capacity.pids };
  return (Object.keys(hard) as SignalName[]).filter((k) => {
    if (!(k in cap)) throw new RangeError(`evictionHard.${k}: unknown signal (memory.available, nodefs.available, pid.available)`);
    return s[k] < parseThreshold(k, hard[k]!, cap[k]);
  });
}

export interface PodUsage {
  pod: core.Pod;
  /** Working set bytes (memory) or bytes written (nodefs) or process count (pids). */
  usage: bigint;
}

/**
 * Eviction order for a signal: pods using more than they requested first (BestEffort requests
 * nothing, so it is always over), then lower priority first, then most above its request.
 */
export function rankForEviction(pods: PodUsage[], signal: SignalName): PodUsage[] {
  const resource = signal === 'memory.available' ? 'memory' : signal === 'nodefs.available' ? 'ephemeral-storage' : undefined;
  const request = (p: core.Pod) => (resource && p.spec ? podResources(p.spec, 'requests').get(resource)?.value() ?? 0n : 0n);
  const over = (u: PodUsage) => u.usage - request(u.pod);
  const prio = (p: core.Pod) => p.spec?.priority ?? 0;
  return [...pods].sort((a, b) => {
    const ea = over(a) > 0n ? 0 : 1, eb = over(b) > 0n ? 0 : 1;
    if (ea !== eb) return ea - eb;
    if (prio(a.pod) !== prio(b.pod)) return prio(a.pod) - prio(b.pod);
    const d = over(b) - over(a);
    return d > 0n ? 1 : d < 0n ? -1 : 0;
  });
}

/** The status a pod evicted for `signal` gets (phase Failed, reason Evicted) and its message. */
export function evictionMessage(signal: SignalName, threshold: string, usage: bigint, request: bigint, container?: string): string {
  const res = signal === 'memory.available' ? 'memory' : signal === 'nodefs.available' ? 'ephemeral-storage' : 'pids';
  const detail = container ? ` Container ${container} was using ${usage}, request is ${request}.` : '';
  return `The node was low on resource: ${res}. Threshold quantity: ${threshold}.${detail}`;
}

