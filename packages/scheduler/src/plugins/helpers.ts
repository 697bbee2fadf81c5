// Score helpers shared by several plugins, as in kube-scheduler's plugins/helper.
import { MAX_NODE_SCORE } from '../framework/types';

/** Scales scores to 0..100 by the highest one; `reverse` turns high raw scores into low ones. */
export function defaultNormalizeScore(scores: number[], reverse: boolean, max = MAX_NODE_SCORE): void {
  let top = 0;
  for (const s of scores) if (s > top) top = s;
  if (top === 0) {
    if (reverse) scores.fill(max);
    return;
  }
  for (let i = 0; i < scores.length; i++) {
    let s = Math.trunc((max * scores[i]) / top);
    if (reverse) s = max - s;
    scores[i] = s;
  }
}
