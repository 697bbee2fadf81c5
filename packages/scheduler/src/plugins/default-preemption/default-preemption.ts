// DefaultPreemption (PostFilter): when no node fits, find nodes where evicting lower-priority
// pods would make room, keep as many of those pods as still fit (most important first), pick
// the node with the least disruption, evict its victims and nominate the node for the pod.
import { z } from '@berth/common';
import type { CycleState, Handle, PostFilterPlugin, PostFilterResult } from '../../framework/interfaces';
import { Code, Status, unresolvable, unschedulable, isSuccess } from '../../framework/status';
import type { NodeInfo, PodInfo } from '../../framework/types';
import type { NodeStatusReader } from '../../framework/schedule';

export const NAME = 'DefaultPreemption';
export const NOT_HELPFUL = 'Preemption is not helpful for scheduling';
export const NO_VICTIMS = 'No preemption victims found for incoming pod';

export const argsSchema = z.object({
  minCandidateNodesPercentage: z.number().int().min(0).max(100).default(10),
  minCandidateNodesAbsolute: z.number().int().min(0).default(100),
}).strict().refine((a) => a.minCandidateNodesPercentage > 0 || a.minCandidateNodesAbsolute > 0, { message: 'minCandidateNodesPercentage and minCandidateNodesAbsolute cannot both be zero' });

export interface Candidate { node: NodeInfo; victims: PodInfo[] }

/** More important: higher priority, then started earlier. */
export function moreImportant(a: PodInfo, b: PodInfo): boolean {
  if (a.priority !== b.priority) return a.priority > b.priority;
  return a.startMs < b.startMs;
}

/** pickOneNodeForPreemption: fewest high-priority victims, then lowest priority sum, fewest victims, latest start. */
export function pickOneNode(cands: Candidate[]): Candidate | undefined {
  if (!cands.length) return undefined;
  const by = (list: Candidate[], key: (c: Candidate) => number): Candidate[] => {
    let best = Infinity;
    let out: Candidate[] = [];
    for (const c of list) {
      const k = key(c);
      if (k < best) { best = k; out = [c]; } else if (k === best) out.push(c);
    }
    return out;
  };
  const highest = (c: Candidate) => Math.max(...c.victims.map((v) => v.priority), -Infinity);
  let list = by(cands, (c) => (c.victims.length ? highest(c) : -Infinity));
  // The offset keeps negative priorities from making a larger set look cheaper (as Kubernetes does).
  list = by(list, (c) => c.victims.reduce((s, v) => s + v.priority + 2 ** 31, 0));
  list = by(list, (c) => c.victims.length);
  // Latest start among each node's highest-priority victims: evict what has run the shortest.
  list = by(list, (c) => {
    const h = highest(c);
    let earliest = Infinity;
    for (const v of c.victims) if (v.priority === h && v.startMs < earliest) earliest = v.startMs;
    return -earliest;
  });
  return list[0];
}

export class DefaultPreemption implements PostFilterPlugin {
  readonly name = NAME;
  private readonly args: z.infer<typeof argsSchema>;

  constructor(private readonly handle: Handle, input: z.input<typeof argsSchema> = {}) {
    this.args = argsSchema.parse(input);
  }

  private eligible(pod: PodInfo): string | null {
    if (pod.pod.spec?.preemptionPolicy === 'Never') return 'not eligible due to preemptionPolicy=Never.';
    const nominated = pod.pod.status?.nominatedNodeName;
    if (nominated) {
      const n = this.handle.snapshot.get(nominated);
      if (n?.pods.some((p) => p.deleting && p.priority < pod.priority)) return 'not eligible due to a terminating pod on the nominated node.';
    }
    return null;
  }

  /** The victims on one node, or the reason preemption cannot help there. */
  selectVictimsOnNode(state: CycleState, pod: PodInfo, node: NodeInfo): PodInfo[] | Status {
    const lower = node.pods.filter((p) => p.priority < pod.priority);
    if (!lower.length) return unschedulable(NO_VICTIMS);
    const ni = node.clone();
    const st = state.clone();
    for (const v of lower) {
      ni.removePod(v.key);
      this.handle.runPreFilterExtensionRemovePod(st, pod, v, ni);
    }
    const fits = this.handle.runFilterPluginsWithNominatedPods(st, pod, ni);
    if (!isSuccess(fits)) return fits!;
    lower.sort((a, b) => (moreImportant(a, b) ? -1 : moreImportant(b, a) ? 1 : 0));
    const victims: PodInfo[] = [];
    for (const v of lower) {
      ni.addPod(v);
      this.handle.runPreFilterExtensionAddPod(st, pod, v, ni);
      if (!isSuccess(this.handle.runFilterPluginsWithNominatedPods(st, pod, ni))) {
        ni.removePod(v.key);
        this.handle.runPreFilterExtensionRemovePod(st, pod, v, ni);
        victims.push(v);
      }
    }
    return victims;
  }

  async postFilter(state: CycleState, pod: PodInfo, statuses: NodeStatusReader, opts: { dryRun: boolean }): Promise<PostFilterResult> {
    const nodes = this.handle.snapshot.nodes();
    const notEligible = this.eligible(pod);
    if (notEligible) return { status: unresolvable(notEligible), message: `preemption: ${notEligible}` };
    const potential = nodes.filter((n) => statuses.get(n.name)?.code === Code.Unschedulable);
    const reasons = new Map<string, number>();
    const add = (r: string, n = 1) => reasons.set(r, (reasons.get(r) ?? 0) + n);
    add(NOT_HELPFUL, nodes.length - potential.length);
    const cands: Candidate[] = [];
    if (potential.length) {
      const want = Math.min(potential.length, Math.max(Math.trunc((potential.length * this.args.minCandidateNodesPercentage) / 100), this.args.minCandidateNodesAbsolute));
      const offset = Math.floor(this.handle.random() * potential.length);
      for (let i = 0; i < potential.length && cands.length < want; i++) {
        const node = potential[(offset + i) % potential.length];
        const r = this.selectVictimsOnNode(state, pod, node);
        if (r instanceof Status) { for (const reason of r.reasons) add(reason); continue; }
        cands.push({ node, victims: r });
      }
    }
    const best = pickOneNode(cands);
    if (!best) {
      const hist = [...reasons].filter(([, n]) => n > 0).map(([r, n]) => `${n} ${r}`).sort();
      const message = `preemption: 0/${nodes.length} nodes are available: ${hist.join(', ')}.`;
      return { status: unschedulable(message), message };
    }
    if (!opts.dryRun) {
      for (const v of best.victims) await this.handle.deletePod(v, `preempted by ${pod.key} on node ${best.node.name}`);
      for (const p of this.handle.nominatedPodsForNode(best.node.name)) {
        if (p.priority < pod.priority) await this.handle.clearNomination(p);
      }
    }
    const victims = best.victims.map((v) => v.key).join(', ');
    return {
      nominatedNodeName: best.node.name,
      status: new Status(Code.Success),
      message: `preemption: node ${best.node.name} after evicting ${best.victims.length} pod(s)${victims ? ` (${victims})` : ''}`,
    };
  }
}
