// NodeAffinity: spec.nodeSelector and required node affinity must match (Filter); matching
// preferred terms add their weights (Score). Scheduler-enforced `addedAffinity` from the plugin
// args applies to every pod of the profile.
import type { core } from '@berth/api';
import { z } from '@berth/common';
import type { ClusterEvent, CycleState, EnqueueExtensions, FilterPlugin, PreFilterPlugin, PreFilterResult, PreScorePlugin, ScorePlugin } from '../../framework/interfaces';
import { compileNodeSelector, preferredNodeTerms, type NodeMatcher, type PreferredNodeTerm } from '../../framework/node-selector';
import { SKIP, unresolvable, type MaybeStatus } from '../../framework/status';
import type { NodeInfo, PodInfo } from '../../framework/types';
import { defaultNormalizeScore } from '../helpers';

export const NAME = 'NodeAffinity';
export const ERR_REASON_POD = "node(s) didn't match Pod's node affinity/selector";
export const ERR_REASON_ENFORCED = "node(s) didn't match scheduler-enforced node affinity";

const POD_MISMATCH = unresolvable(ERR_REASON_POD).withPlugin(NAME);
const ENFORCED_MISMATCH = unresolvable(ERR_REASON_ENFORCED).withPlugin(NAME);

export const argsSchema = z.object({ addedAffinity: z.any().optional() }).strict();
export type NodeAffinityArgs = z.infer<typeof argsSchema>;

export class NodeAffinity implements PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin, EnqueueExtensions {
  readonly name = NAME;
  private readonly addedRequired?: NodeMatcher;
  private readonly addedPreferred: PreferredNodeTerm[];

  constructor(args: NodeAffinityArgs = {}) {
    const added = args.addedAffinity as core.NodeAffinity | undefined;
    const req = added?.requiredDuringSchedulingIgnoredDuringExecution;
    this.addedRequired = req ? compileNodeSelector(req, 'addedAffinity.requiredDuringSchedulingIgnoredDuringExecution') : undefined;
    this.addedPreferred = added ? preferredNodeTerms({ affinity: { nodeAffinity: added } } as core.PodSpec) : [];
  }

  preFilter(_s: CycleState, pod: PodInfo): { status: MaybeStatus; result?: PreFilterResult } {
    const rna = pod.requiredNodeAffinity;
    if (rna.any && !this.addedRequired) return { status: SKIP };
    if (rna.nodeNames) {
      if (!rna.nodeNames.size) return { status: unresolvable(ERR_REASON_POD) };
      return { status: null, result: { nodeNames: rna.nodeNames } };
    }
    return { status: null };
  }

  filter(_s: CycleState, pod: PodInfo, node: NodeInfo): MaybeStatus {
    if (this.addedRequired && !this.addedRequired(node.labels, node.name)) return ENFORCED_MISMATCH;
    if (!pod.requiredNodeAffinity.any && !pod.requiredNodeAffinity.match(node.labels, node.name)) return POD_MISMATCH;
    return null;
  }

  preScore(_s: CycleState, pod: PodInfo): MaybeStatus {
    return pod.preferredNodeTerms.length || this.addedPreferred.length ? null : SKIP;
  }

  score(_s: CycleState, pod: PodInfo, node: NodeInfo): number {
    let sum = 0;
    for (const t of this.addedPreferred) if (t.match(node.labels, node.name)) sum += t.weight;
    for (const t of pod.preferredNodeTerms) if (t.match(node.labels, node.name)) sum += t.weight;
    return sum;
  }

  normalizeScore(_s: CycleState, _p: PodInfo, scores: number[]): MaybeStatus {
    defaultNormalizeScore(scores, false);
    return null;
  }

  events(): ClusterEvent[] { return ['NodeAdd', 'NodeLabelChange']; }
}
