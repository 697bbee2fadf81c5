// An in-memory pod store with resourceVersion preconditions, for pure-logic tests of the status
// manager until the real Store (issue #4) is wired in. It can be told to fail the next writes
// with a conflict (as if another writer got there first) or to be unreachable.
import { core } from '@berth/api';
import { ConflictError, PermissionDeniedError, UnavailableError } from '@berth/common';
import type { PodStatusStore } from '../seams';

export class MemoryPodStore implements PodStatusStore {
  readonly pods = new Map<string, core.Pod>();
  private rv = 1;
  conflictsToInject = 0;
  unreachable = false;
  /** namespace/name of pods whose status writes are refused (as the node authorizer refuses a pod it no longer relates to the node). */
  readonly forbidden = new Set<string>();
  /** namespace/name of pods whose status writes fail as if the Store were away for them. */
  readonly failing = new Set<string>();
  updates = 0;
  /** While set, status writes wait for it (a write that is out for a while). */
  gate?: Promise<void>;

  put(pod: core.Pod): core.Pod {
    const p = core.Pod.fromPartial(pod);
    p.metadata!.resourceVersion = String(++this.rv);
    this.pods.set(`${p.metadata!.namespace}/${p.metadata!.name}`, p);
    return p;
  }

  async getPod(namespace: string, name: string): Promise<core.Pod | undefined> {
    if (this.unreachable) throw new UnavailableError('store is unreachable');
    const p = this.pods.get(`${namespace}/${name}`);
    return p && core.Pod.fromPartial(p);
  }

  async updatePodStatus(pod: core.Pod): Promise<core.Pod> {
    await this.gate;
    if (this.unreachable) throw new UnavailableError('store is unreachable');
    const key = `${pod.metadata!.namespace}/${pod.metadata!.name}`;
    if (this.forbidden.has(key)) throw new PermissionDeniedError(`${key}: forbidden`);
    if (this.failing.has(key)) throw new UnavailableError(`${key}: unavailable`);
    const cur = this.pods.get(key);
    if (!cur) throw new ConflictError(`${key} is gone`);
    if (this.conflictsToInject > 0) {
      this.conflictsToInject--;
      // Another writer (e.g. the scheduler adding a condition) bumps the version first.
      cur.status = core.PodStatus.fromPartial({ ...cur.status, conditions: [...(cur.status?.conditions ?? []), { type: 'example.com/gate', status: 'True' }] });
      cur.metadata!.resourceVersion = String(++this.rv);
    }
    if (cur.metadata!.resourceVersion !== pod.metadata!.resourceVersion) throw new ConflictError(`${key}: resourceVersion ${pod.metadata!.resourceVersion} is stale`);
    this.updates++;
    return this.put({ ...cur, status: pod.status });
  }
}
