// What NodeResourcesFit's scoring and NodeResourcesBalancedAllocation share: the
// (allocatable, requested-after-placing-the-pod) pair of each scored resource on a node.
import { z } from '@berth/common';
import type { NodeInfo, PodInfo } from '../framework/types';
import { isScalarResourceName } from '../framework/resource';

export const resourceSpecSchema = z.array(z.object({
  name: z.string().min(1),
  weight: z.number().int().min(1).max(100).default(1),
}).strict());
export type ResourceSpec = { name: string; weight: number };
export const DEFAULT_RESOURCES: ResourceSpec[] = [{ name: 'cpu', weight: 1 }, { name: 'memory', weight: 1 }];

/**
 * Fills alloc[i]/req[i] for each resource. `useRequested` takes the pods' real requests;
 * otherwise cpu and memory use the non-zero defaults for containers that request nothing.
 * A scalar resource the pod does not request gets (0, 0) and is skipped by the scorers.
 */
export function allocatableAndRequested(
  node: NodeInfo, pod: PodInfo, resources: readonly ResourceSpec[], useRequested: boolean, alloc: number[], req: number[],
): void {
  for (let i = 0; i < resources.length; i++) {
    const name = resources[i].name;
    switch (name) {
      case 'cpu':
        alloc[i] = node.allocatable.milliCPU;
        req[i] = useRequested ? node.requested.milliCPU + pod.requests.milliCPU : node.nonZeroCPU + pod.nonZeroCPU;
        break;
      case 'memory':
        alloc[i] = node.allocatable.memory;
        req[i] = useRequested ? node.requested.memory + pod.requests.memory : node.nonZeroMemory + pod.nonZeroMemory;
        break;
      case 'ephemeral-storage':
        alloc[i] = node.allocatable.ephemeralStorage;
        req[i] = node.requested.ephemeralStorage + pod.requests.ephemeralStorage;
        break;
      default: {
        const podReq = pod.requests.scalar?.get(name) ?? 0;
        if (podReq === 0 && isScalarResourceName(name)) { alloc[i] = 0; req[i] = 0; break; }
        alloc[i] = node.allocatable.scalar?.get(name) ?? 0;
        req[i] = (node.requested.scalar?.get(name) ?? 0) + podReq;
      }
    }
  }
}
