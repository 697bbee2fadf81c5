// Terse builders for pods and nodes in table tests and the benchmark (the shape of
// kube-scheduler's st.MakePod()/st.MakeNode()).
import { core } from '@berth/api';

export interface PodOpts {
  ns?: string;
  uid?: string;
  labels?: Record<string, string>;
  node?: string;
  /** Requests of one container, e.g. { cpu: '100m', memory: '64Mi' }. */
  req?: Record<string, string>;
  /** Requests of more containers. */
  containers?: Record<string, string>[];
  initContainers?: { req: Record<string, string>; sidecar?: boolean }[];
  overhead?: Record<string, string>;
  priority?: number;
  nodeSelector?: Record<string, string>;
  affinity?: core.Affinity;
  tolerations?: Partial<core.Toleration>[];
  spread?: Partial<core.TopologySpreadConstraint>[];
  hostPorts?: { port: number; protocol?: string; ip?: string }[];
  images?: string[];
  schedulerName?: string;
  nominatedNodeName?: string;
  preemptionPolicy?: string;
  startTime?: string;
  deleting?: boolean;
  gates?: string[];
}

export function pod(name: string, o: PodOpts = {}): core.Pod {
  const containers = (o.containers ?? [o.req ?? {}]).map((req, i) => core.Container.fromPartial({
    name: `c${i}`,
    image: o.images?.[i] ?? 'busybox',
    resources: { requests: req },
    ports: i === 0 ? (o.hostPorts ?? []).map((p) => ({ containerPort: p.port, hostPort: p.port, protocol: p.protocol ?? 'TCP', hostIP: p.ip ?? '' })) : [],
  }));
  return core.Pod.fromPartial({
    metadata: {
      name, namespace: o.ns ?? 'default', uid: o.uid ?? `uid-${o.ns ?? 'default'}-${name}`, labels: o.labels ?? {},
      creationTimestamp: '2026-01-01T00:00:00Z', deletionTimestamp: o.deleting ? '2026-01-01T00:00:01Z' : '',
    },
    spec: {
      containers,
      initContainers: (o.initContainers ?? []).map((c, i) => ({ name: `init${i}`, image: 'busybox', resources: { requests: c.req }, ...(c.sidecar ? { restartPolicy: 'Always' } : {}) })),
      overhead: o.overhead ?? {},
      nodeName: o.node ?? '',
      priority: o.priority,
      nodeSelector: o.nodeSelector ?? {},
      affinity: o.affinity,
      tolerations: (o.tolerations ?? []).map((t) => core.Toleration.fromPartial(t)),
      topologySpreadConstraints: (o.spread ?? []).map((c) => core.TopologySpreadConstraint.fromPartial(c)),
      schedulerName: o.schedulerName ?? '',
      preemptionPolicy: o.preemptionPolicy,
      schedulingGates: (o.gates ?? []).map((name) => ({ name })),
    },
    status: { nominatedNodeName: o.nominatedNodeName ?? '', startTime: o.startTime ?? '' },
  });
}

export interface NodeOpts {
  labels?: Record<string, string>;
  /** Allocatable; defaults to 4 cpu, 8Gi, 110 pods. */
  alloc?: Record<string, string>;
  taints?: Partial<core.Taint>[];
  unschedulable?: boolean;
  images?: { names: string[]; size: number }[];
}

export function node(name: string, o: NodeOpts = {}): core.Node {
  return core.Node.fromPartial({
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...(o.labels ?? {}) } },
    spec: { unschedulable: o.unschedulable ?? false, taints: (o.taints ?? []).map((t) => core.Taint.fromPartial(t)) },
    status: {
      allocatable: o.alloc ?? { cpu: '4', memory: '8Gi', pods: '110' },
      images: (o.images ?? []).map((i) => ({ names: i.names, sizeBytes: i.size })),
    },
  });
}

/** A label selector from matchLabels. */
export const sel = (matchLabels: Record<string, string>): core.LabelSelector => core.LabelSelector.fromPartial({ matchLabels });

/** A pod (anti-)affinity term. */
export const term = (matchLabels: Record<string, string>, topologyKey: string, extra: Partial<core.PodAffinityTerm> = {}): core.PodAffinityTerm =>
  core.PodAffinityTerm.fromPartial({ labelSelector: sel(matchLabels), topologyKey, ...extra });
