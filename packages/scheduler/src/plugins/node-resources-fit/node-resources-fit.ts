// NodeResourcesFit: the pod's requests must fit in what the node has left (Filter), and nodes
// are scored by one of three strategies: LeastAllocated (default), MostAllocated or
// RequestedToCapacityRatio, over weighted resources (default cpu and memory, weight 1 each).
import { z } from '@berth/common';
import type { ClusterEvent, CycleState, EnqueueExtensions, FilterPlugin, PreFilterPlugin, ScorePlugin } from '../../framework/interfaces';
import { unschedulable, type MaybeStatus, type Status } from '../../framework/status';
import { MAX_NODE_SCORE, type NodeInfo, type PodInfo } from '../../framework/types';
import { allocatableAndRequested, DEFAULT_RESOURCES, resourceSpecSchema, type ResourceSpec } from '../resource-allocation';

export const NAME = 'NodeResourcesFit';
const MAX_CUSTOM_PRIORITY_SCORE = 10;

const shapeSchema = z.array(z.object({
  utilization: z.number().int().min(0).max(100),
  score: z.number().int().min(0).max(MAX_CUSTOM_PRIORITY_SCORE),
}).strict()).min(1).superRefine((pts, ctx) => {
  for (let i = 1; i < pts.length; i++) {
    if (pts[i].utilization <= pts[i - 1].utilization) ctx.addIssue({ code: 'custom', path: [i, 'utilization'], message: 'utilization values must be sorted in increasing order' });
  }
});

export const argsSchema = z.object({
  ignoredResources: z.array(z.string()).default([]),
  ignoredResourceGroups: z.array(z.string()).default([]),
  scoringStrategy: z.object({
    type: z.enum(['LeastAllocated', 'MostAllocated', 'RequestedToCapacityRatio']).default('LeastAllocated'),
    resources: resourceSpecSchema.default(DEFAULT_RESOURCES),
    requestedToCapacityRatio: z.object({ shape: shapeSchema }).strict().optional(),
  }).strict().default({ type: 'LeastAllocated', resources: DEFAULT_RESOURCES }),
}).strict().superRefine((a, ctx) => {
  if (a.scoringStrategy.type === 'RequestedToCapacityRatio' && !a.scoringStrategy.requestedToCapacityRatio) {
    ctx.addIssue({ code: 'custom', path: ['scoringStrategy', 'requestedToCapacityRatio'], message: 'is required for type RequestedToCapacityRatio' });
  }
});
export type NodeResourcesFitArgs = z.input<typeof argsSchema>;

export function leastRequestedScore(requested: number, capacity: number): number {
  if (capacity === 0 || requested > capacity) return 0;
  return Math.trunc(((capacity - requested) * MAX_NODE_SCORE) / capacity);
}

export function mostRequestedScore(requested: number, capacity: number): number {
  if (capacity === 0) return 0;
  if (requested > capacity) requested = capacity;
  return Math.trunc((requested * MAX_NODE_SCORE) / capacity);
}

/** The piecewise-linear function through the shape points (scores already scaled to 0-100). */
export function brokenLinear(shape: readonly { utilization: number; score: number }[]): (p: number) => number {
  return (p) => {
    for (let i = 0; i < shape.length; i++) {
      if (p <= shape[i].utilization) {
        if (i === 0) return shape[0].score;
        const a = shape[i - 1];
        const b = shape[i];
        return a.score + Math.trunc(((b.score - a.score) * (p - a.utilization)) / (b.utilization - a.utilization));
      }
    }
    return shape[shape.length - 1].score;
  };
}

/** Why a pod does not fit a node's resources (Kubernetes' wording), empty when it fits. */
export function insufficientResources(pod: PodInfo, node: NodeInfo, ignored: (name: string) => boolean = () => false): string[] {
  const out: string[] = [];
  if (node.pods.length + 1 > node.allocatable.allowedPodNumber) out.push('Too many pods');
  const r = pod.requests;
  const a = node.allocatable;
  const u = node.requested;
  if (r.milliCPU > 0 && r.milliCPU > a.milliCPU - u.milliCPU) out.push('Insufficient cpu');
  if (r.memory > 0 && r.memory > a.memory - u.memory) out.push('Insufficient memory');
  if (r.ephemeralStorage > 0 && r.ephemeralStorage > a.ephemeralStorage - u.ephemeralStorage) out.push('Insufficient ephemeral-storage');
  if (r.scalar) {
    for (const [name, q] of r.scalar) {
      if (q === 0 || ignored(name)) continue;
      if (q > (a.scalar?.get(name) ?? 0) - (u.scalar?.get(name) ?? 0)) out.push(`Insufficient ${name}`);
    }
  }
  return out;
}

export class NodeResourcesFit implements PreFilterPlugin, FilterPlugin, ScorePlugin, EnqueueExtensions {
  readonly name = NAME;
  private readonly resources: ResourceSpec[];
  private readonly scorer: (requested: number[], alloc: number[]) => number;
  private readonly ignored: (name: string) => boolean;
  private readonly alloc: number[] = [];
  private readonly req: number[] = [];
  private readonly rejections = new Map<string, Status>();

  constructor(input: NodeResourcesFitArgs = {}) {
    const args = argsSchema.parse(input);
    const ignored = new Set(args.ignoredResources);
    const groups = args.ignoredResourceGroups;
    this.ignored = (n) => ignored.has(n) || groups.some((g) => n.startsWith(`${g}/`));
    this.resources = args.scoringStrategy.resources;
    const weights = this.resources.map((r) => r.weight);
    const weighted = (f: (req: number, cap: number) => number, skipZero: boolean, round: boolean) => (req: number[], alloc: number[]) => {
      let score = 0;
      let sum = 0;
      for (let i = 0; i < req.length; i++) {
        if (alloc[i] === 0) continue;
        const s = f(req[i], alloc[i]);
        if (skipZero && s <= 0) continue;
        score += s * weights[i];
        sum += weights[i];
      }
      if (sum === 0) return 0;
      return round ? Math.round(score / sum) : Math.trunc(score / sum);
    };
    switch (args.scoringStrategy.type) {
      case 'LeastAllocated': this.scorer = weighted(leastRequestedScore, false, false); break;
      case 'MostAllocated': this.scorer = weighted(mostRequestedScore, false, false); break;
      case 'RequestedToCapacityRatio': {
        const scale = MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE;
        const fn = brokenLinear(args.scoringStrategy.requestedToCapacityRatio!.shape.map((p) => ({ utilization: p.utilization, score: p.score * scale })));
        this.scorer = weighted((req, cap) => fn(Math.trunc((req * 100) / cap)), true, true);
        break;
      }
    }
  }

  preFilter(): { status: MaybeStatus } { return { status: null }; }

  filter(_s: CycleState, pod: PodInfo, node: NodeInfo): MaybeStatus {
    // Hot path: most nodes fit; check without allocating before building the reasons.
    const r = pod.requests;
    const a = node.allocatable;
    const u = node.requested;
    if (!r.scalar && node.pods.length < a.allowedPodNumber && r.milliCPU <= a.milliCPU - u.milliCPU
      && r.memory <= a.memory - u.memory && r.ephemeralStorage <= a.ephemeralStorage - u.ephemeralStorage) return null;
    const reasons = insufficientResources(pod, node, this.ignored);
    if (!reasons.length) return null;
    // Shared per reason set: a preemption cycle may reject every node for "Insufficient cpu".
    const key = reasons.join('\0');
    let st = this.rejections.get(key);
    if (!st) this.rejections.set(key, (st = unschedulable(...reasons).withPlugin(NAME)));
    return st;
  }

  score(_s: CycleState, pod: PodInfo, node: NodeInfo): number {
    allocatableAndRequested(node, pod, this.resources, false, this.alloc, this.req);
    return this.scorer(this.req, this.alloc);
  }

  events(): ClusterEvent[] { return ['NodeAdd', 'NodeAllocatableChange', 'AssignedPodDelete', 'PodRequestScaledDown']; }
}
