// Defaults applied on create and update, as Kubernetes' defaulting does (SetDefaults_*), plus
// the QoS class the store computes into a pod's status.
import type { core } from '@berth/api';
import { Quantity } from './quantity';

/** `Always` for `:latest` or an untagged image, else `IfNotPresent` (digests included). */
export function defaultPullPolicy(image: string): string {
  if (image.includes('@')) return 'IfNotPresent';
  const lastSlash = image.lastIndexOf('/');
  const colon = image.indexOf(':', lastSlash + 1);
  const tag = colon >= 0 ? image.slice(colon + 1) : '';
  return tag === '' || tag === 'latest' ? 'Always' : 'IfNotPresent';
}

function defaultProbe(p: core.Probe | undefined): void {
  if (!p) return;
  if (!p.timeoutSeconds) p.timeoutSeconds = 1;
  if (!p.periodSeconds) p.periodSeconds = 10;
  if (!p.successThreshold) p.successThreshold = 1;
  if (!p.failureThreshold) p.failureThreshold = 3;
  if (p.httpGet) {
    if (!p.httpGet.path) p.httpGet.path = '/';
    if (!p.httpGet.scheme) p.httpGet.scheme = 'HTTP';
  }
}

function defaultContainer(c: core.Container): void {
  if (!c.imagePullPolicy && c.image) c.imagePullPolicy = defaultPullPolicy(c.image);
  if (!c.terminationMessagePath) c.terminationMessagePath = '/dev/termination-log';
  if (!c.terminationMessagePolicy) c.terminationMessagePolicy = 'File';
  for (const p of c.ports) if (!p.protocol) p.protocol = 'TCP';
  defaultProbe(c.livenessProbe);
  defaultProbe(c.readinessProbe);
  defaultProbe(c.startupProbe);
  for (const h of [c.lifecycle?.postStart, c.lifecycle?.preStop]) {
    if (h?.httpGet) {
      if (!h.httpGet.path) h.httpGet.path = '/';
      if (!h.httpGet.scheme) h.httpGet.scheme = 'HTTP';
    }
  }
  // Requests default to limits for resources that set a limit only.
  if (c.resources) {
    for (const [k, v] of Object.entries(c.resources.limits)) if (!(k in c.resources.requests)) c.resources.requests[k] = v;
  }
}

export function defaultPodSpec(s: core.PodSpec): void {
  if (!s.restartPolicy) s.restartPolicy = 'Always';
  if (s.terminationGracePeriodSeconds === undefined) s.terminationGracePeriodSeconds = 30;
  if (!s.dnsPolicy) s.dnsPolicy = 'ClusterFirst';
  if (!s.schedulerName) s.schedulerName = 'default-scheduler';
  if (s.enableServiceLinks === undefined) s.enableServiceLinks = true;
  if (!s.securityContext) s.securityContext = { seLinuxOptions: undefined, supplementalGroups: [], sysctls: [], seccompProfile: undefined, appArmorProfile: undefined } as core.PodSecurityContext;
  // serviceAccount is the deprecated alias; keep the two in step.
  if (!s.serviceAccountName && s.serviceAccount) s.serviceAccountName = s.serviceAccount;
  if (s.serviceAccountName && !s.serviceAccount) s.serviceAccount = s.serviceAccountName;
  for (const t of s.tolerations) if (!t.operator) t.operator = 'Equal';
  s.initContainers.forEach(defaultContainer);
  s.containers.forEach(defaultContainer);
  for (const v of s.volumes) {
    if (v.secret && v.secret.defaultMode === undefined) v.secret.defaultMode = 0o644;
    if (v.configMap && v.configMap.defaultMode === undefined) v.configMap.defaultMode = 0o644;
    if (v.hostPath && v.hostPath.type === undefined) v.hostPath.type = '';
  }
}

/** Kubernetes' QoS class of a pod (computed from its containers' requests and limits). */
export function qosClass(spec: core.PodSpec): 'Guaranteed' | 'Burstable' | 'BestEffort' {
  try {
    return computeQos(spec);
  } catch {
    return 'BestEffort'; // an invalid quantity: validation reports it with its field path
  }
}

function computeQos(spec: core.PodSpec): 'Guaranteed' | 'Burstable' | 'BestEffort' {
  const containers = [...spec.initContainers, ...spec.containers];
  const tracked = (k: string) => k === 'cpu' || k === 'memory';
  let any = false;
  let guaranteed = true;
  for (const c of containers) {
    const req = c.resources?.requests ?? {};
    const lim = c.resources?.limits ?? {};
    for (const [k, v] of Object.entries(req)) if (tracked(k) && !Quantity.parse(v).isZero()) any = true;
    for (const [k, v] of Object.entries(lim)) if (tracked(k) && !Quantity.parse(v).isZero()) any = true;
    for (const k of ['cpu', 'memory']) {
      const l = lim[k];
      const r = req[k] ?? l;
      if (!l || Quantity.parse(l).isZero() || Quantity.parse(r).cmp(Quantity.parse(l)) !== 0) guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

/** Applies the defaults of the object's kind in place. */
export function applyDefaults(obj: core.Object): void {
  if (obj.pod) {
    const p = obj.pod;
    if (p.spec) defaultPodSpec(p.spec);
  } else if (obj.namespace) {
    const ns = obj.namespace;
    ns.spec ??= { finalizers: [] };
    if (!ns.spec.finalizers.length) ns.spec.finalizers = ['kubernetes'];
    ns.status ??= { phase: '', conditions: [] };
    if (!ns.status.phase) ns.status.phase = 'Active';
  } else if (obj.secret) {
    const s = obj.secret;
    if (!s.type) s.type = 'Opaque';
    // stringData is write-only: merged into data, never stored.
    for (const [k, v] of Object.entries(s.stringData)) s.data[k] = Buffer.from(v, 'utf8');
    s.stringData = {};
  } else if (obj.priorityClass) {
    if (obj.priorityClass.preemptionPolicy === undefined) obj.priorityClass.preemptionPolicy = 'PreemptLowerPriority';
  } else if (obj.event) {
    if (!obj.event.type) obj.event.type = 'Normal';
    if (!obj.event.count) obj.event.count = 1;
  } else if (obj.node) {
    const n = obj.node;
    if (n.status && n.status.allocatable && !Object.keys(n.status.allocatable).length) n.status.allocatable = { ...n.status.capacity };
  }
}

/** What the store sets on a newly created pod's status. */
export function initialPodStatus(p: core.Pod): void {
  p.status ??= { phase: '', conditions: [], message: '', reason: '', nominatedNodeName: '', hostIP: '', hostIPs: [], podIP: '', podIPs: [], startTime: '', initContainerStatuses: [], containerStatuses: [], qosClass: '' };
  if (!p.status.phase) p.status.phase = 'Pending';
  if (p.spec) p.status.qosClass = qosClass(p.spec);
}
