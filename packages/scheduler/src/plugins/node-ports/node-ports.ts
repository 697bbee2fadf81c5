// NodePorts: the pod's hostPorts must be free on the node (same protocol and port, and the
// same host IP or either side on 0.0.0.0).
import type { ClusterEvent, CycleState, EnqueueExtensions, FilterPlugin, PreFilterPlugin } from '../../framework/interfaces';
import { SKIP, unschedulable, type MaybeStatus } from '../../framework/status';
import type { HostPort, NodeInfo, PodInfo } from '../../framework/types';

export const NAME = 'NodePorts';
export const ERR_REASON = "node(s) didn't have free ports for the requested pod ports";
const REJECTED = unschedulable(ERR_REASON).withPlugin(NAME);

export function portsConflict(want: readonly HostPort[], node: NodeInfo): boolean {
  for (const hp of want) {
    const ips = node.usedPorts.get(`${hp.protocol}/${hp.port}`);
    if (!ips?.length) continue;
    if (hp.hostIP === '0.0.0.0') return true;
    for (const ip of ips) if (ip === '0.0.0.0' || ip === hp.hostIP) return true;
  }
  return false;
}

export class NodePorts implements PreFilterPlugin, FilterPlugin, EnqueueExtensions {
  readonly name = NAME;
  preFilter(_s: CycleState, pod: PodInfo): { status: MaybeStatus } {
    return { status: pod.hostPorts.length ? null : SKIP };
  }
  filter(_s: CycleState, pod: PodInfo, node: NodeInfo): MaybeStatus {
    return pod.hostPorts.length && portsConflict(pod.hostPorts, node) ? REJECTED : null;
  }
  events(): ClusterEvent[] { return ['NodeAdd', 'AssignedPodDelete']; }
}
