// The admission chain, in Kubernetes' order: NamespaceLifecycle, LimitRanger, ServiceAccount,
// DefaultTolerationSeconds, NodeRestriction, Priority, ResourceQuota. Plugins mutate the
// incoming object or refuse it with an AdmissionError. ResourceQuota's arithmetic lives here;
// its exactness under concurrency is the store's job (it commits the usage and the object in
// one etcd transaction).
import type { core } from '@berth/api';
import { nodeNameOf } from './auth/node';
import type { UserInfo } from './auth/types';
import { unwrap, type KindInfo } from './kinds';
import { BUILTIN_PRIORITY_CLASSES } from './auth/policy';
import { qosClass } from './defaults';
import { Quantity } from './quantity';

export class AdmissionError extends Error {
  constructor(readonly plugin: string, message: string, readonly kind: 'Forbidden' | 'Invalid' | 'NotFound' = 'Forbidden') {
    super(message);
    this.name = 'AdmissionError';
  }
}

export type Operation = 'CREATE' | 'UPDATE' | 'DELETE';

/** What plugins may read. All lookups are of the store's current state. */
export interface AdmissionLookups {
  namespace(name: string): Promise<core.Namespace | undefined>;
  limitRanges(namespace: string): Promise<core.LimitRange[]>;
  serviceAccount(namespace: string, name: string): Promise<core.ServiceAccount | undefined>;
  priorityClasses(): Promise<core.PriorityClass[]>;
}

export interface AdmissionRequest {
  operation: Operation;
  info: KindInfo;
  subresource: string;
  namespace: string;
  name: string;
  object: core.Object | undefined;
  old: core.Object | undefined;
  user: UserInfo;
}

export const ADMISSION_ORDER = ['NamespaceLifecycle', 'LimitRanger', 'ServiceAccount', 'DefaultTolerationSeconds', 'NodeRestriction', 'Priority', 'ResourceQuota'] as const;

const IMMORTAL_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

/** Runs the mutating and validating plugins (all but ResourceQuota, which the store applies). */
export async function admit(req: AdmissionRequest, look: AdmissionLookups): Promise<void> {
  await namespaceLifecycle(req, look);
  if (req.subresource === '' && req.object?.pod && req.operation === 'CREATE') {
    await limitRanger(req.object.pod, req.namespace, look);
    await serviceAccount(req.object.pod, req.namespace, look);
    defaultTolerationSeconds(req.object.pod);
  }
  nodeRestriction(req);
  if (req.subresource === '' && req.object?.pod && req.operation === 'CREATE') await priority(req.object.pod, look);
  if (req.subresource === '' && req.object?.priorityClass && req.operation !== 'DELETE') await priorityClassDefault(req.object.priorityClass, look);
}

async function namespaceLifecycle(req: AdmissionRequest, look: AdmissionLookups): Promise<void> {
  if (req.info.kind === 'Namespace' && req.operation === 'DELETE' && IMMORTAL_NAMESPACES.includes(req.name)) {
    throw new AdmissionError('NamespaceLifecycle', `namespaces "${req.name}" is forbidden: this namespace may not be deleted`);
  }
  if (!req.info.namespaced || req.operation !== 'CREATE') return;
  const ns = await look.namespace(req.namespace);
  if (!ns) throw new AdmissionError('NamespaceLifecycle', `namespaces "${req.namespace}" not found`, 'NotFound');
  // Events may still be written while a namespace terminates (they explain why).
  if ((ns.status?.phase === 'Terminating' || ns.metadata?.deletionTimestamp) && req.info.kind !== 'Event') {
    throw new AdmissionError('NamespaceLifecycle', `${req.info.resource} "${req.name}" is forbidden: unable to create new content in namespace ${req.namespace} because it is being terminated`);
  }
}

async function limitRanger(pod: core.Pod, namespace: string, look: AdmissionLookups): Promise<void> {
  const ranges = await look.limitRanges(namespace);
  if (!ranges.length) return;
  const spec = pod.spec!;
  const containers = [...spec.initContainers, ...spec.containers];
  for (const lr of ranges) {
    for (const item of lr.spec?.limits ?? []) {
      if (item.type !== 'Container') continue;
      for (const c of containers) {
        c.resources ??= { limits: {}, requests: {}, claims: [] };
        for (const [k, v] of Object.entries(item.default)) if (!(k in c.resources.limits)) c.resources.limits[k] = v;
        for (const [k, v] of Object.entries(item.defaultRequest)) if (!(k in c.resources.requests)) c.resources.requests[k] = v;
        // A limit with no request gets the limit as its request (after defaulting).
        for (const [k, v] of Object.entries(c.resources.limits)) if (!(k in c.resources.requests)) c.resources.requests[k] = v;
      }
    }
  }
  const who = `pods "${pod.metadata?.name || pod.metadata?.generateName}" is forbidden`;
  for (const lr of ranges) {
    for (const item of lr.spec?.limits ?? []) {
      if (item.type === 'Container') {
        for (const c of containers) {
          for (const [k, max] of Object.entries(item.max)) {
            const lim = c.resources?.limits[k];
            if (!lim) throw new AdmissionError('LimitRanger', `${who}: maximum ${k} usage per Container is ${max}.  No limit is specified`);
            if (Quantity.parse(lim).cmp(Quantity.parse(max)) > 0) throw new AdmissionError('LimitRanger', `${who}: maximum ${k} usage per Container is ${max}, but limit is ${lim}`);
          }
          for (const [k, min] of Object.entries(item.min)) {
            const r = c.resources?.requests[k];
            if (!r) throw new AdmissionError('LimitRanger', `${who}: minimum ${k} usage per Container is ${min}.  No request is specified`);
            if (Quantity.parse(r).cmp(Quantity.parse(min)) < 0) throw new AdmissionError('LimitRanger', `${who}: minimum ${k} usage per Container is ${min}, but request is ${r}`);
          }
        }
      } else if (item.type === 'Pod') {
        for (const [k, max] of Object.entries(item.max)) {
          let sum = Quantity.zero();
          for (const c of spec.containers) {
            const lim = c.resources?.limits[k];
            if (!lim) throw new AdmissionError('LimitRanger', `${who}: maximum ${k} usage per Pod is ${max}.  No limit is specified`);
            sum = sum.add(Quantity.parse(lim));
          }
          if (sum.cmp(Quantity.parse(max)) > 0) throw new AdmissionError('LimitRanger', `${who}: maximum ${k} usage per Pod is ${max}, but limit is ${sum}`);
        }
        for (const [k, min] of Object.entries(item.min)) {
          let sum = Quantity.zero();
          for (const c of spec.containers) sum = sum.add(Quantity.parse(c.resources?.requests[k] ?? '0'));
          if (sum.cmp(Quantity.parse(min)) < 0) throw new AdmissionError('LimitRanger', `${who}: minimum ${k} usage per Pod is ${min}, but request is ${sum}`);
        }
      }
    }
  }
}

async function serviceAccount(pod: core.Pod, namespace: string, look: AdmissionLookups): Promise<void> {
  const spec = pod.spec!;
  if (!spec.serviceAccountName) spec.serviceAccountName = 'default';
  spec.serviceAccount = spec.serviceAccountName;
  const sa = await look.serviceAccount(namespace, spec.serviceAccountName);
  if (!sa) throw new AdmissionError('ServiceAccount', `pods "${pod.metadata?.name || pod.metadata?.generateName}" is forbidden: error looking up service account ${namespace}/${spec.serviceAccountName}: serviceaccount "${spec.serviceAccountName}" not found`);
  if (spec.automountServiceAccountToken === undefined && sa.automountServiceAccountToken !== undefined) spec.automountServiceAccountToken = sa.automountServiceAccountToken;
  for (const s of sa.imagePullSecrets) if (!spec.imagePullSecrets.some((x) => x.name === s.name)) spec.imagePullSecrets.push({ name: s.name });
}

const NOT_READY = 'node.kubernetes.io/not-ready';
const UNREACHABLE = 'node.kubernetes.io/unreachable';
export const DEFAULT_TOLERATION_SECONDS = 300;

function defaultTolerationSeconds(pod: core.Pod): void {
  const t = pod.spec!.tolerations;
  const tolerates = (key: string) => t.some((x) => (x.operator === 'Exists' && !x.key) || (x.key === key && (x.effect === 'NoExecute' || x.effect === '')));
  for (const key of [NOT_READY, UNREACHABLE]) {
    if (!tolerates(key)) t.push({ key, operator: 'Exists', value: '', effect: 'NoExecute', tolerationSeconds: DEFAULT_TOLERATION_SECONDS });
  }
}

function nodeRestriction(req: AdmissionRequest): void {
  const node = nodeNameOf(req.user);
  if (!node) return;
  const deny = (msg: string) => { throw new AdmissionError('NodeRestriction', msg); };
  if (req.info.kind === 'Pod' && req.subresource === '' && req.operation === 'CREATE') {
    // Kubernetes lets a node create only mirror pods of its static pods, bound to itself.
    const p = req.object!.pod!;
    if (!p.metadata?.annotations['kubernetes.io/config.mirror']) deny(`pod "${req.name}" is forbidden: node "${node}" can only create mirror pods`);
    if (p.spec?.nodeName !== node) deny(`pod "${req.name}" is forbidden: node "${node}" can only create pods with spec.nodeName set to itself`);
  }
  if (req.info.kind === 'Node' && req.subresource === '' && (req.operation === 'CREATE' || req.operation === 'UPDATE')) {
    if (req.name !== node) deny(`node "${node}" is not allowed to modify node "${req.name}"`);
    const labels = unwrap(req.object!).value.metadata?.labels ?? {};
    const oldLabels = req.old ? unwrap(req.old).value.metadata?.labels ?? {} : {};
    for (const k of new Set([...Object.keys(labels), ...Object.keys(oldLabels)])) {
      if (/(^|\.)node-restriction\.kubernetes\.io\//.test(k) && labels[k] !== oldLabels[k]) deny(`is not allowed to modify labels: ${k}`);
    }
    if (req.operation === 'UPDATE' && JSON.stringify(req.object!.node?.spec?.taints ?? []) !== JSON.stringify(req.old!.node?.spec?.taints ?? [])) deny(`node "${node}" is not allowed to modify taints`);
  }
  if (req.info.kind === 'Pod' && req.subresource === 'status' && req.old?.pod?.spec?.nodeName !== node) deny(`node "${node}" can only update the status of its own pods`);
}

async function priority(pod: core.Pod, look: AdmissionLookups): Promise<void> {
  const spec = pod.spec!;
  const classes = await look.priorityClasses();
  const all = [...BUILTIN_PRIORITY_CLASSES.map((b) => ({ name: b.name, value: b.value, globalDefault: false, preemptionPolicy: 'PreemptLowerPriority' })),
    ...classes.map((c) => ({ name: c.metadata!.name, value: c.value, globalDefault: c.globalDefault, preemptionPolicy: c.preemptionPolicy ?? 'PreemptLowerPriority' }))];
  let value = 0;
  let policy = 'PreemptLowerPriority';
  if (spec.priorityClassName) {
    const pc = all.find((c) => c.name === spec.priorityClassName);
    if (!pc) throw new AdmissionError('Priority', `pods "${pod.metadata?.name || pod.metadata?.generateName}" is forbidden: no PriorityClass with name ${spec.priorityClassName} was found`);
    value = pc.value;
    policy = pc.preemptionPolicy;
  } else {
    const def = all.filter((c) => c.globalDefault).sort((a, b) => a.value - b.value)[0];
    if (def) { spec.priorityClassName = def.name; value = def.value; policy = def.preemptionPolicy; }
  }
  if (spec.priority !== undefined && spec.priority !== value) {
    throw new AdmissionError('Priority', `pods "${pod.metadata?.name}" is forbidden: the integer value of priority (${spec.priority}) must not be provided in pod spec; priority admission controller computed ${value} from the given PriorityClass name`);
  }
  spec.priority = value;
  if (spec.preemptionPolicy === undefined) spec.preemptionPolicy = policy;
}

async function priorityClassDefault(pc: core.PriorityClass, look: AdmissionLookups): Promise<void> {
  if (!pc.globalDefault) return;
  const other = (await look.priorityClasses()).find((c) => c.globalDefault && c.metadata?.name !== pc.metadata?.name);
  if (other) throw new AdmissionError('Priority', `PriorityClass "${other.metadata?.name}" is already marked as default. Only one default can exist`);
}

// ---- ResourceQuota ----

/** What one object adds to a namespace's quota usage. */
export function quotaUsage(info: KindInfo, obj: core.Object | undefined): Record<string, Quantity> {
  const one = Quantity.parse('1');
  const out: Record<string, Quantity> = { [`count/${info.resource}`]: one };
  const legacy: Record<string, string> = { pods: 'pods', configmaps: 'configmaps', secrets: 'secrets', serviceaccounts: 'serviceaccounts', resourcequotas: 'resourcequotas' };
  if (legacy[info.resource]) out[legacy[info.resource]] = one;
  const pod = obj?.pod;
  if (pod?.spec) {
    // Terminal pods do not count (Kubernetes' quota evaluator).
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return {};
    const req: Record<string, Quantity> = {};
    const lim: Record<string, Quantity> = {};
    for (const c of pod.spec.containers) {
      for (const [k, v] of Object.entries(c.resources?.requests ?? {})) req[k] = (req[k] ?? Quantity.zero()).add(Quantity.parse(v));
      for (const [k, v] of Object.entries(c.resources?.limits ?? {})) lim[k] = (lim[k] ?? Quantity.zero()).add(Quantity.parse(v));
    }
    // Init containers run one at a time: the pod needs the max of any init container.
    for (const c of pod.spec.initContainers) {
      for (const [k, v] of Object.entries(c.resources?.requests ?? {})) { const q = Quantity.parse(v); if (!req[k] || q.cmp(req[k]) > 0) req[k] = q; }
      for (const [k, v] of Object.entries(c.resources?.limits ?? {})) { const q = Quantity.parse(v); if (!lim[k] || q.cmp(lim[k]) > 0) lim[k] = q; }
    }
    for (const [k, v] of Object.entries(pod.spec.overhead)) {
      req[k] = (req[k] ?? Quantity.zero()).add(Quantity.parse(v));
      lim[k] = (lim[k] ?? Quantity.zero()).add(Quantity.parse(v));
    }
    for (const k of ['cpu', 'memory', 'ephemeral-storage']) {
      if (req[k]) { out[`requests.${k}`] = req[k]; out[k] = req[k]; }
      if (lim[k]) out[`limits.${k}`] = lim[k];
    }
  }
  return out;
}

/** Kubernetes' quota scopes. */
export const QUOTA_SCOPES = ['Terminating', 'NotTerminating', 'BestEffort', 'NotBestEffort', 'PriorityClass', 'CrossNamespacePodAffinity'] as const;

/** A pod whose (anti-)affinity looks at other namespaces (namespaces listed, or a namespaceSelector). */
function crossNamespaceAffinity(spec: core.PodSpec, namespace: string): boolean {
  const a = spec.affinity;
  const terms = [a?.podAffinity, a?.podAntiAffinity].flatMap((x) => [...(x?.requiredDuringSchedulingIgnoredDuringExecution ?? []), ...(x?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((w) => w.podAffinityTerm)]);
  return terms.some((t) => !!t && (t.namespaceSelector !== undefined || t.namespaces.some((n) => n !== namespace)));
}

/**
 * Whether a quota counts this object: an unscoped quota counts everything; a quota with scopes
 * (or a scopeSelector) counts only the pods matching every one of them.
 */
export function quotaMatchesScopes(quota: core.ResourceQuota, info: KindInfo, obj: core.Object | undefined): boolean {
  const scopes = quota.spec?.scopes ?? [];
  const exprs = quota.spec?.scopeSelector?.matchExpressions ?? [];
  if (!scopes.length && !exprs.length) return true;
  const spec = obj?.pod?.spec;
  if (info.resource !== 'pods' || !spec) return false;
  const has = (scope: string): boolean => {
    switch (scope) {
      case 'Terminating': return spec.activeDeadlineSeconds !== undefined && spec.activeDeadlineSeconds >= 0;
      case 'NotTerminating': return spec.activeDeadlineSeconds === undefined || spec.activeDeadlineSeconds < 0;
      case 'BestEffort': return qosClass(spec) === 'BestEffort';
      case 'NotBestEffort': return qosClass(spec) !== 'BestEffort';
      case 'PriorityClass': return !!spec.priorityClassName;
      case 'CrossNamespacePodAffinity': return crossNamespaceAffinity(spec, obj!.pod!.metadata?.namespace ?? '');
      default: return false;
    }
  };
  if (!scopes.every(has)) return false;
  return exprs.every((e) => {
    if (e.scopeName === 'PriorityClass') {
      const pc = spec.priorityClassName;
      switch (e.operator) {
        case 'In': return !!pc && e.values.includes(pc);
        case 'NotIn': return !pc || !e.values.includes(pc); // Kubernetes: a pod without a class is "not in"
        case 'Exists': return !!pc;
        case 'DoesNotExist': return !pc;
        default: return false;
      }
    }
    if (e.operator === 'Exists') return has(e.scopeName);
    if (e.operator === 'DoesNotExist') return !has(e.scopeName);
    return false;
  });
}

/** Resource names a quota tracks that the pod must specify for it to be admitted. */
const NEEDS_EXPLICIT = ['requests.cpu', 'requests.memory', 'limits.cpu', 'limits.memory', 'cpu', 'memory'];

/**
 * Checks a quota against an added usage; returns the new `used` (for the hard keys only), or
 * throws Kubernetes' "exceeded quota" error.
 */
export function chargeQuota(quota: core.ResourceQuota, used: Record<string, string>, delta: Record<string, Quantity>, what: string): Record<string, string> {
  const hard = quota.spec?.hard ?? {};
  const next: Record<string, string> = {};
  const exceeded: string[] = [];
  const missing: string[] = [];
  for (const [k, h] of Object.entries(hard)) {
    const cur = Quantity.parse(used[k] ?? '0');
    const d = delta[k];
    if (!d) {
      if (NEEDS_EXPLICIT.includes(k) && delta['count/pods']) missing.push(k);
      next[k] = cur.toString();
      continue;
    }
    const n = cur.add(d);
    if (n.cmp(Quantity.parse(h)) > 0) exceeded.push(`requested: ${k}=${d}, used: ${k}=${cur}, limited: ${k}=${h}`);
    next[k] = Quantity.fromNanos(n.nanos, Quantity.parse(h).format).toString();
  }
  const name = quota.metadata?.name;
  if (missing.length) throw new AdmissionError('ResourceQuota', `${what} is forbidden: failed quota: ${name}: must specify ${missing.sort().join(',')}`);
  if (exceeded.length) throw new AdmissionError('ResourceQuota', `${what} is forbidden: exceeded quota: ${name}, ${exceeded.join(', ')}`);
  return next;
}

/** Subtracts a deleted object's usage (never below zero). */
export function releaseQuota(quota: core.ResourceQuota, used: Record<string, string>, delta: Record<string, Quantity>): Record<string, string> {
  const next: Record<string, string> = { ...used };
  for (const k of Object.keys(quota.spec?.hard ?? {})) {
    if (!delta[k]) continue;
    const n = Quantity.parse(used[k] ?? '0').sub(delta[k]);
    next[k] = (n.nanos < 0n ? Quantity.zero() : n).toString();
  }
  return next;
}
