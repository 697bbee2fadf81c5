// NodeResourcesBalancedAllocation: favours nodes whose resources would be used evenly after
// placing the pod (1 - standard deviation of the used fractions).
import { z } from '@berth/common';
import type { CycleState, PreScorePlugin, ScorePlugin } from '../../framework/interfaces';
import { SKIP, type MaybeStatus } from '../../framework/status';
import { MAX_NODE_SCORE, type NodeInfo, type PodInfo } from '../../framework/types';
import { allocatableAndRequested, DEFAULT_RESOURCES, resourceSpecSchema, type ResourceSpec } from '../resource-allocation';

export const NAME = 'NodeResourcesBalancedAllocation';
export const argsSchema = z.object({ resources: resourceSpecSchema.default(DEFAULT_RESOURCES) }).strict();

export function balancedScore(req: readonly number[], alloc: readonly number[]): number {
  const fractions: number[] = [];
  let total = 0;
  for (let i = 0; i < req.length; i++) {
    if (alloc[i] === 0) continue;
    const f = Math.min(1, req[i] / alloc[i]);
    total += f;
    fractions.push(f);
  }
  let std = 0;
  if (fractions.length === 2) std = Math.abs((fractions[0] - fractions[1]) / 2);
  else if (fractions.length > 2) {
    const mean = total / fractions.length;
    let sum = 0;
    for (const f of fractions) sum += (f - mean) * (f - mean);
    std = Math.sqrt(sum / fractions.length);
  }
  return Math.trunc((1 - std) * MAX_NODE_SCORE);
}

export class NodeResourcesBalancedAllocation implements PreScorePlugin, ScorePlugin {
  readonly name = NAME;
  private readonly resources: ResourceSpec[];
  private readonly alloc: number[] = [];
  private readonly req: number[] = [];

  constructor(input: z.input<typeof argsSchema> = {}) {
    this.resources = argsSchema.parse(input).resources;
  }

  preScore(_s: CycleState, pod: PodInfo): MaybeStatus {
    // A best-effort pod would otherwise pile onto the same nodes (kubernetes#129138).
    const r = pod.requests;
    const bestEffort = r.milliCPU === 0 && r.memory === 0 && r.ephemeralStorage === 0 && !(r.scalar && [...r.scalar.values()].some((v) => v > 0));
    return bestEffort ? SKIP : null;
  }

  score(_s: CycleState, pod: PodInfo, node: NodeInfo): number {
    allocatableAndRequested(node, pod, this.resources, true, this.alloc, this.req);
    return balancedScore(this.req, this.alloc);
  }
}
