// Node admission of a pod, as the kubelet's resource predicate does it before running anything:
// the pods already admitted on this node plus the new one must fit the node's allocatable pods,
// CPU, memory and ephemeral storage (requests). A pod that does not fit is rejected for good —
// phase Failed with reason OutOf<resource> and the kubelet's message —; the rest of the node runs on.
import type { core } from '@berth/api';
import { Quantity } from '@berth/apimachinery';
import { podResources } from './qos';

export interface Rejection {
  reason: string;
  message: string;
}

const CHECKED = ['cpu', 'memory', 'ephemeral-storage'] as const;

/** Amount in the unit the kubelet reports: millicores for cpu, bytes otherwise. */
function amount(resource: string, q: Quantity): bigint {
  return resource === 'cpu' ? q.milli() : q.value();
}

export function admitPod(pod: core.Pod, admitted: core.Pod[], allocatable: Record<string, string>): Rejection | undefined {
  const reject = (resource: string, requested: bigint, used: bigint, capacity: bigint): Rejection => ({
    reason: `OutOf${resource}`,
    message: `Pod was rejected: Node didn't have enough resource: ${resource}, requested: ${requested}, used: ${used}, capacity: ${capacity}`,
  });
  const pods = allocatable.pods !== undefined ? BigInt(Quantity.parse(allocatable.pods).value()) : undefined;
  if (pods !== undefined && BigInt(admitted.length) + 1n > pods) return reject('pods', 1n, BigInt(admitted.length), pods);
  const want = podResources(pod.spec!, 'requests');
  for (const r of CHECKED) {
    const req = want.get(r);
    const cap = allocatable[r];
    if (!req || cap === undefined) continue;
    const requested = amount(r, req);
    if (requested === 0n) continue;
    let used = 0n;
    for (const p of admitted) {
      const q = p.spec ? podResources(p.spec, 'requests').get(r) : undefined;
      if (q) used += amount(r, q);
    }
    const capacity = amount(r, Quantity.parse(cap));
    if (used + requested > capacity) return reject(r, requested, used, capacity);
  }
  return undefined;
}
