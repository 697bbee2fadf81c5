// The agent's own options (beyond the common --listen/--state-dir/--config...): node identity,
// the endpoints of the services it drives, reserved resources, eviction and GC thresholds, static
// pod sources. Flags > environment > config file (YAML/JSON), as for every Berth service; an
// invalid value exits 2 naming the option.
import { storeClientOptions, storeClientSchema } from '@berth/apimachinery';
import { z, type OptionSpec } from '@berth/common';

const endpoint = z.string().regex(/^(unix:\/\/\/.+|[^\s/]+:\d+)$/, { message: 'expected unix:///absolute/path or host:port' });
const resourceList = z.union([z.array(z.string()), z.record(z.string(), z.string())]);
const percent = z.number().int().min(0).max(100);

export const agentSchema = {
  nodeName: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, { message: 'must be a lowercase DNS subdomain' }).optional(),
  nodeIp: z.string().optional(),
  runtimeEndpoint: endpoint.optional(),
  imageEndpoint: endpoint.optional(),
  cniEndpoint: endpoint.optional(),
  ...storeClientSchema,
  bootstrapToken: z.string().regex(/^[a-z0-9]{6}\.[a-z0-9]{16}$/, { message: 'expected a bootstrap token <id>.<secret> ([a-z0-9]{6}.[a-z0-9]{16})' }).optional(),
  podCidr: z.string().regex(/^[0-9a-fA-F.:]+\/\d{1,3}$/, { message: 'expected a CIDR like 10.244.1.0/24' }).optional(),
  maxPods: z.number().int().min(1).max(10_000).default(110),
  systemReserved: resourceList.optional(),
  kubeReserved: resourceList.optional(),
  evictionHard: resourceList.optional(),
  imageGcHighThresholdPercent: percent.default(85),
  imageGcLowThresholdPercent: percent.default(80),
  staticPodPath: z.string().optional(),
  manifestUrl: z.string().regex(/^https?:\/\//, { message: 'expected an http:// or https:// URL' }).optional(),
  nodeLabels: resourceList.optional(),
  registerWithTaints: z.array(z.string()).optional(),
  cgroupRoot: z.string().default('/sys/fs/cgroup'),
  podCgroupParent: z.string().regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, { message: 'expected a relative cgroup path like berth/node-a' }).refine((v) => !v.split('/').some((s) => s === '.' || s === '..'), { message: "must not contain '.' or '..'" }).optional(),
  clusterDns: z.array(z.string()).optional(),
  clusterDomain: z.string().default('cluster.local'),
  syncFrequencyMs: z.number().int().min(1000).default(60_000),
};

export const agentOptions: Record<string, OptionSpec> = {
  nodeName: { flag: 'node-name', type: 'string', env: 'BERTH_NODE_NAME', description: 'name of this node (default: the hostname, lowercased)' },
  nodeIp: { flag: 'node-ip', type: 'string', description: 'InternalIP to report (default: first non-loopback IPv4)' },
  runtimeEndpoint: { flag: 'runtime-endpoint', type: 'string', description: 'runtime-shim RuntimeService (default unix://$BERTH_RUN_DIR/runtime-shim.sock)' },
  imageEndpoint: { flag: 'image-endpoint', type: 'string', description: 'runtime-shim ImageService (default: the runtime endpoint)' },
  cniEndpoint: { flag: 'cni-endpoint', type: 'string', description: 'cni-manager NetworkService (default unix://$BERTH_RUN_DIR/cni-manager.sock)' },
  ...storeClientOptions,
  bootstrapToken: { flag: 'bootstrap-token', type: 'string', env: 'BERTH_BOOTSTRAP_TOKEN', description: 'token to join with while the node has no certificate' },
  podCidr: { flag: 'pod-cidr', type: 'string', description: 'pod IP range of this node' },
  maxPods: { flag: 'max-pods', type: 'number', description: 'pods this node accepts (default 110)' },
  systemReserved: { flag: 'system-reserved', type: 'list', description: 'resources kept for the OS, e.g. cpu=500m,memory=1Gi' },
  kubeReserved: { flag: 'kube-reserved', type: 'list', description: 'resources kept for the node agents, e.g. cpu=250m,memory=512Mi' },
  evictionHard: { flag: 'eviction-hard', type: 'list', description: 'hard eviction thresholds, e.g. memory.available<100Mi,nodefs.available<10%' },
  imageGcHighThresholdPercent: { flag: 'image-gc-high-threshold', type: 'number', description: 'disk usage % that starts image GC (default 85)' },
  imageGcLowThresholdPercent: { flag: 'image-gc-low-threshold', type: 'number', description: 'disk usage % image GC frees down to (default 80)' },
  staticPodPath: { flag: 'pod-manifest-path', type: 'string', description: 'directory of static pod manifests' },
  manifestUrl: { flag: 'manifest-url', type: 'string', description: 'URL of static pod manifests' },
  nodeLabels: { flag: 'node-labels', type: 'list', description: 'extra node labels, e.g. example.com/pool=blue' },
  registerWithTaints: { flag: 'register-with-taints', type: 'list', description: 'taints to register with, key[=value]:Effect' },
  cgroupRoot: { flag: 'cgroup-root', type: 'string', description: 'cgroup filesystem root (default /sys/fs/cgroup)' },
  podCgroupParent: { flag: 'pod-cgroup-parent', type: 'string', description: 'cgroup the kubepods tree is made under, below --cgroup-root (default berth/<node-name> on the machine cgroupfs, none under a per-node --cgroup-root)' },
  clusterDns: { flag: 'cluster-dns', type: 'list', description: 'DNS server IPs for ClusterFirst pods (default: none, the node resolv.conf is used)' },
  clusterDomain: { flag: 'cluster-domain', type: 'string', description: 'cluster DNS domain (default cluster.local)' },
  syncFrequencyMs: { flag: 'sync-frequency-ms', type: 'number', description: 'resync every pod at least this often (default 60000)' },
};

/** "k=v" items (flags) or a map (config file) → a map; `sep` is '=' or '<' (eviction). */
export function keyValues(v: string[] | Record<string, string> | undefined, option: string, sep: '=' | '<' = '='): Record<string, string> {
  if (!v) return {};
  if (!Array.isArray(v)) return { ...v };
  const out: Record<string, string> = {};
  for (const item of v) {
    const i = item.indexOf(sep);
    if (i <= 0 || i === item.length - 1) throw new RangeError(`${option}: expected key${sep}value, got ${JSON.stringify(item)}`);
    out[item.slice(0, i).trim()] = item.slice(i + 1).trim();
  }
  return out;
}

export interface TaintSpec {
  key: string;
  value: string;
  effect: string;
  timeAdded: string;
}

export function parseTaints(items: string[] | undefined): TaintSpec[] {
  return (items ?? []).map((t) => {
    const m = /^([A-Za-z0-9][-A-Za-z0-9_./]*)(?:=([^:]*))?:(NoSchedule|PreferNoSchedule|NoExecute)$/.exec(t);
    if (!m) throw new RangeError(`register-with-taints: expected key[=value]:NoSchedule|PreferNoSchedule|NoExecute, got ${JSON.stringify(t)}`);
    return { key: m[1], value: m[2] ?? '', effect: m[3], timeAdded: '' };
  });
}

export type AgentConfig = { [K in keyof typeof agentSchema]: z.infer<(typeof agentSchema)[K]> };

/** Cross-field checks zod cannot express per key; throws naming the option. */
export function checkAgentConfig(c: AgentConfig): void {
  if (c.imageGcLowThresholdPercent > c.imageGcHighThresholdPercent) throw new RangeError(`image-gc-low-threshold (${c.imageGcLowThresholdPercent}) must not be above image-gc-high-threshold (${c.imageGcHighThresholdPercent})`);
  if ((c.storeCert && !c.storeKey) || (!c.storeCert && c.storeKey)) throw new RangeError('store-cert and store-key must be given together');
  keyValues(c.systemReserved, 'system-reserved');
  keyValues(c.kubeReserved, 'kube-reserved');
  const ev = keyValues(c.evictionHard, 'eviction-hard', '<');
  for (const k of Object.keys(ev)) if (!['memory.available', 'nodefs.available', 'pid.available'].includes(k)) throw new RangeError(`eviction-hard: unknown signal ${JSON.stringify(k)} (memory.available, nodefs.available, pid.available)`);
  parseTaints(c.registerWithTaints);
}
