// Test helpers that build pods the way a manifest would describe them (defaults filled by
// fromPartial), so tables stay short.
import { core } from '@berth/api';

export type Res = { requests?: Record<string, string>; limits?: Record<string, string> };

export function container(name: string, res: Res = {}, extra: Partial<core.Container> = {}): core.Container {
  return core.Container.fromPartial({ name, image: 'busybox', resources: { requests: res.requests ?? {}, limits: res.limits ?? {} }, ...extra });
}

export function pod(containers: core.Container[], extra: { init?: core.Container[]; overhead?: Record<string, string>; uid?: string; priority?: number; spec?: Partial<core.PodSpec>; name?: string; namespace?: string } = {}): core.Pod {
  const p = core.Pod.fromPartial({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: extra.name ?? 'web', namespace: extra.namespace ?? 'default', uid: extra.uid ?? '2f1c8e3a-0d2b-4c55-9a77-0123456789ab' },
    spec: { containers, initContainers: extra.init ?? [], overhead: extra.overhead ?? {}, restartPolicy: 'Always', ...(extra.spec ?? {}) },
  });
  if (extra.priority !== undefined) p.spec!.priority = extra.priority;
  return p;
}
