// A pod's effective resources, QoS class and OOM score adjustment, computed the way the kubelet
// does: init containers run one at a time, so the pod needs the larger of "the biggest init
// container" and "all app containers together"; restartable init containers (sidecars) keep
// running and so add to everything started after them; the runtime's overhead comes on top.
import type { core } from '@berth/api';
import { Quantity, qosClass as apimachineryQos } from '@berth/apimachinery';

export type QosClass = 'Guaranteed' | 'Burstable' | 'BestEffort';

export const GUARANTEED_OOM_SCORE_ADJ = -997;
export const BESTEFFORT_OOM_SCORE_ADJ = 1000;
/** Pods at or above this priority are node- or cluster-critical and get the guaranteed score. */
export const CRITICAL_PRIORITY = 2_000_000_000;

export function qosClassOf(spec: core.PodSpec): QosClass {
  return apimachineryQos(spec);
}

type Which = 'requests' | 'limits';

function quantities(c: core.Container, which: Which): Map<string, Quantity> {
  const out = new Map<string, Quantity>();
  const list = c.resources?.[which] ?? {};
  // Requests default to limits when unset (the Store defaults this too; repeat it so static
  // pods that never went through the Store get the same answer).
  const fallback = which === 'requests' ? c.resources?.limits ?? {} : {};
  for (const [k, v] of Object.entries({ ...fallback, ...list })) out.set(k, Quantity.parse(v));
  return out;
}

function addInto(acc: Map<string, Quantity>, add: Map<string, Quantity>): void {
  for (const [k, v] of add) acc.set(k, acc.has(k) ? acc.get(k)!.add(v) : v);
}

function maxInto(acc: Map<string, Quantity>, other: Map<string, Quantity>): void {
  for (const [k, v] of other) if (!acc.has(k) || acc.get(k)!.cmp(v) < 0) acc.set(k, v);
}

function isSidecar(c: core.Container): boolean {
  return c.restartPolicy === 'Always';
}

/** Pod-level requests or limits (ResourceList), including init containers, sidecars and overhead. */
export function podResources(spec: core.PodSpec, which: Which, opts: { excludeOverhead?: boolean } = {}): Map<string, Quantity> {
  const apps = new Map<string, Quantity>();
  for (const c of spec.containers) addInto(apps, quantities(c, which));
  const sidecars = new Map<string, Quantity>();
  const initPeak = new Map<string, Quantity>();
  for (const c of spec.initContainers) {
    const own = quantities(c, which);
    // While this init container runs, every sidecar started before it runs too.
    const during = new Map(sidecars);
    addInto(during, own);
    maxInto(initPeak, during);
    if (isSidecar(c)) addInto(sidecars, own);
  }
  const steady = new Map(apps);
  addInto(steady, sidecars);
  maxInto(steady, initPeak);
  if (!opts.excludeOverhead) {
    const overhead = new Map<string, Quantity>();
    for (const [k, v] of Object.entries(spec.overhead ?? {})) overhead.set(k, Quantity.parse(v));
    // Requests always carry the overhead; limits only for resources the pod limits at all (an
    // unlimited resource stays unlimited), as Kubernetes' PodRequests/PodLimits do.
    for (const [k, v] of overhead) {
      if (steady.has(k)) steady.set(k, steady.get(k)!.add(v));
      else if (which === 'requests') steady.set(k, v);
    }
  }
  return steady;
}

/** True when every app container (and sidecar) declares a non-zero limit for `resource`. */
export function limitsDeclared(spec: core.PodSpec, resource: 'cpu' | 'memory'): boolean {
  const all = [...spec.initContainers.filter(isSidecar), ...spec.containers];
  return all.length > 0 && all.every((c) => {
    const v = c.resources?.limits?.[resource];
    return v !== undefined && !Quantity.parse(v).isZero();
  });
}

function isCritical(pod: core.Pod): boolean {
  return (pod.spec?.priority ?? 0) >= CRITICAL_PRIORITY;
}

/**
 * oom_score_adj of one container: −997 for Guaranteed and critical pods, 1000 for BestEffort,
 * and for Burstable 1000 − 1000·request/capacity kept within [3, 999], so a Burstable container
 * always dies before a Guaranteed one and after a BestEffort one.
 */
export function containerOomScoreAdj(pod: core.Pod, container: core.Container, memoryCapacityBytes: bigint): number {
  if (!pod.spec) throw new TypeError('pod.spec: required to compute oom_score_adj');
  if (isCritical(pod)) return GUARANTEED_OOM_SCORE_ADJ;
  const qos = qosClassOf(pod.spec);
  if (qos === 'Guaranteed') return GUARANTEED_OOM_SCORE_ADJ;
  if (qos === 'BestEffort') return BESTEFFORT_OOM_SCORE_ADJ;
  if (memoryCapacityBytes <= 0n) throw new RangeError('memoryCapacityBytes: must be positive');
  const req = quantities(container, 'requests').get('memory')?.value() ?? 0n;
  const adj = 1000n - (1000n * req) / memoryCapacityBytes;
  const lowest = 1000 + GUARANTEED_OOM_SCORE_ADJ;
  if (adj < BigInt(lowest)) return lowest;
  if (adj >= BigInt(BESTEFFORT_OOM_SCORE_ADJ)) return BESTEFFORT_OOM_SCORE_ADJ - 1;
  return Number(adj);
}
