// NodeName: a pod that names its node (spec.nodeName) fits only that node.
import type { ClusterEvent, EnqueueExtensions, FilterPlugin } from '../../framework/interfaces';
import { unresolvable, type MaybeStatus } from '../../framework/status';
import type { NodeInfo, PodInfo } from '../../framework/types';

export const NAME = 'NodeName';
export const ERR_REASON = "node(s) didn't match the requested node name";
const REJECTED = unresolvable(ERR_REASON).withPlugin(NAME);

export class NodeName implements FilterPlugin, EnqueueExtensions {
  readonly name = NAME;
  filter(_s: unknown, pod: PodInfo, node: NodeInfo): MaybeStatus {
    if (!pod.wantsNode) return null;
    const want = pod.pod.spec?.nodeName;
    return !want || want === node.name ? null : REJECTED;
  }
  events(): ClusterEvent[] { return ['NodeAdd']; }
}
