// SchedulingGates: a pod with spec.schedulingGates waits outside the active queue until they are removed.
import type { EnqueueExtensions, ClusterEvent, PreEnqueuePlugin } from '../../framework/interfaces';
import { unresolvable, type MaybeStatus } from '../../framework/status';
import type { PodInfo } from '../../framework/types';

export const NAME = 'SchedulingGates';

export class SchedulingGates implements PreEnqueuePlugin, EnqueueExtensions {
  readonly name = NAME;
  preEnqueue(pod: PodInfo): MaybeStatus {
    const gates = pod.pod.spec?.schedulingGates ?? [];
    if (!gates.length) return null;
    return unresolvable(`waiting for scheduling gates: [${gates.map((g) => g.name).join(' ')}]`);
  }
  events(): ClusterEvent[] { return ['UnscheduledPodUpdate']; }
}
