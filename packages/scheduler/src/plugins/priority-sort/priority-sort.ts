// PrioritySort: higher spec.priority first, then the pod that entered the queue first.
import type { QueueSortPlugin, QueuedPodInfo } from '../../framework/interfaces';

export const NAME = 'PrioritySort';

export class PrioritySort implements QueueSortPlugin {
  readonly name = NAME;
  less(a: QueuedPodInfo, b: QueuedPodInfo): boolean {
    const pa = a.info.priority;
    const pb = b.info.priority;
    return pa > pb || (pa === pb && a.timestamp < b.timestamp);
  }
}
