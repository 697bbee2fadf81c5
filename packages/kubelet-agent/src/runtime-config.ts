// The runtime requests a pod worker sends, built from the pod: the sandbox config (hostname, DNS,
// sysctls, namespaces, cgroup parent, log directory, labels the agent adopts pods by) and each
// container's config (image, command/args, env, mounts from the prepared volumes, resources with
// oom_score_adj, securityContext). Pure functions: checked here with the field path of the pod
// they came from, before anything reaches the runtime.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runtime, type core } from '@berth/api';
import { Quantity } from '@berth/apimachinery';
import { milliCpuToQuota, milliCpuToShares, DEFAULT_CFS_PERIOD_US } from './cgroups/plan';
import { ContainerConfigError, type EnvVar } from './env';
import { containerOomScoreAdj } from './qos';
import { CONTAINER_NAME_LABEL, NODE_NAME_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL } from './runtime-view';
import type { PreparedVolume } from './volumes';

/** Where the kubelet keeps a pod's container logs: <root>/logs/pods/<ns>_<name>_<uid>. */
export function podLogDir(rootDir: string, pod: core.Pod): string {
  const m = pod.metadata!;
  return path.join(rootDir, 'logs', 'pods', `${m.namespace || 'default'}_${m.name}_${m.uid}`);
}

export interface DnsDefaults {
  /** The node's resolv.conf (dnsPolicy Default, and ClusterFirst while there is no cluster DNS). */
  resolvConf?: string;
  clusterDNS?: string[];
  clusterDomain?: string;
}

/** Parses nameserver/search/options out of a resolv.conf text. */
export function parseResolvConf(text: string): runtime.DNSConfig {
  const out = runtime.DNSConfig.fromPartial({});
  for (const raw of text.split('\n')) {
    const [k, ...rest] = raw.replace(/[#;].*$/, '').trim().split(/\s+/);
    if (k === 'nameserver' && rest[0]) out.servers.push(rest[0]);
    else if (k === 'search') out.searches = rest;
    else if (k === 'options') out.options.push(...rest);
  }
  return out;
}

/** The pod's resolv.conf as Kubernetes builds it from dnsPolicy and dnsConfig. */
export function podDnsConfig(pod: core.Pod, d: DnsDefaults): runtime.DNSConfig | undefined {
  const spec = pod.spec!;
  const policy = spec.dnsPolicy || 'ClusterFirst';
  if (!['ClusterFirst', 'ClusterFirstWithHostNet', 'Default', 'None'].includes(policy)) throw new ContainerConfigError(`spec.dnsPolicy: unsupported value ${JSON.stringify(policy)} (ClusterFirst, ClusterFirstWithHostNet, Default, None)`);
  let base = runtime.DNSConfig.fromPartial({});
  const host = (): runtime.DNSConfig => {
    try {
      return parseResolvConf(fs.readFileSync(d.resolvConf ?? '/etc/resolv.conf', 'utf8'));
    } catch {
      return runtime.DNSConfig.fromPartial({});
    }
  };
  const ns = pod.metadata?.namespace || 'default';
  // ClusterFirst on the host network behaves as Default unless ClusterFirstWithHostNet is asked.
  const clusterFirst = policy === 'ClusterFirstWithHostNet' || (policy === 'ClusterFirst' && !spec.hostNetwork);
  if (policy !== 'None') {
    if (clusterFirst && d.clusterDNS?.length) {
      const dom = d.clusterDomain || 'cluster.local';
      base = runtime.DNSConfig.fromPartial({ servers: d.clusterDNS, searches: [`${ns}.svc.${dom}`, `svc.${dom}`, dom], options: ['ndots:5'] });
    } else base = host(); // Default, or no cluster DNS service yet: the node's resolv.conf
  }
  const c = spec.dnsConfig;
  if (c) {
    base.servers = [...new Set([...base.servers, ...c.nameservers])];
    base.searches = [...new Set([...base.searches, ...c.searches])];
    for (const o of c.options) {
      const opt = o.value !== undefined ? `${o.name}:${o.value}` : o.name;
      base.options = [...base.options.filter((x) => x.split(':')[0] !== o.name), opt];
    }
  }
  if (policy === 'None' && !base.servers.length) throw new ContainerConfigError('spec.dnsConfig.nameservers: at least one is required with dnsPolicy None');
  return base;
}

export interface SandboxInputs {
  rootDir: string;
  nodeName: string;
  attempt: number;
  cgroupParent: string;
  dns: DnsDefaults;
}

export function podLabels(pod: core.Pod, nodeName: string): Record<string, string> {
  const m = pod.metadata!;
  return { ...m.labels, [POD_UID_LABEL]: m.uid, [POD_NAME_LABEL]: m.name, [POD_NAMESPACE_LABEL]: m.namespace || 'default', [NODE_NAME_LABEL]: nodeName };
}

const nsMode = (node: boolean, shared = true) => (node ? runtime.NamespaceMode.NAMESPACE_MODE_NODE : shared ? runtime.NamespaceMode.NAMESPACE_MODE_POD : runtime.NamespaceMode.NAMESPACE_MODE_CONTAINER);

export function sandboxConfig(pod: core.Pod, inp: SandboxInputs): runtime.PodSandboxConfig {
  const m = pod.metadata!;
  const spec = pod.spec!;
  const sc = spec.securityContext;
  const sysctls: Record<string, string> = {};
  for (const [i, s] of (sc?.sysctls ?? []).entries()) {
    if (!/^[a-z0-9]([-_a-z0-9]*[a-z0-9])?([./][a-z0-9]([-_a-z0-9]*[a-z0-9])?)*$/.test(s.name)) throw new ContainerConfigError(`spec.securityContext.sysctls[${i}].name: ${JSON.stringify(s.name)} is not a sysctl name`);
    if (spec.hostNetwork && s.name.startsWith('net.')) throw new ContainerConfigError(`spec.securityContext.sysctls[${i}].name: ${s.name} cannot be set with hostNetwork (it is not namespaced then)`);
    sysctls[s.name] = s.value;
  }
  const hostname = spec.hostNetwork ? '' : (spec.hostname || m.name).slice(0, 63);
  const ports: runtime.PortMapping[] = [];
  for (const c of spec.containers) for (const p of c.ports) if (p.hostPort) ports.push(runtime.PortMapping.fromPartial({ protocol: p.protocol === 'UDP' ? runtime.Protocol.PROTOCOL_UDP : p.protocol === 'SCTP' ? runtime.Protocol.PROTOCOL_SCTP : runtime.Protocol.PROTOCOL_TCP, containerPort: p.containerPort, hostPort: p.hostPort, hostIp: p.hostIP }));
  return runtime.PodSandboxConfig.fromPartial({
    metadata: { name: m.name, uid: m.uid, namespace: m.namespace || 'default', attempt: inp.attempt },
    hostname,
    logDirectory: podLogDir(inp.rootDir, pod),
    dnsConfig: podDnsConfig(pod, inp.dns),
    portMappings: ports,
    labels: podLabels(pod, inp.nodeName),
    annotations: m.annotations,
    linux: {
      cgroupParent: inp.cgroupParent,
      sysctls,
      securityContext: {
        namespaceOptions: { network: nsMode(spec.hostNetwork), pid: nsMode(spec.hostPID, !!spec.shareProcessNamespace), ipc: nsMode(spec.hostIPC) },
        runAsUser: sc?.runAsUser,
        runAsGroup: sc?.runAsGroup,
        supplementalGroups: sc?.supplementalGroups ?? [],
        privileged: [...spec.initContainers, ...spec.containers].some((c) => c.securityContext?.privileged),
      },
    },
  });
}

/** The host path of a volumeMount (subPath resolved inside the volume, never out of it). */
export function mountSource(vol: PreparedVolume, mount: core.VolumeMount, field: string): string {
  const sub = mount.subPath;
  if (!sub) return vol.hostPath;
  if (path.isAbsolute(sub) || sub.split('/').includes('..')) throw new ContainerConfigError(`${field}.subPath: ${JSON.stringify(sub)} must be a relative path without '..'`);
  const target = path.join(vol.hostPath, sub);
  // The volume's content may be written by the container (hostile): a symlink in the subPath
  // would make the runtime mount something outside the volume.
  const real = fs.existsSync(target) ? fs.realpathSync(target) : target;
  const root = fs.realpathSync(vol.hostPath);
  if (real !== root && !real.startsWith(root + path.sep)) throw new ContainerConfigError(`${field}.subPath: ${JSON.stringify(sub)} resolves outside the volume`);
  if (!fs.existsSync(target)) fs.mkdirSync(target, { recursive: true, mode: 0o755 });
  return real;
}

export interface ContainerInputs {
  attempt: number;
  env: EnvVar[];
  command: string[];
  args: string[];
  volumes: PreparedVolume[];
  imageRef: string;
  memoryCapacityBytes: bigint;
  podUid: string;
}

const CAP = /^(CAP_)?[A-Z_]+$/;

export function containerConfig(pod: core.Pod, c: core.Container, field: string, inp: ContainerInputs): runtime.ContainerConfig {
  const byName = new Map(inp.volumes.map((v) => [v.name, v]));
  const seen = new Set<string>();
  const mounts = c.volumeMounts.map((vm, i) => {
    const f = `${field}.volumeMounts[${i}]`;
    const vol = byName.get(vm.name);
    if (!vol) throw new ContainerConfigError(`${f}.name: volume ${JSON.stringify(vm.name)} is not in spec.volumes`);
    if (!path.isAbsolute(vm.mountPath)) throw new ContainerConfigError(`${f}.mountPath: ${JSON.stringify(vm.mountPath)} must be an absolute path`);
    if (seen.has(vm.mountPath)) throw new ContainerConfigError(`${f}.mountPath: ${vm.mountPath} is mounted twice`);
    seen.add(vm.mountPath);
    const prop = vm.mountPropagation ?? 'None';
    const propagation = prop === 'HostToContainer' ? runtime.MountPropagation.MOUNT_PROPAGATION_HOST_TO_CONTAINER : prop === 'Bidirectional' ? runtime.MountPropagation.MOUNT_PROPAGATION_BIDIRECTIONAL : runtime.MountPropagation.MOUNT_PROPAGATION_PRIVATE;
    return runtime.Mount.fromPartial({ containerPath: vm.mountPath, hostPath: mountSource(vol, vm, f), readonly: vm.readOnly || vol.readOnly, propagation });
  });
  const sc = c.securityContext;
  const psc = pod.spec!.securityContext;
  for (const [k, list] of [['add', sc?.capabilities?.add ?? []], ['drop', sc?.capabilities?.drop ?? []]] as const) {
    for (const [i, cap] of list.entries()) if (cap !== 'ALL' && !CAP.test(cap)) throw new ContainerConfigError(`${field}.securityContext.capabilities.${k}[${i}]: ${JSON.stringify(cap)} is not a capability name`);
  }
  const runAsUser = sc?.runAsUser ?? psc?.runAsUser;
  const runAsNonRoot = sc?.runAsNonRoot ?? psc?.runAsNonRoot;
  if (runAsNonRoot && runAsUser === 0) throw new ContainerConfigError(`${field}.securityContext.runAsNonRoot: container's runAsUser breaks non-root policy (runAsUser 0)`);
  if (sc?.privileged && sc.allowPrivilegeEscalation === false) throw new ContainerConfigError(`${field}.securityContext.allowPrivilegeEscalation: cannot be false when privileged is true`);
  const m = pod.metadata!;
  return runtime.ContainerConfig.fromPartial({
    metadata: { name: c.name, attempt: inp.attempt },
    image: { image: inp.imageRef },
    command: inp.command,
    args: inp.args,
    workingDir: c.workingDir,
    envs: inp.env.map((e) => ({ key: e.name, value: e.value })),
    mounts,
    labels: { [POD_UID_LABEL]: m.uid, [POD_NAME_LABEL]: m.name, [POD_NAMESPACE_LABEL]: m.namespace || 'default', [CONTAINER_NAME_LABEL]: c.name },
    annotations: { 'io.kubernetes.container.restartCount': String(inp.attempt), 'io.kubernetes.container.image': c.image },
    logPath: path.join(c.name, `${inp.attempt}.log`),
    stdin: c.stdin,
    stdinOnce: c.stdinOnce,
    tty: c.tty,
    linux: {
      resources: containerResources(pod, c, inp.memoryCapacityBytes),
      securityContext: {
        capabilities: { add: sc?.capabilities?.add ?? [], drop: sc?.capabilities?.drop ?? [] },
        privileged: !!sc?.privileged,
        runAsUser,
        runAsGroup: sc?.runAsGroup ?? psc?.runAsGroup,
        readonlyRootfs: !!sc?.readOnlyRootFilesystem,
        supplementalGroups: psc?.supplementalGroups ?? [],
        noNewPrivs: sc?.allowPrivilegeEscalation === false,
        namespaceOptions: { network: nsMode(pod.spec!.hostNetwork), pid: nsMode(pod.spec!.hostPID, !!pod.spec!.shareProcessNamespace), ipc: nsMode(pod.spec!.hostIPC) },
      },
    },
  });
}

function qty(list: Record<string, string>, key: string): Quantity | undefined {
  const v = list[key];
  return v === undefined ? undefined : Quantity.parse(v);
}

/** A container's cgroup settings: shares from its CPU request, CFS quota and memory from limits. */
export function containerResources(pod: core.Pod, c: core.Container, memoryCapacityBytes: bigint): runtime.LinuxContainerResources {
  const req = c.resources?.requests ?? {};
  const lim = c.resources?.limits ?? {};
  // As the kubelet: a limit without a request requests the limit.
  const cpuReq = qty(req, 'cpu') ?? qty(lim, 'cpu');
  const cpuLim = qty(lim, 'cpu');
  const memLim = qty(lim, 'memory');
  return runtime.LinuxContainerResources.fromPartial({
    cpuShares: milliCpuToShares(cpuReq?.milli() ?? 0n),
    cpuPeriod: cpuLim ? DEFAULT_CFS_PERIOD_US : 0,
    cpuQuota: cpuLim ? milliCpuToQuota(cpuLim.milli()) : 0,
    memoryLimitInBytes: memLim ? Number(memLim.value()) : 0,
    oomScoreAdj: containerOomScoreAdj(pod, c, memoryCapacityBytes),
  });
}
