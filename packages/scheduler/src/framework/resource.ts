// Resource vectors: what a pod requests and what a node has, in millicores and bytes.
import type { core } from '@berth/api';
import { milliValue, value } from '../quantity';

export interface Resource {
  milliCPU: number;
  memory: number;
  ephemeralStorage: number;
  /** Only meaningful on a node's allocatable. */
  allowedPodNumber: number;
  /** Extended and hugepages resources; null when none (the common case). */
  scalar: Map<string, number> | null;
}

export const emptyResource = (): Resource => ({ milliCPU: 0, memory: 0, ephemeralStorage: 0, allowedPodNumber: 0, scalar: null });

export function cloneResource(r: Resource): Resource {
  return { ...r, scalar: r.scalar ? new Map(r.scalar) : null };
}

/** Adds (sign 1) or subtracts (sign -1) b into a. */
export function addResource(a: Resource, b: Resource, sign = 1): void {
  a.milliCPU += sign * b.milliCPU;
  a.memory += sign * b.memory;
  a.ephemeralStorage += sign * b.ephemeralStorage;
  if (b.scalar) {
    a.scalar ??= new Map();
    for (const [k, v] of b.scalar) a.scalar.set(k, (a.scalar.get(k) ?? 0) + sign * v);
  }
}

function maxInto(a: Resource, b: Resource): void {
  a.milliCPU = Math.max(a.milliCPU, b.milliCPU);
  a.memory = Math.max(a.memory, b.memory);
  a.ephemeralStorage = Math.max(a.ephemeralStorage, b.ephemeralStorage);
  if (b.scalar) {
    a.scalar ??= new Map();
    for (const [k, v] of b.scalar) a.scalar.set(k, Math.max(a.scalar.get(k) ?? 0, v));
  }
}

/** Resource names the scheduler treats as scalar (extended, hugepages, attachable volumes). */
export function isScalarResourceName(name: string): boolean {
  return name.startsWith('hugepages-') || name.includes('/') || name.startsWith('attachable-volumes-');
}

/** A ResourceList as a Resource. `field` names it in errors. */
export function resourceFromList(list: { [k: string]: string } | undefined, field: string): Resource {
  const r = emptyResource();
  if (!list) return r;
  for (const [name, q] of Object.entries(list)) {
    let v: number;
    try {
      v = name === 'cpu' ? milliValue(q) : value(q);
    } catch (err) {
      throw new Error(`${field}[${name}]: ${(err as Error).message}`);
    }
    switch (name) {
      case 'cpu': r.milliCPU = v; break;
      case 'memory': r.memory = v; break;
      case 'ephemeral-storage': r.ephemeralStorage = v; break;
      case 'pods': r.allowedPodNumber = v; break;
      default:
        if (isScalarResourceName(name)) (r.scalar ??= new Map()).set(name, v);
    }
  }
  return r;
}

/** Kubernetes' defaults for containers that request no CPU/memory, used only for scoring. */
export const DEFAULT_MILLI_CPU_REQUEST = 100;
export const DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024;

export interface PodRequests {
  /** Effective requests (what Filter compares with allocatable). */
  requests: Resource;
  /** Same, with missing container cpu/memory requests replaced by the defaults (for scoring). */
  nonZeroCPU: number;
  nonZeroMemory: number;
}

/**
 * A pod's effective request like Kubernetes' PodRequests: the sum of app containers and
 * restartable (sidecar) init containers, or the largest init container step if that is more,
 * plus the pod overhead.
 */
export function podRequests(spec: core.PodSpec | undefined, field = 'spec'): PodRequests {
  const reqs = emptyResource();
  const nz = { milliCPU: 0, memory: 0 };
  const containerReq = (c: core.Container, f: string) => resourceFromList(c.resources?.requests, `${f}.resources.requests`);
  const nonZero = (c: core.Container, r: Resource) => ({
    milliCPU: c.resources?.requests?.cpu !== undefined ? r.milliCPU : DEFAULT_MILLI_CPU_REQUEST,
    memory: c.resources?.requests?.memory !== undefined ? r.memory : DEFAULT_MEMORY_REQUEST,
  });
  (spec?.containers ?? []).forEach((c, i) => {
    const r = containerReq(c, `${field}.containers[${i}]`);
    addResource(reqs, r);
    const n = nonZero(c, r);
    nz.milliCPU += n.milliCPU; nz.memory += n.memory;
  });
  const sidecars = emptyResource();
  const sidecarsNz = { milliCPU: 0, memory: 0 };
  const initMax = emptyResource();
  const initMaxNz = { milliCPU: 0, memory: 0 };
  (spec?.initContainers ?? []).forEach((c, i) => {
    const r = containerReq(c, `${field}.initContainers[${i}]`);
    const n = nonZero(c, r);
    if (c.restartPolicy === 'Always') {
      // A sidecar keeps running beside the app containers and every later init container.
      addResource(reqs, r);
      nz.milliCPU += n.milliCPU; nz.memory += n.memory;
      addResource(sidecars, r);
      sidecarsNz.milliCPU += n.milliCPU; sidecarsNz.memory += n.memory;
      maxInto(initMax, sidecars);
      initMaxNz.milliCPU = Math.max(initMaxNz.milliCPU, sidecarsNz.milliCPU);
      initMaxNz.memory = Math.max(initMaxNz.memory, sidecarsNz.memory);
    } else {
      const step = cloneResource(r);
      addResource(step, sidecars);
      maxInto(initMax, step);
      initMaxNz.milliCPU = Math.max(initMaxNz.milliCPU, n.milliCPU + sidecarsNz.milliCPU);
      initMaxNz.memory = Math.max(initMaxNz.memory, n.memory + sidecarsNz.memory);
    }
  });
  maxInto(reqs, initMax);
  nz.milliCPU = Math.max(nz.milliCPU, initMaxNz.milliCPU);
  nz.memory = Math.max(nz.memory, initMaxNz.memory);
  if (spec?.overhead && Object.keys(spec.overhead).length) {
    const o = resourceFromList(spec.overhead, `${field}.overhead`);
    addResource(reqs, o);
    nz.milliCPU += o.milliCPU; nz.memory += o.memory;
  }
  return { requests: reqs, nonZeroCPU: nz.milliCPU, nonZeroMemory: nz.memory };
}
