// PodInfo and NodeInfo: a pod and a node with everything the plugins need precomputed once
// (requests, compiled selectors and terms, per-node aggregates), so that filtering and scoring
// a node costs a few comparisons rather than re-reading the API objects.
import type { core } from '@berth/api';
import { InvalidArgumentError } from '@berth/common';
import { compileSelector, selectorFromRequirements, type Labels, type Requirement, type Selector } from '../labels';
import { addResource, cloneResource, emptyResource, podRequests, resourceFromList, type Resource } from './resource';
import { preferredNodeTerms, requiredNodeAffinity, type PreferredNodeTerm, type RequiredNodeAffinity } from './node-selector';

export const MAX_NODE_SCORE = 100;
export const DEFAULT_SCHEDULER_NAME = 'default-scheduler';
/** The kubelet's default --max-pods. */
export const DEFAULT_MAX_PODS = 110;

/** A pod (anti-)affinity term, compiled. */
export interface AffinityTerm {
  selector: Selector;
  /** Namespaces named by the term (the pod's own when neither namespaces nor a selector is given). */
  namespaces: ReadonlySet<string>;
  /** Namespace label selector, ORed with namespaces; null when absent. */
  nsSelector: Selector | null;
  topologyKey: string;
  /** Canonical text: pods with equal terms share one index entry. */
  key: string;
}

export interface WeightedAffinityTerm extends AffinityTerm { weight: number }

export type NamespaceLabels = (namespace: string) => Labels | undefined;

/** Whether `pod` is selected by `term` (namespace and labels). */
export function termMatches(term: AffinityTerm, pod: PodInfo, nsLabels: NamespaceLabels): boolean {
  if (!term.namespaces.has(pod.namespace)) {
    if (!term.nsSelector) return false;
    if (!term.nsSelector.everything && !term.nsSelector.matches(nsLabels(pod.namespace))) return false;
  }
  return term.selector.matches(pod.labels);
}

export interface HostPort { protocol: string; port: number; hostIP: string }

function compileAffinityTerm(t: core.PodAffinityTerm | undefined, pod: core.Pod, field: string, weight?: number): WeightedAffinityTerm {
  if (!t) throw new InvalidArgumentError(field, 'must be set');
  if (!t.topologyKey) throw new InvalidArgumentError(`${field}.topologyKey`, 'must not be empty');
  const labels = pod.metadata?.labels ?? {};
  // matchLabelKeys / mismatchLabelKeys add "key in/notin (the incoming pod's value)".
  const extra: Requirement[] = [];
  for (const k of t.matchLabelKeys ?? []) if (labels[k] !== undefined) extra.push({ key: k, op: 'In', values: new Set([labels[k]]) });
  for (const k of t.mismatchLabelKeys ?? []) if (labels[k] !== undefined) extra.push({ key: k, op: 'NotIn', values: new Set([labels[k]]) });
  const selector = compileSelector(t.labelSelector, `${field}.labelSelector`, extra);
  const nsSelector = t.namespaceSelector ? compileSelector(t.namespaceSelector, `${field}.namespaceSelector`) : null;
  const namespaces = new Set(t.namespaces ?? []);
  if (!namespaces.size && !nsSelector) namespaces.add(pod.metadata?.namespace ?? 'default');
  const key = `${t.topologyKey}|${selector.key}|${[...namespaces].sort().join(',')}|${nsSelector?.key ?? ''}`;
  return { selector, namespaces, nsSelector, topologyKey: t.topologyKey, key, weight: weight ?? 0 };
}

function compileWeighted(ts: core.WeightedPodAffinityTerm[] | undefined, pod: core.Pod, field: string): WeightedAffinityTerm[] {
  return (ts ?? []).map((w, i) => {
    if (!(w.weight >= 1 && w.weight <= 100)) throw new InvalidArgumentError(`${field}[${i}].weight`, `must be in the range 1-100, got ${w.weight}`);
    return compileAffinityTerm(w.podAffinityTerm, pod, `${field}[${i}].podAffinityTerm`, w.weight);
  });
}

export class PodInfo {
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly labels: Labels;
  readonly priority: number;
  readonly requests: Resource;
  readonly nonZeroCPU: number;
  readonly nonZeroMemory: number;
  readonly hostPorts: HostPort[];
  readonly tolerations: core.Toleration[];
  readonly requiredNodeAffinity: RequiredNodeAffinity;
  readonly preferredNodeTerms: PreferredNodeTerm[];
  readonly requiredAffinityTerms: AffinityTerm[];
  readonly requiredAntiAffinityTerms: AffinityTerm[];
  readonly preferredAffinityTerms: WeightedAffinityTerm[];
  readonly preferredAntiAffinityTerms: WeightedAffinityTerm[];
  /** Has any pod affinity or anti-affinity term. */
  readonly hasAffinity: boolean;
  readonly deleting: boolean;
  /** spec.nodeName was set by the user (the NodeName plugin honours it). */
  readonly wantsNode: boolean;
  /** Milliseconds since the epoch of status.startTime (or creation), for preemption's tie-break. */
  readonly startMs: number;

  /** Compiles the pod; throws InvalidArgumentError naming the bad field. */
  constructor(readonly pod: core.Pod) {
    const md = pod.metadata;
    this.namespace = md?.namespace || 'default';
    this.name = md?.name ?? '';
    this.key = `${this.namespace}/${this.name}`;
    this.uid = md?.uid || this.key;
    this.labels = md?.labels ?? {};
    this.priority = pod.spec?.priority ?? 0;
    const r = podRequests(pod.spec);
    this.requests = r.requests;
    this.nonZeroCPU = r.nonZeroCPU;
    this.nonZeroMemory = r.nonZeroMemory;
    this.hostPorts = [];
    for (const c of pod.spec?.containers ?? []) {
      for (const p of c.ports ?? []) {
        if (p.hostPort > 0) this.hostPorts.push({ protocol: p.protocol || 'TCP', port: p.hostPort, hostIP: p.hostIP || '0.0.0.0' });
      }
    }
    this.tolerations = pod.spec?.tolerations ?? [];
    this.tolerations.forEach((t, i) => {
      if (t.operator && t.operator !== 'Equal' && t.operator !== 'Exists') throw new InvalidArgumentError(`spec.tolerations[${i}].operator`, `"${t.operator}" is not a valid operator (Equal, Exists)`);
      if (t.operator === 'Exists' && t.value) throw new InvalidArgumentError(`spec.tolerations[${i}].value`, 'must be empty when operator is Exists');
      if (t.effect && !TAINT_EFFECTS.has(t.effect)) throw new InvalidArgumentError(`spec.tolerations[${i}].effect`, `"${t.effect}" is not a valid effect (NoSchedule, PreferNoSchedule, NoExecute)`);
    });
    this.requiredNodeAffinity = requiredNodeAffinity(pod.spec);
    this.preferredNodeTerms = preferredNodeTerms(pod.spec);
    const a = pod.spec?.affinity;
    const base = 'spec.affinity';
    this.requiredAffinityTerms = (a?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [])
      .map((t, i) => compileAffinityTerm(t, pod, `${base}.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[${i}]`));
    this.requiredAntiAffinityTerms = (a?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [])
      .map((t, i) => compileAffinityTerm(t, pod, `${base}.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[${i}]`));
    this.preferredAffinityTerms = compileWeighted(a?.podAffinity?.preferredDuringSchedulingIgnoredDuringExecution, pod, `${base}.podAffinity.preferredDuringSchedulingIgnoredDuringExecution`);
    this.preferredAntiAffinityTerms = compileWeighted(a?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution, pod, `${base}.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution`);
    this.hasAffinity = this.requiredAffinityTerms.length + this.requiredAntiAffinityTerms.length
      + this.preferredAffinityTerms.length + this.preferredAntiAffinityTerms.length > 0;
    this.deleting = Boolean(md?.deletionTimestamp);
    this.wantsNode = Boolean(pod.spec?.nodeName);
    const start = pod.status?.startTime || md?.creationTimestamp;
    this.startMs = start ? Date.parse(start) || 0 : 0;
  }

  get nodeName(): string { return this.pod.spec?.nodeName ?? ''; }
  get schedulerName(): string { return this.pod.spec?.schedulerName || DEFAULT_SCHEDULER_NAME; }
}

/** Compiles a pod that is already placed: invalid terms must not stop the cache from counting it. */
export function lenientPodInfo(pod: core.Pod): PodInfo {
  try {
    return new PodInfo(pod);
  } catch {
    const spec = pod.spec ? { ...pod.spec, affinity: undefined, tolerations: [] } : undefined;
    try {
      return new PodInfo({ ...pod, spec });
    } catch {
      return new PodInfo({ ...pod, spec: spec ? { ...spec, containers: [], initContainers: [], overhead: {} } : undefined });
    }
  }
}

export const TAINT_EFFECTS = new Set(['NoSchedule', 'PreferNoSchedule', 'NoExecute']);

/** ToleratesTaint of Kubernetes. */
export function toleratesTaint(t: core.Toleration, taint: core.Taint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.key && t.key !== taint.key) return false;
  if (t.operator === 'Exists') return true;
  // Equal is the default; an empty key with Equal matches only an empty-keyed taint.
  if (!t.key && taint.key) return false;
  return (t.value ?? '') === (taint.value ?? '');
}

export function tolerated(tolerations: readonly core.Toleration[], taint: core.Taint): boolean {
  for (const t of tolerations) if (toleratesTaint(t, taint)) return true;
  return false;
}

/** Image names as Kubernetes normalizes them for ImageLocality: a missing tag means ":latest". */
export function normalizedImageName(name: string): string {
  if (name.lastIndexOf(':') <= name.lastIndexOf('/') && !name.includes('@')) return `${name}:latest`;
  return name;
}

export class NodeInfo {
  node: core.Node | undefined;
  name: string;
  labels: Labels = {};
  taints: core.Taint[] = [];
  unschedulable = false;
  allocatable: Resource = emptyResource();
  readonly requested: Resource = emptyResource();
  nonZeroCPU = 0;
  nonZeroMemory = 0;
  pods: PodInfo[] = [];
  podsWithAffinity = 0;
  podsWithRequiredAntiAffinity = 0;
  /** `${protocol}/${port}` -> host IPs in use. */
  readonly usedPorts = new Map<string, string[]>();
  /** Normalized image name -> size in bytes. */
  images = new Map<string, number>();
  /** Bumped on every change; lets callers notice a node changed under them. */
  generation = 0;
  /** Position in the cache's node list (-1 when the node object is not known). */
  index = -1;

  constructor(nameOrNode: string | core.Node) {
    if (typeof nameOrNode === 'string') this.name = nameOrNode;
    else { this.name = nameOrNode.metadata?.name ?? ''; this.setNode(nameOrNode); }
  }

  setNode(node: core.Node): void {
    this.node = node;
    this.name = node.metadata?.name ?? this.name;
    this.labels = node.metadata?.labels ?? {};
    this.taints = node.spec?.taints ?? [];
    this.unschedulable = Boolean(node.spec?.unschedulable);
    const alloc = node.status?.allocatable && Object.keys(node.status.allocatable).length ? node.status.allocatable : node.status?.capacity;
    this.allocatable = resourceFromList(alloc, `node ${this.name} status.allocatable`);
    // The kubelet always reports "pods"; a node object without it (hand-made, or a Store that
    // rejects the key) gets the kubelet's default maxPods rather than room for none.
    if (alloc?.pods === undefined && node.status?.capacity?.pods === undefined) this.allocatable.allowedPodNumber = DEFAULT_MAX_PODS;
    this.images = new Map();
    for (const img of node.status?.images ?? []) for (const n of img.names ?? []) this.images.set(normalizedImageName(n), Number(img.sizeBytes));
    this.generation++;
  }

  addPod(p: PodInfo): void {
    this.pods.push(p);
    this.account(p, 1);
  }

  /** Removes the pod with this key; returns it, or undefined when it was not here. */
  removePod(key: string): PodInfo | undefined {
    const i = this.pods.findIndex((x) => x.key === key);
    if (i < 0) return undefined;
    const p = this.pods[i];
    this.pods[i] = this.pods[this.pods.length - 1];
    this.pods.pop();
    this.account(p, -1);
    return p;
  }

  private account(p: PodInfo, sign: 1 | -1): void {
    addResource(this.requested, p.requests, sign);
    this.nonZeroCPU += sign * p.nonZeroCPU;
    this.nonZeroMemory += sign * p.nonZeroMemory;
    if (p.hasAffinity) this.podsWithAffinity += sign;
    if (p.requiredAntiAffinityTerms.length) this.podsWithRequiredAntiAffinity += sign;
    for (const hp of p.hostPorts) {
      const k = `${hp.protocol}/${hp.port}`;
      const ips = this.usedPorts.get(k) ?? [];
      if (sign > 0) ips.push(hp.hostIP);
      else { const j = ips.indexOf(hp.hostIP); if (j >= 0) ips.splice(j, 1); }
      if (ips.length) this.usedPorts.set(k, ips); else this.usedPorts.delete(k);
    }
    this.generation++;
  }

  /** A copy whose pods and aggregates can be changed without touching this one (preemption). */
  clone(): NodeInfo {
    const c = new NodeInfo(this.name);
    c.node = this.node; c.labels = this.labels; c.taints = this.taints; c.unschedulable = this.unschedulable;
    c.allocatable = this.allocatable; c.images = this.images; c.index = this.index;
    for (const p of this.pods) c.addPod(p);
    return c;
  }
}

export { cloneResource, selectorFromRequirements };
