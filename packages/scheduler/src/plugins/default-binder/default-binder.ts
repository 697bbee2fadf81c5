// DefaultBinder: binds the pod through the cluster (Store.Bind; a conflict surfaces as an error
// status, and the scheduler un-assumes and requeues the pod).
import type { BindPlugin, CycleState, Handle } from '../../framework/interfaces';
import { asError, type MaybeStatus } from '../../framework/status';
import type { PodInfo } from '../../framework/types';

export const NAME = 'DefaultBinder';

export class DefaultBinder implements BindPlugin {
  readonly name = NAME;
  constructor(private readonly handle: Handle) {}
  async bind(_s: CycleState, pod: PodInfo, nodeName: string): Promise<MaybeStatus> {
    try {
      await this.handle.bindPod(pod, nodeName);
      return null;
    } catch (err) {
      return asError(`binding rejected: ${(err as Error).message}`);
    }
  }
}
