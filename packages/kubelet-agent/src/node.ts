// What the agent tells the cluster about its node, read from the real machine: capacity and
// allocatable (cpu, memory, pods, ephemeral-storage — the machine's, capped by the root cgroups
// the pods will live in), addresses, nodeInfo, the well-known labels, and the node conditions
// with heartbeat/transition times.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { core } from '@berth/api';
import { Quantity } from '@berth/apimachinery';
import { rfc3339 } from './status/compute';

export interface NodeConfig {
  nodeName?: string;
  /** Directory whose filesystem holds pod data (ephemeral-storage). */
  rootDir: string;
  maxPods?: number;
  /** ResourceLists reserved for the OS and for the node agents. */
  systemReserved?: Record<string, string>;
  kubeReserved?: Record<string, string>;
  /** Hard eviction thresholds: memory.available as a quantity, nodefs.available as "10%" or a quantity. */
  evictionHard?: { 'memory.available'?: string; 'nodefs.available'?: string };
  nodeIP?: string;
  labels?: Record<string, string>;
  taints?: core.Taint[];
  /** This node's pod IP range (--pod-cidr): registered as spec.podCIDR/podCIDRs when the Node has none. */
  podCidr?: string;
  runtimeVersion?: string;
  agentVersion?: string;
  cgroupRoot?: string;
  procRoot?: string;
  etcRoot?: string;
}

export interface MachineFacts {
  cpus: number;
  memoryBytes: bigint;
  ephemeralBytes: bigint;
}

function readOr(p: string, fallback = ''): string {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return fallback;
  }
}

/** Number of CPUs in a cpuset list like "0-3,8,10-11". */
export function countCpuList(list: string): number {
  let n = 0;
  for (const part of list.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new RangeError(`cpuset list: ${JSON.stringify(part)} is not N or N-M`);
    n += m[2] ? Number(m[2]) - Number(m[1]) + 1 : 1;
  }
  return n;
}

export function machineFacts(cfg: Pick<NodeConfig, 'rootDir' | 'cgroupRoot' | 'procRoot'>): MachineFacts {
  const proc = cfg.procRoot ?? '/proc';
  const cg = cfg.cgroupRoot ?? '/sys/fs/cgroup';
  let cpus = os.cpus().length;
  const cpuset = readOr(path.join(cg, 'cpuset', 'cpuset.cpus')) || readOr(path.join(cg, 'cpuset.cpus.effective'));
  if (cpuset) cpus = Math.min(cpus, countCpuList(cpuset));
  const mem = /^MemTotal:\s+(\d+) kB$/m.exec(readOr(path.join(proc, 'meminfo')));
  if (!mem) throw new Error(`${path.join(proc, 'meminfo')}: no MemTotal line`);
  let memoryBytes = BigInt(mem[1]) * 1024n;
  const limit = readOr(path.join(cg, 'memory', 'memory.limit_in_bytes'));
  if (/^\d+$/.test(limit) && BigInt(limit) < memoryBytes) memoryBytes = BigInt(limit);
  const st = fs.statfsSync(cfg.rootDir, { bigint: true });
  return { cpus, memoryBytes, ephemeralBytes: st.blocks * st.bsize };
}

function q(s: string | undefined, field: string): Quantity {
  try {
    return Quantity.parse(s ?? '0');
  } catch (e) {
    throw new RangeError(`${field}: ${(e as Error).message}`);
  }
}

/** capacity and allocatable = capacity − system-reserved − kube-reserved − hard eviction threshold. */
export function nodeResources(cfg: NodeConfig, m: MachineFacts): { capacity: Record<string, string>; allocatable: Record<string, string> } {
  const maxPods = cfg.maxPods ?? 110;
  if (!Number.isInteger(maxPods) || maxPods < 1) throw new RangeError(`maxPods: must be a positive integer, got ${maxPods}`);
  const capacity: Record<string, Quantity> = {
    cpu: Quantity.parse(String(m.cpus)),
    memory: Quantity.fromNanos(m.memoryBytes * 1_000_000_000n, 'BinarySI'),
    pods: Quantity.parse(String(maxPods)),
    'ephemeral-storage': Quantity.fromNanos(m.ephemeralBytes * 1_000_000_000n, 'BinarySI'),
  };
  const alloc: Record<string, Quantity> = { ...capacity };
  for (const [name, list] of [['systemReserved', cfg.systemReserved], ['kubeReserved', cfg.kubeReserved]] as const) {
    for (const [k, v] of Object.entries(list ?? {})) {
      if (!(k in alloc)) throw new RangeError(`${name}.${k}: unknown resource (cpu, memory, pods, ephemeral-storage)`);
      alloc[k] = alloc[k].sub(q(v, `${name}.${k}`));
    }
  }
  const ev = cfg.evictionHard ?? { 'memory.available': '100Mi', 'nodefs.available': '10%' };
  if (ev['memory.available']) alloc.memory = alloc.memory.sub(q(ev['memory.available'], 'evictionHard.memory.available'));
  const nodefs = ev['nodefs.available'];
  if (nodefs) {
    const pct = /^(\d+(?:\.\d+)?)%$/.exec(nodefs);
    const cut = pct ? Quantity.fromNanos((m.ephemeralBytes * BigInt(Math.round(Number(pct[1]) * 100)) / 10_000n) * 1_000_000_000n) : q(nodefs, 'evictionHard.nodefs.available');
    alloc['ephemeral-storage'] = alloc['ephemeral-storage'].sub(cut);
  }
  const out = (l: Record<string, Quantity>) => Object.fromEntries(Object.entries(l).map(([k, v]) => [k, (v.nanos < 0n ? Quantity.zero() : v).toString()]));
  return { capacity: out(capacity), allocatable: out(alloc) };
}

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function goArch(nodeArch = process.arch): string {
  return ARCH[nodeArch] ?? nodeArch;
}

/** The first non-internal IPv4 (then IPv6) address of the machine, unless configured. */
export function nodeAddresses(cfg: Pick<NodeConfig, 'nodeIP' | 'nodeName'>): core.NodeAddress[] {
  const out: core.NodeAddress[] = [];
  let ip = cfg.nodeIP;
  if (!ip) {
    const all = Object.values(os.networkInterfaces()).flat().filter((a): a is os.NetworkInterfaceInfo => !!a && !a.internal);
    ip = (all.find((a) => a.family === 'IPv4') ?? all.find((a) => a.family === 'IPv6' && !a.address.startsWith('fe80')))?.address;
  }
  if (ip) out.push({ type: 'InternalIP', address: ip });
  out.push({ type: 'Hostname', address: (cfg.nodeName ?? os.hostname()).toLowerCase() });
  return out;
}

export function nodeSystemInfo(cfg: Pick<NodeConfig, 'runtimeVersion' | 'agentVersion' | 'procRoot' | 'etcRoot'>): core.NodeSystemInfo {
  const proc = cfg.procRoot ?? '/proc';
  const etc = cfg.etcRoot ?? '/etc';
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readOr(path.join(etc, 'os-release')));
  return core.NodeSystemInfo.fromPartial({
    machineID: readOr(path.join(etc, 'machine-id')),
    systemUUID: readOr('/sys/class/dmi/id/product_uuid'),
    bootID: readOr(path.join(proc, 'sys/kernel/random/boot_id')),
    kernelVersion: os.release(),
    osImage: pretty?.[1] ?? 'Linux',
    containerRuntimeVersion: cfg.runtimeVersion ?? 'berth://0.1.0',
    kubeletVersion: cfg.agentVersion ?? 'v0.1.0-berth',
    kubeProxyVersion: '',
    operatingSystem: 'linux',
    architecture: goArch(),
  });
}

/** The Node object to register. */
export function buildNode(cfg: NodeConfig, m: MachineFacts = machineFacts(cfg)): core.Node {
  const name = (cfg.nodeName ?? os.hostname()).toLowerCase();
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(name)) throw new RangeError(`nodeName: ${JSON.stringify(name)} is not a DNS subdomain`);
  const { capacity, allocatable } = nodeResources(cfg, m);
  return core.Node.fromPartial({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      labels: { ...(cfg.labels ?? {}), 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': goArch() },
    },
    spec: { taints: cfg.taints ?? [], ...(cfg.podCidr ? { podCIDR: cfg.podCidr, podCIDRs: [cfg.podCidr] } : {}) },
    status: { capacity, allocatable, addresses: nodeAddresses(cfg), nodeInfo: nodeSystemInfo(cfg), conditions: [] },
  });
}

/**
 * The warning for a --pod-cidr that differs from the registered Node's spec.podCIDR (which is
 * kept: like Kubernetes, it is set once and never changed), or undefined when they agree.
 */
export function podCidrConflict(wanted: core.Node, saved: core.Node): string | undefined {
  const want = wanted.spec?.podCIDR;
  const have = saved.spec?.podCIDR;
  if (!want || !have || want === have) return undefined;
  return `--pod-cidr ${want} differs from Node ${saved.metadata?.name ?? ''} spec.podCIDR ${have}; keeping ${have} (spec.podCIDR is never changed once set)`;
}

export interface NodeHealth {
  memoryPressure: boolean;
  diskPressure: boolean;
  pidPressure: boolean;
  /** Why the node is not ready (runtime or network down), or undefined when it is. */
  notReadyReason?: string;
}

const CONDITION_TEXT: Record<string, [string, string, string, string]> = {
  MemoryPressure: ['KubeletHasInsufficientMemory', 'kubelet has insufficient memory available', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'],
  DiskPressure: ['KubeletHasDiskPressure', 'kubelet has disk pressure', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'],
  PIDPressure: ['KubeletHasInsufficientPID', 'kubelet has insufficient PID available', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'],
};

/** Node conditions: heartbeat time always now, transition time kept while the status holds. */
export function nodeConditions(prev: core.NodeCondition[], h: NodeHealth, now: number): core.NodeCondition[] {
  const ts = rfc3339(now);
  const mk = (type: string, status: 'True' | 'False', reason: string, message: string): core.NodeCondition => {
    const old = prev.find((c) => c.type === type);
    return { type, status, reason, message, lastHeartbeatTime: ts, lastTransitionTime: old && old.status === status ? old.lastTransitionTime : ts };
  };
  const out: core.NodeCondition[] = [];
  for (const [type, on] of [['MemoryPressure', h.memoryPressure], ['DiskPressure', h.diskPressure], ['PIDPressure', h.pidPressure]] as const) {
    const t = CONDITION_TEXT[type];
    out.push(on ? mk(type, 'True', t[0], t[1]) : mk(type, 'False', t[2], t[3]));
  }
  out.push(h.notReadyReason ? mk('Ready', 'False', 'KubeletNotReady', h.notReadyReason) : mk('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status'));
  return out;
}

/** Report node status when a condition's status changed, or every `reportEveryMs` (5 min) anyway. */
export function shouldReportNodeStatus(prev: core.NodeCondition[], next: core.NodeCondition[], lastReport: number | undefined, now: number, reportEveryMs = 300_000): boolean {
  if (lastReport === undefined || now - lastReport >= reportEveryMs) return true;
  return next.some((c) => prev.find((p) => p.type === c.type)?.status !== c.status);
}
