// NodeUnschedulable: a cordoned node (spec.unschedulable) takes only pods that tolerate
// the node.kubernetes.io/unschedulable:NoSchedule taint.
import type { ClusterEvent, EnqueueExtensions, FilterPlugin } from '../../framework/interfaces';
import { unresolvable, type MaybeStatus } from '../../framework/status';
import { tolerated, type NodeInfo, type PodInfo } from '../../framework/types';

export const NAME = 'NodeUnschedulable';
export const ERR_REASON_UNSCHEDULABLE = 'node(s) were unschedulable';
const REJECTED = unresolvable(ERR_REASON_UNSCHEDULABLE).withPlugin(NAME);
const TAINT = { key: 'node.kubernetes.io/unschedulable', value: '', effect: 'NoSchedule', timeAdded: '' };

export class NodeUnschedulable implements FilterPlugin, EnqueueExtensions {
  readonly name = NAME;
  filter(_s: unknown, pod: PodInfo, node: NodeInfo): MaybeStatus {
    if (!node.unschedulable || tolerated(pod.tolerations, TAINT)) return null;
    return REJECTED;
  }
  events(): ClusterEvent[] { return ['NodeAdd', 'NodeSpecUnschedulableChange', 'NodeTaintChange']; }
}
