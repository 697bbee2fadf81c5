// ImageLocality: favours nodes that already hold the pod's images, weighted by image size and
// by how widely the image is spread (to avoid piling pods onto the one node that has it).
import type { CycleState, PreScorePlugin, ScorePlugin } from '../../framework/interfaces';
import { SKIP, type MaybeStatus } from '../../framework/status';
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

export class ImageLocality implements PreScorePlugin, ScorePlugin {
  readonly name = NAME;
  constructor(private readonly cache: SchedulerCache) {}

  /** Normalized image names of a pod's containers, computed once per pod. */
  private readonly imagesOf = new WeakMap<PodInfo, string[]>();

  private images(pod: PodInfo): string[] {
    let images = this.imagesOf.get(pod);
    if (!images) {
      const spec = pod.pod.spec;
      images = [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])].map((c) => normalizedImageName(c.image));
      this.imagesOf.set(pod, images);
    }
    return images;
  }

  /** When no node holds any of the pod's images every node scores 0: skip the per-node work. */
  preScore(_s: CycleState, pod: PodInfo): MaybeStatus {
    return this.images(pod).some((img) => this.cache.imageNodeCount(img) > 0) ? null : SKIP;
  }

  score(_s: CycleState, pod: PodInfo, node: NodeInfo): number {
    const images = this.images(pod);
    if (!images.length) return 0;
    const total = this.cache.nodeCount();
    let sum = 0;
    if (node.images.size) {
      for (const img of images) {
        const size = node.images.get(img);
        if (size !== undefined) sum += Math.trunc(size * (this.cache.imageNodeCount(img) / total));
      }
    }
    return calculatePriority(sum, images.length);
  }
}
