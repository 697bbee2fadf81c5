// What the agent asks of cni-manager for a pod: the SetUpPod/TearDownPod requests built from the
// pod (sandbox id, netns path, host ports, bandwidth annotations), and the adapter that turns the
// generated NetworkService client into the PodNetwork seam.
import { cni, type core } from '@berth/api';
import { Quantity } from '@berth/apimachinery';
import { promisify, type PodNetwork } from './seams';

export const INGRESS_BANDWIDTH = 'kubernetes.io/ingress-bandwidth';
export const EGRESS_BANDWIDTH = 'kubernetes.io/egress-bandwidth';

/** Bandwidth from the pod's annotations ("10M" = 10 Mbit/s), or undefined when none is set. */
export function podBandwidth(annotations: Record<string, string>): cni.Bandwidth | undefined {
  const rate = (key: string): number => {
    const v = annotations[key];
    if (v === undefined) return 0;
    let bits: bigint;
    try {
      bits = Quantity.parse(v).value();
    } catch (e) {
      throw new RangeError(`metadata.annotations[${key}]: ${(e as Error).message}`);
    }
    // Kubernetes' bounds: at least 1 kbit/s, at most 1 Pbit/s.
    if (bits < 1000n || bits > 10n ** 15n) throw new RangeError(`metadata.annotations[${key}]: ${v} is outside 1k..1P bits per second`);
    return Number(bits);
  };
  const ingress = rate(INGRESS_BANDWIDTH);
  const egress = rate(EGRESS_BANDWIDTH);
  if (!ingress && !egress) return undefined;
  return cni.Bandwidth.fromPartial({ ingressRate: ingress, egressRate: egress });
}

export function hostPortMappings(pod: core.Pod): cni.PortMapping[] {
  const out: cni.PortMapping[] = [];
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports) {
      if (!p.hostPort) continue;
      out.push({ protocol: (p.protocol || 'TCP').toLowerCase(), containerPort: p.containerPort, hostPort: p.hostPort, hostIp: p.hostIP });
    }
  }
  return out;
}

export function setUpRequest(pod: core.Pod, sandboxId: string, netnsPath: string): cni.SetUpPodRequest {
  const m = pod.metadata!;
  return cni.SetUpPodRequest.fromPartial({
    podUid: m.uid,
    podNamespace: m.namespace || 'default',
    podName: m.name,
    sandboxId,
    netnsPath,
    annotations: m.annotations,
    portMappings: hostPortMappings(pod),
    bandwidth: podBandwidth(m.annotations ?? {}),
  });
}

export function tearDownRequest(pod: core.Pod, sandboxId: string, netnsPath = ''): cni.TearDownPodRequest {
  const m = pod.metadata!;
  return cni.TearDownPodRequest.fromPartial({ podUid: m.uid, podNamespace: m.namespace || 'default', podName: m.name, sandboxId, netnsPath });
}

/** The pod IPs of a SetUpPod answer, without prefix lengths ("10.244.0.5/24" → "10.244.0.5"). */
export function podIPs(res: cni.SetUpPodResponse | cni.PodNetworkStatusResponse): string[] {
  return res.ips.map((c) => c.split('/')[0]);
}

export function networkSeam(client: unknown): PodNetwork {
  return promisify<PodNetwork>(client as Record<string, unknown>, ['setUpPod', 'tearDownPod', 'podNetworkStatus']);
}
