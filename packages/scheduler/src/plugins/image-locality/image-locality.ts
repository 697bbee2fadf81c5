// ImageLocality: favours nodes that already hold the pod's images, weighted by image size and
// by how widely the image is spread (to avoid piling pods onto the one node that has it).
import type { CycleState, ScorePlugin } from '../../framework/interfaces';
import { MAX_NODE_SCORE, normalizedImageName, type NodeInfo, type PodInfo } from '../../framework/types';
import type { SchedulerCache } from '../../cache';

export const NAME = 'ImageLocality';
const MB = 1024 * 1024;
const MIN_THRESHOLD = 23 * MB;
const MAX_CONTAINER_THRESHOLD = 1000 * MB;

export function calculatePriority(sumScores: number, numContainers: number): number {
  const maxThreshold = MAX_CONTAINER_THRESHOLD * numContainers;
  if (sumScores < MIN_THRESHOLD) sumScores = MIN_THRESHOLD;
  else if (sumScores > maxThreshold) sumScores = maxThreshold;
  return Math.trunc((MAX_NODE_SCORE * (sumScores - MIN_THRESHOLD)) / (maxThreshold - MIN_THRESHOLD));
}

export class ImageLocality implements ScorePlugin {
  readonly name = NAME;
  constructor(private readonly cache: SchedulerCache) {}

  score(_s: CycleState, pod: PodInfo, node: NodeInfo): number {
    const spec = pod.pod.spec;
    const containers = [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])];
    if (!containers.length) return 0;
    const total = this.cache.nodeCount();
    let sum = 0;
    if (node.images.size) {
      for (const c of containers) {
        const img = normalizedImageName(c.image);
        const size = node.images.get(img);
        if (size !== undefined) sum += Math.trunc(size * (this.cache.imageNodeCount(img) / total));
      }
    }
    return calculatePriority(sum, containers.length);
  }
}
