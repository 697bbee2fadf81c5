// TaintToleration: NoSchedule and NoExecute taints must be tolerated (Filter); each untolerated
// PreferNoSchedule taint lowers the node's score (Score, normalized in reverse).
import type { core } from '@berth/api';
import type { ClusterEvent, CycleState, EnqueueExtensions, FilterPlugin, PreScorePlugin, ScorePlugin, StateData } from '../../framework/interfaces';
import { unresolvable, type MaybeStatus, type Status } from '../../framework/status';
import { tolerated, type NodeInfo, type PodInfo } from '../../framework/types';
import { defaultNormalizeScore } from '../helpers';

export const NAME = 'TaintToleration';
const KEY = `PreScore${NAME}`;

class PreScoreState implements StateData {
  constructor(readonly tolerations: core.Toleration[]) {}
  clone() { return this; }
}

export function untoleratedTaintReason(taint: core.Taint): string {
  return `node(s) had untolerated taint {${taint.key}: ${taint.value ?? ''}}`;
}

export class TaintToleration implements FilterPlugin, PreScorePlugin, ScorePlugin, EnqueueExtensions {
  readonly name = NAME;
  /** One shared Status per reason: a cycle may reject thousands of nodes for the same taint. */
  private readonly rejections = new Map<string, Status>();

  filter(_s: CycleState, pod: PodInfo, node: NodeInfo): MaybeStatus {
    for (const taint of node.taints) {
      if (taint.effect !== 'NoSchedule' && taint.effect !== 'NoExecute') continue;
      if (!tolerated(pod.tolerations, taint)) {
        const reason = untoleratedTaintReason(taint);
        let st = this.rejections.get(reason);
        if (!st) this.rejections.set(reason, (st = unresolvable(reason).withPlugin(NAME)));
        return st;
      }
    }
    return null;
  }

  preScore(state: CycleState, pod: PodInfo): MaybeStatus {
    // Only tolerations that can apply to PreferNoSchedule count for scoring.
    state.write(KEY, new PreScoreState(pod.tolerations.filter((t) => !t.effect || t.effect === 'PreferNoSchedule')));
    return null;
  }

  score(state: CycleState, _pod: PodInfo, node: NodeInfo): number {
    const tols = state.read<PreScoreState>(KEY)!.tolerations;
    let n = 0;
    for (const taint of node.taints) if (taint.effect === 'PreferNoSchedule' && !tolerated(tols, taint)) n++;
    return n;
  }

  normalizeScore(_s: CycleState, _p: PodInfo, scores: number[]): MaybeStatus {
    defaultNormalizeScore(scores, true);
    return null;
  }

  events(): ClusterEvent[] { return ['NodeAdd', 'NodeTaintChange']; }
}
