// Validation with Kubernetes' rules and error wording. Every problem is a FieldError with the
// path of the field (`spec.containers[0].resources.limits.cpu`), collected into one list so a
// user sees every problem of a manifest at once.
import type { core } from '@berth/api';
import { unwrap, type KindInfo } from './kinds';
import {
  validateConfigMapKey,
  validateDns1123Label,
  validateDns1123Subdomain,
  validateEnvVarName,
  validateLabelValue,
  validatePortName,
  validateQualifiedName,
} from './names';
import { QUOTA_SCOPES } from './admission';
import { csrProblems } from './certificates';
import { Quantity } from './quantity';
import { SelectorError, labelSelectorFromProto } from './selectors';

export type FieldErrorType = 'Required' | 'Invalid' | 'Unsupported' | 'Duplicate' | 'Forbidden' | 'TooLong' | 'NotFound';

export interface FieldError {
  type: FieldErrorType;
  field: string;
  value?: unknown;
  detail?: string;
}

const TYPE_TEXT: Record<FieldErrorType, string> = {
  Required: 'Required value',
  Invalid: 'Invalid value',
  Unsupported: 'Unsupported value',
  Duplicate: 'Duplicate value',
  Forbidden: 'Forbidden',
  TooLong: 'Too long',
  NotFound: 'Not found',
};

/** `spec.containers[0].image: Required value` / `metadata.name: Invalid value: "Foo": ...`. */
export function formatFieldError(e: FieldError): string {
  let s = `${e.field}: ${TYPE_TEXT[e.type]}`;
  if ((e.type === 'Invalid' || e.type === 'Unsupported' || e.type === 'Duplicate' || e.type === 'NotFound') && e.value !== undefined) s += `: ${JSON.stringify(e.value)}`;
  if (e.detail) s += `: ${e.detail}`;
  return s;
}

export class ValidationError extends Error {
  constructor(readonly kind: string, readonly objectName: string, readonly errors: FieldError[]) {
    super(`${kind} ${JSON.stringify(objectName)} is invalid: ${errors.map(formatFieldError).join(', ')}`);
    this.name = 'ValidationError';
  }
  /** Path of the first invalid field. */
  get field(): string {
    return this.errors[0]?.field ?? '';
  }
}

class Errs {
  list: FieldError[] = [];
  required(field: string, detail?: string) { this.list.push({ type: 'Required', field, detail }); }
  invalid(field: string, value: unknown, detail: string) { this.list.push({ type: 'Invalid', field, value, detail }); }
  unsupported(field: string, value: unknown, supported: readonly string[]) {
    this.list.push({ type: 'Unsupported', field, value, detail: `supported values: ${supported.map((s) => JSON.stringify(s)).join(', ')}` });
  }
  duplicate(field: string, value: unknown) { this.list.push({ type: 'Duplicate', field, value }); }
  forbidden(field: string, detail: string) { this.list.push({ type: 'Forbidden', field, detail }); }
  each(field: string, value: string, problems: string[]) { for (const p of problems) this.invalid(field, value, p); }
}

function oneOf(e: Errs, field: string, v: string | undefined, allowed: readonly string[], required = false): void {
  if (v === undefined || v === '') { if (required) e.required(field); return; }
  if (!allowed.includes(v)) e.unsupported(field, v, allowed);
}

function nonNegative(e: Errs, field: string, v: number | undefined): void {
  if (v !== undefined && v < 0) e.invalid(field, v, 'must be greater than or equal to 0');
}

const MAX_ANNOTATIONS_BYTES = 256 * 1024;

function validateMeta(e: Errs, info: KindInfo, m: core.ObjectMeta | undefined, opts: { nameIsLabel?: boolean } = {}): void {
  if (!m) { e.required('metadata'); return; }
  if (!m.name && !m.generateName) e.required('metadata.name', 'name or generateName is required');
  if (m.name) e.each('metadata.name', m.name, opts.nameIsLabel ? validateDns1123Label(m.name) : validateDns1123Subdomain(m.name));
  if (m.generateName && !m.name) e.each('metadata.generateName', m.generateName, validateDns1123Subdomain(`${m.generateName}a`));
  if (info.namespaced) {
    if (m.namespace) e.each('metadata.namespace', m.namespace, validateDns1123Label(m.namespace));
  } else if (m.namespace) {
    e.forbidden('metadata.namespace', 'not allowed on this type');
  }
  for (const [k, v] of Object.entries(m.labels ?? {})) {
    e.each(`metadata.labels`, k, validateQualifiedName(k));
    e.each(`metadata.labels`, v, validateLabelValue(v));
  }
  let size = 0;
  for (const [k, v] of Object.entries(m.annotations ?? {})) {
    e.each('metadata.annotations', k, validateQualifiedName(k.toLowerCase()));
    size += k.length + v.length;
  }
  if (size > MAX_ANNOTATIONS_BYTES) e.list.push({ type: 'TooLong', field: 'metadata.annotations', detail: `must have at most ${MAX_ANNOTATIONS_BYTES} bytes` });
  m.finalizers?.forEach((f, i) => e.each(`metadata.finalizers[${i}]`, f, validateQualifiedName(f)));
  let controllers = 0;
  m.ownerReferences?.forEach((r, i) => {
    const p = `metadata.ownerReferences[${i}]`;
    if (!r.apiVersion) e.required(`${p}.apiVersion`);
    if (!r.kind) e.required(`${p}.kind`);
    if (!r.name) e.required(`${p}.name`);
    if (!r.uid) e.required(`${p}.uid`);
    if (r.controller) controllers++;
  });
  if (controllers > 1) e.invalid('metadata.ownerReferences', controllers, 'Only one reference can have Controller set to true');
}

// ---- resources ----

const STANDARD_CONTAINER_RESOURCES = ['cpu', 'memory', 'ephemeral-storage'];
// A node also reports how many pods it takes (Kubernetes' standard resource names for nodes).
const STANDARD_NODE_RESOURCES = [...STANDARD_CONTAINER_RESOURCES, 'pods', 'storage'];

function quantityOf(e: Errs, field: string, v: string): Quantity | undefined {
  try {
    const q = Quantity.parse(v);
    if (q.nanos < 0n) { e.invalid(field, v, 'must be greater than or equal to 0'); return undefined; }
    return q;
  } catch {
    e.invalid(field, v, 'invalid quantity');
    return undefined;
  }
}

function validateResourceName(e: Errs, field: string, name: string, standard = STANDARD_CONTAINER_RESOURCES): void {
  if (standard.includes(name) || /^hugepages-/.test(name)) return;
  if (!name.includes('/')) { e.invalid(field, name, 'must be a standard resource type or fully qualified'); return; }
  e.each(field, name, validateQualifiedName(name));
}

export function validateResourceList(e: Errs, field: string, list: Record<string, string> | undefined, quota = false, standard = STANDARD_CONTAINER_RESOURCES): Record<string, Quantity> {
  const out: Record<string, Quantity> = {};
  for (const [k, v] of Object.entries(list ?? {})) {
    const p = `${field}.${k}`;
    // Quota keys are "pods", "requests.cpu", "count/configmaps"...: only their syntax is checked.
    if (quota) e.each(field, k, validateQualifiedName(k));
    else validateResourceName(e, field, k, standard);
    const q = quantityOf(e, p, v);
    if (q) out[k] = q;
  }
  return out;
}

function validateResources(e: Errs, field: string, r: core.ResourceRequirements | undefined): void {
  if (!r) return;
  const limits = validateResourceList(e, `${field}.limits`, r.limits);
  const requests = validateResourceList(e, `${field}.requests`, r.requests);
  for (const [k, req] of Object.entries(requests)) {
    const lim = limits[k];
    if (lim && req.cmp(lim) > 0) e.invalid(`${field}.requests`, r.requests[k], `must be less than or equal to ${k} limit of ${r.limits[k]}`);
    if (/^hugepages-/.test(k) && !lim) e.forbidden(`${field}.limits`, `HugePages require cpu or memory`);
  }
}

// ---- probes and handlers ----

function validatePort(e: Errs, field: string, p: core.IntOrString | undefined, portNames: Set<string>): void {
  if (!p || (p.intValue === undefined && p.stringValue === undefined)) { e.required(field); return; }
  if (p.intValue !== undefined) {
    if (p.intValue < 1 || p.intValue > 65535) e.invalid(field, p.intValue, 'must be between 1 and 65535, inclusive');
  } else if (p.stringValue !== undefined) {
    const errs = validatePortName(p.stringValue);
    if (errs.length) e.each(field, p.stringValue, errs);
    else if (!portNames.has(p.stringValue)) e.invalid(field, p.stringValue, 'must contain the name of a container port');
  }
}

function handlerCount(h: { exec?: unknown; httpGet?: unknown; tcpSocket?: unknown; grpc?: unknown; sleep?: unknown }): number {
  return [h.exec, h.httpGet, h.tcpSocket, h.grpc, h.sleep].filter((x) => x !== undefined).length;
}

function validateHandler(e: Errs, field: string, h: core.Probe | core.LifecycleHandler, portNames: Set<string>): void {
  const n = handlerCount(h);
  if (n === 0) e.required(field, 'must specify a handler type');
  if (n > 1) e.forbidden(field, 'may not specify more than 1 handler type');
  if (h.exec && !h.exec.command.length) e.required(`${field}.exec.command`);
  if (h.httpGet) {
    validatePort(e, `${field}.httpGet.port`, h.httpGet.port, portNames);
    oneOf(e, `${field}.httpGet.scheme`, h.httpGet.scheme, ['HTTP', 'HTTPS']);
    h.httpGet.httpHeaders.forEach((hd, i) => { if (!/^[-A-Za-z0-9!#$%&'*+.^_`|~]+$/.test(hd.name)) e.invalid(`${field}.httpGet.httpHeaders[${i}].name`, hd.name, 'a valid HTTP header must consist of alphanumeric characters or \'-\''); });
  }
  if (h.tcpSocket) validatePort(e, `${field}.tcpSocket.port`, h.tcpSocket.port, portNames);
  if ('grpc' in h && h.grpc) {
    if (h.grpc.port < 1 || h.grpc.port > 65535) e.invalid(`${field}.grpc.port`, h.grpc.port, 'must be between 1 and 65535, inclusive');
  }
  if ('sleep' in h && h.sleep && h.sleep.seconds <= 0) e.invalid(`${field}.sleep.seconds`, h.sleep.seconds, 'must be greater than 0');
}

function validateProbe(e: Errs, field: string, p: core.Probe | undefined, portNames: Set<string>, mustSucceedOnce: boolean): void {
  if (!p) return;
  validateHandler(e, field, p, portNames);
  nonNegative(e, `${field}.initialDelaySeconds`, p.initialDelaySeconds);
  for (const k of ['timeoutSeconds', 'periodSeconds', 'successThreshold', 'failureThreshold'] as const) {
    if (p[k] < 1) e.invalid(`${field}.${k}`, p[k], 'must be greater than or equal to 1');
  }
  if (mustSucceedOnce && p.successThreshold !== 1) e.invalid(`${field}.successThreshold`, p.successThreshold, 'must be 1');
  if (p.terminationGracePeriodSeconds !== undefined && p.terminationGracePeriodSeconds <= 0) e.invalid(`${field}.terminationGracePeriodSeconds`, p.terminationGracePeriodSeconds, 'must be greater than 0');
}

// ---- containers ----

const PROTOCOLS = ['TCP', 'UDP', 'SCTP'];
const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'];

function validateContainer(e: Errs, field: string, c: core.Container, volumes: Set<string>, init: boolean): void {
  if (!c.name) e.required(`${field}.name`);
  else e.each(`${field}.name`, c.name, validateDns1123Label(c.name));
  if (!c.image || !c.image.trim()) e.required(`${field}.image`);
  else if (c.image !== c.image.trim()) e.invalid(`${field}.image`, c.image, 'must not have leading or trailing whitespace');
  const portNames = new Set<string>();
  c.ports.forEach((p, i) => {
    const f = `${field}.ports[${i}]`;
    if (p.name) {
      e.each(`${f}.name`, p.name, validatePortName(p.name));
      if (portNames.has(p.name)) e.duplicate(`${f}.name`, p.name);
      portNames.add(p.name);
    }
    if (p.containerPort < 1 || p.containerPort > 65535) {
      if (p.containerPort === 0) e.required(`${f}.containerPort`);
      else e.invalid(`${f}.containerPort`, p.containerPort, 'must be between 1 and 65535, inclusive');
    }
    if (p.hostPort !== 0 && (p.hostPort < 1 || p.hostPort > 65535)) e.invalid(`${f}.hostPort`, p.hostPort, 'must be between 1 and 65535, inclusive');
    oneOf(e, `${f}.protocol`, p.protocol, PROTOCOLS, true);
  });
  c.env.forEach((v, i) => {
    const f = `${field}.env[${i}]`;
    if (!v.name) e.required(`${f}.name`);
    else e.each(`${f}.name`, v.name, validateEnvVarName(v.name));
    if (v.valueFrom) {
      const s = v.valueFrom;
      const n = [s.fieldRef, s.resourceFieldRef, s.configMapKeyRef, s.secretKeyRef].filter(Boolean).length;
      if (v.value) e.invalid(`${f}.valueFrom`, '', 'may not be specified when `value` is not empty');
      if (n !== 1) e.invalid(`${f}.valueFrom`, '', 'may not have more than one field specified at a time');
      if (s.fieldRef && !s.fieldRef.fieldPath) e.required(`${f}.valueFrom.fieldRef.fieldPath`);
      if (s.configMapKeyRef && !s.configMapKeyRef.key) e.required(`${f}.valueFrom.configMapKeyRef.key`);
      if (s.secretKeyRef && !s.secretKeyRef.key) e.required(`${f}.valueFrom.secretKeyRef.key`);
    }
  });
  c.envFrom.forEach((s, i) => {
    if (!!s.configMapRef === !!s.secretRef) e.invalid(`${field}.envFrom[${i}]`, '', 'must specify one of: `configMapRef` or `secretRef`');
  });
  validateResources(e, `${field}.resources`, c.resources);
  const mountPaths = new Set<string>();
  c.volumeMounts.forEach((m, i) => {
    const f = `${field}.volumeMounts[${i}]`;
    if (!m.name) e.required(`${f}.name`);
    else if (!volumes.has(m.name)) e.list.push({ type: 'NotFound', field: `${f}.name`, value: m.name });
    if (!m.mountPath) e.required(`${f}.mountPath`);
    else if (m.mountPath.includes(':')) e.invalid(`${f}.mountPath`, m.mountPath, 'must not contain \':\'');
    if (mountPaths.has(m.mountPath)) e.invalid(`${f}.mountPath`, m.mountPath, 'must be unique');
    mountPaths.add(m.mountPath);
    // A sub-path must stay inside its volume: refuse absolute paths and '..' components.
    for (const [k, sp] of [['subPath', m.subPath], ['subPathExpr', m.subPathExpr]] as const) {
      if (!sp) continue;
      if (sp.startsWith('/')) e.invalid(`${f}.${k}`, sp, 'must be a relative path');
      if (sp.split('/').includes('..')) e.invalid(`${f}.${k}`, sp, "must not contain '..'");
    }
    if (m.subPath && m.subPathExpr) e.invalid(`${f}.subPathExpr`, m.subPathExpr, 'subPathExpr and subPath are mutually exclusive');
    if (m.mountPropagation !== undefined) oneOf(e, `${f}.mountPropagation`, m.mountPropagation, ['None', 'HostToContainer', 'Bidirectional']);
  });
  const sidecar = init && c.restartPolicy === 'Always';
  if (init && !sidecar) {
    for (const k of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const) if (c[k]) e.forbidden(`${field}.${k}`, 'may not be set for init containers without restartPolicy=Always');
  } else {
    validateProbe(e, `${field}.livenessProbe`, c.livenessProbe, portNames, true);
    validateProbe(e, `${field}.readinessProbe`, c.readinessProbe, portNames, false);
    validateProbe(e, `${field}.startupProbe`, c.startupProbe, portNames, true);
  }
  if (c.restartPolicy !== undefined) {
    if (!init) e.forbidden(`${field}.restartPolicy`, 'may not be set for non-init containers');
    else oneOf(e, `${field}.restartPolicy`, c.restartPolicy, ['Always']);
  }
  if (c.lifecycle?.postStart) validateHandler(e, `${field}.lifecycle.postStart`, c.lifecycle.postStart, portNames);
  if (c.lifecycle?.preStop) validateHandler(e, `${field}.lifecycle.preStop`, c.lifecycle.preStop, portNames);
  oneOf(e, `${field}.imagePullPolicy`, c.imagePullPolicy, PULL_POLICIES, true);
  oneOf(e, `${field}.terminationMessagePolicy`, c.terminationMessagePolicy, ['File', 'FallbackToLogsOnError'], true);
  if (c.tty && !c.stdin) e.invalid(`${field}.tty`, true, '-i/stdin must be set to use -t/tty');
  const sc = c.securityContext;
  if (sc) {
    if (sc.privileged && sc.allowPrivilegeEscalation === false) e.invalid(`${field}.securityContext`, '', 'cannot set `allowPrivilegeEscalation` to false and `privileged` to true');
    if (sc.runAsUser !== undefined && sc.runAsUser < 0) e.invalid(`${field}.securityContext.runAsUser`, sc.runAsUser, 'must be between 0 and 2147483647, inclusive');
    if (sc.procMount !== undefined) oneOf(e, `${field}.securityContext.procMount`, sc.procMount, ['Default', 'Unmasked']);
    if (sc.seccompProfile) validateSeccomp(e, `${field}.securityContext.seccompProfile`, sc.seccompProfile);
  }
}

function validateSeccomp(e: Errs, field: string, p: core.SeccompProfile): void {
  oneOf(e, `${field}.type`, p.type, ['RuntimeDefault', 'Unconfined', 'Localhost'], true);
  if (p.type === 'Localhost') {
    if (!p.localhostProfile) e.required(`${field}.localhostProfile`, 'must be set when seccomp type is Localhost');
    else if (p.localhostProfile.startsWith('/') || p.localhostProfile.split('/').includes('..')) e.invalid(`${field}.localhostProfile`, p.localhostProfile, "must be a relative path without '..'");
  } else if (p.localhostProfile) e.invalid(`${field}.localhostProfile`, p.localhostProfile, 'can only be set when seccomp type is Localhost');
}

// ---- scheduling constraints ----

const NODE_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt'];
const TAINT_EFFECTS = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'];

function validateNodeSelectorTerm(e: Errs, field: string, t: core.NodeSelectorTerm | undefined): void {
  if (!t) return;
  const check = (reqs: core.NodeSelectorRequirement[], f: string, fields: boolean) => reqs.forEach((r, i) => {
    const p = `${f}[${i}]`;
    if (fields) { if (r.key !== 'metadata.name') e.invalid(`${p}.key`, r.key, 'not a valid field selector key'); }
    else e.each(`${p}.key`, r.key, validateQualifiedName(r.key));
    oneOf(e, `${p}.operator`, r.operator, fields ? ['In', 'NotIn'] : NODE_OPERATORS, true);
    if ((r.operator === 'In' || r.operator === 'NotIn') && !r.values.length) e.required(`${p}.values`, 'must be specified when `operator` is \'In\' or \'NotIn\'');
    if ((r.operator === 'Exists' || r.operator === 'DoesNotExist') && r.values.length) e.forbidden(`${p}.values`, 'may not be specified when `operator` is \'Exists\' or \'DoesNotExist\'');
    if ((r.operator === 'Gt' || r.operator === 'Lt') && (r.values.length !== 1 || !/^-?\d+$/.test(r.values[0]))) e.required(`${p}.values`, 'must be specified single value when `operator` is \'Lt\' or \'Gt\'');
  });
  check(t.matchExpressions, `${field}.matchExpressions`, false);
  check(t.matchFields, `${field}.matchFields`, true);
}

function validateLabelSelectorField(e: Errs, field: string, s: core.LabelSelector | undefined): void {
  try { labelSelectorFromProto(s, field); } catch (err) {
    if (err instanceof SelectorError) e.invalid(field, '', err.message.replace(/^.*?: Invalid value: ".*?": /, ''));
    else throw err;
  }
  for (const [k, v] of Object.entries(s?.matchLabels ?? {})) {
    e.each(`${field}.matchLabels`, k, validateQualifiedName(k));
    e.each(`${field}.matchLabels`, v, validateLabelValue(v));
  }
}

function validatePodAffinityTerm(e: Errs, field: string, t: core.PodAffinityTerm | undefined): void {
  if (!t) { e.required(field); return; }
  if (!t.topologyKey) e.required(`${field}.topologyKey`, 'can not be empty');
  else e.each(`${field}.topologyKey`, t.topologyKey, validateQualifiedName(t.topologyKey));
  validateLabelSelectorField(e, `${field}.labelSelector`, t.labelSelector);
  validateLabelSelectorField(e, `${field}.namespaceSelector`, t.namespaceSelector);
  t.namespaces.forEach((n, i) => e.each(`${field}.namespaces[${i}]`, n, validateDns1123Label(n)));
}

function validateAffinity(e: Errs, field: string, a: core.Affinity | undefined): void {
  if (!a) return;
  const na = a.nodeAffinity;
  if (na) {
    const req = na.requiredDuringSchedulingIgnoredDuringExecution;
    if (req) {
      if (!req.nodeSelectorTerms.length) e.required(`${field}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`, 'must have at least one node selector term');
      req.nodeSelectorTerms.forEach((t, i) => validateNodeSelectorTerm(e, `${field}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[${i}]`, t));
    }
    na.preferredDuringSchedulingIgnoredDuringExecution.forEach((p, i) => {
      const f = `${field}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[${i}]`;
      if (p.weight < 1 || p.weight > 100) e.invalid(`${f}.weight`, p.weight, 'must be in the range 1-100');
      if (!p.preference) e.required(`${f}.preference`);
      validateNodeSelectorTerm(e, `${f}.preference`, p.preference);
    });
  }
  for (const kind of ['podAffinity', 'podAntiAffinity'] as const) {
    const pa = a[kind];
    if (!pa) continue;
    pa.requiredDuringSchedulingIgnoredDuringExecution.forEach((t, i) => validatePodAffinityTerm(e, `${field}.${kind}.requiredDuringSchedulingIgnoredDuringExecution[${i}]`, t));
    pa.preferredDuringSchedulingIgnoredDuringExecution.forEach((w, i) => {
      const f = `${field}.${kind}.preferredDuringSchedulingIgnoredDuringExecution[${i}]`;
      if (w.weight < 1 || w.weight > 100) e.invalid(`${f}.weight`, w.weight, 'must be in the range 1-100');
      validatePodAffinityTerm(e, `${f}.podAffinityTerm`, w.podAffinityTerm);
    });
  }
}

function validateToleration(e: Errs, field: string, t: core.Toleration): void {
  if (t.key) e.each(`${field}.key`, t.key, validateQualifiedName(t.key));
  oneOf(e, `${field}.operator`, t.operator, ['Exists', 'Equal']);
  if (!t.key && t.operator !== 'Exists') e.invalid(`${field}.operator`, t.operator, 'operator must be Exists when `key` is empty, which means "match all values and all keys"');
  if (t.operator === 'Exists' && t.value) e.invalid(`${field}.operator`, t.value, 'value must be empty when `operator` is \'Exists\'');
  if (t.operator !== 'Exists' && t.value) e.each(`${field}.value`, t.value, validateLabelValue(t.value));
  oneOf(e, `${field}.effect`, t.effect, TAINT_EFFECTS);
  if (t.tolerationSeconds !== undefined && t.effect !== 'NoExecute') e.invalid(`${field}.effect`, t.effect, 'effect must be \'NoExecute\' when `tolerationSeconds` is set');
}

// ---- pods ----

function validateVolume(e: Errs, field: string, v: core.Volume): void {
  if (!v.name) e.required(`${field}.name`);
  else e.each(`${field}.name`, v.name, validateDns1123Label(v.name));
  const sources = [v.hostPath, v.emptyDir, v.secret, v.configMap, v.downwardAPI, v.projected].filter((x) => x !== undefined).length;
  if (sources === 0) e.required(field, 'must specify a volume type');
  if (sources > 1) e.forbidden(field, 'may not specify more than 1 volume type');
  if (v.hostPath) {
    if (!v.hostPath.path) e.required(`${field}.hostPath.path`);
    else if (v.hostPath.path.split('/').includes('..')) e.invalid(`${field}.hostPath.path`, v.hostPath.path, "must not contain '..'");
  }
  if (v.emptyDir) {
    if (v.emptyDir.medium && v.emptyDir.medium !== 'Memory' && !/^HugePages/.test(v.emptyDir.medium)) e.unsupported(`${field}.emptyDir.medium`, v.emptyDir.medium, ['', 'Memory', 'HugePages']);
    if (v.emptyDir.sizeLimit) quantityOf(e, `${field}.emptyDir.sizeLimit`, v.emptyDir.sizeLimit);
  }
  const items = v.secret?.items ?? v.configMap?.items ?? [];
  const src = v.secret ? 'secret' : 'configMap';
  items.forEach((it, i) => {
    const f = `${field}.${src}.items[${i}].path`;
    if (!it.path) e.required(f);
    else if (it.path.startsWith('/') || it.path.split('/').includes('..')) e.invalid(f, it.path, "must be a relative path without '..'");
  });
  if (v.configMap && !v.configMap.name) e.required(`${field}.configMap.name`);
  if (v.secret && !v.secret.secretName) e.required(`${field}.secret.secretName`);
}

const RESTART_POLICIES = ['Always', 'OnFailure', 'Never'];
const DNS_POLICIES = ['ClusterFirstWithHostNet', 'ClusterFirst', 'Default', 'None'];

export function validatePodSpec(e: Errs, field: string, s: core.PodSpec | undefined): void {
  if (!s) { e.required(field); return; }
  const volumes = new Set<string>();
  s.volumes.forEach((v, i) => {
    validateVolume(e, `${field}.volumes[${i}]`, v);
    if (volumes.has(v.name)) e.duplicate(`${field}.volumes[${i}].name`, v.name);
    volumes.add(v.name);
  });
  if (!s.containers.length) e.required(`${field}.containers`);
  const names = new Set<string>();
  const check = (list: core.Container[], f: string, init: boolean) => list.forEach((c, i) => {
    validateContainer(e, `${f}[${i}]`, c, volumes, init);
    if (c.name && names.has(c.name)) e.duplicate(`${f}[${i}].name`, c.name);
    names.add(c.name);
  });
  check(s.initContainers, `${field}.initContainers`, true);
  check(s.containers, `${field}.containers`, false);
  oneOf(e, `${field}.restartPolicy`, s.restartPolicy, RESTART_POLICIES, true);
  oneOf(e, `${field}.dnsPolicy`, s.dnsPolicy, DNS_POLICIES, true);
  if (s.dnsPolicy === 'None' && !s.dnsConfig) e.required(`${field}.dnsConfig`, 'must provide `dnsConfig` when `dnsPolicy` is None');
  nonNegative(e, `${field}.terminationGracePeriodSeconds`, s.terminationGracePeriodSeconds);
  if (s.activeDeadlineSeconds !== undefined && s.activeDeadlineSeconds <= 0) e.invalid(`${field}.activeDeadlineSeconds`, s.activeDeadlineSeconds, 'must be between 1 and 2147483647, inclusive');
  for (const [k, v] of Object.entries(s.nodeSelector)) {
    e.each(`${field}.nodeSelector`, k, validateQualifiedName(k));
    e.each(`${field}.nodeSelector`, v, validateLabelValue(v));
  }
  if (s.serviceAccountName) e.each(`${field}.serviceAccountName`, s.serviceAccountName, validateDns1123Subdomain(s.serviceAccountName));
  if (s.nodeName) e.each(`${field}.nodeName`, s.nodeName, validateDns1123Subdomain(s.nodeName));
  if (s.hostname) e.each(`${field}.hostname`, s.hostname, validateDns1123Label(s.hostname));
  if (s.subdomain) e.each(`${field}.subdomain`, s.subdomain, validateDns1123Label(s.subdomain));
  if (s.priorityClassName) e.each(`${field}.priorityClassName`, s.priorityClassName, validateDns1123Subdomain(s.priorityClassName));
  validateAffinity(e, `${field}.affinity`, s.affinity);
  s.tolerations.forEach((t, i) => validateToleration(e, `${field}.tolerations[${i}]`, t));
  validateResourceList(e, `${field}.overhead`, s.overhead);
  if (s.hostNetwork) {
    s.containers.forEach((c, i) => c.ports.forEach((p, j) => {
      if (p.hostPort && p.hostPort !== p.containerPort) e.invalid(`${field}.containers[${i}].ports[${j}].hostPort`, p.hostPort, 'must match `containerPort` when `hostNetwork` is true');
    }));
  }
  s.topologySpreadConstraints.forEach((c, i) => {
    const f = `${field}.topologySpreadConstraints[${i}]`;
    if (c.maxSkew < 1) e.invalid(`${f}.maxSkew`, c.maxSkew, 'must be greater than zero');
    if (!c.topologyKey) e.required(`${f}.topologyKey`, 'can not be empty');
    oneOf(e, `${f}.whenUnsatisfiable`, c.whenUnsatisfiable, ['DoNotSchedule', 'ScheduleAnyway'], true);
  });
  const psc = s.securityContext;
  if (psc) {
    psc.sysctls.forEach((sc, i) => { if (!/^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$/.test(sc.name)) e.invalid(`${field}.securityContext.sysctls[${i}].name`, sc.name, 'must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$'); });
    if (psc.seccompProfile) validateSeccomp(e, `${field}.securityContext.seccompProfile`, psc.seccompProfile);
    if (psc.fsGroupChangePolicy !== undefined) oneOf(e, `${field}.securityContext.fsGroupChangePolicy`, psc.fsGroupChangePolicy, ['OnRootMismatch', 'Always']);
  }
  if (s.os) oneOf(e, `${field}.os.name`, s.os.name, ['linux', 'windows'], true);
}

function validatePodStatus(e: Errs, st: core.PodStatus | undefined): void {
  if (!st) return;
  oneOf(e, 'status.phase', st.phase, ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown']);
  st.conditions.forEach((c, i) => oneOf(e, `status.conditions[${i}].status`, c.status, ['True', 'False', 'Unknown'], true));
  oneOf(e, 'status.qosClass', st.qosClass, ['Guaranteed', 'Burstable', 'BestEffort']);
}

// ---- other kinds ----

function validateRules(e: Errs, field: string, rules: core.PolicyRule[], clusterScoped: boolean): void {
  rules.forEach((r, i) => {
    const f = `${field}[${i}]`;
    if (!r.verbs.length) e.required(`${f}.verbs`, 'verbs must contain at least one value');
    if (r.nonResourceURLs.length) {
      if (!clusterScoped) e.invalid(`${f}.nonResourceURLs`, r.nonResourceURLs, 'namespaced rules cannot apply to non-resource URLs');
      if (r.apiGroups.length || r.resources.length || r.resourceNames.length) e.invalid(`${f}.nonResourceURLs`, r.nonResourceURLs, 'rules cannot apply to both regular resources and non-resource URLs');
    } else {
      if (!r.apiGroups.length) e.required(`${f}.apiGroups`, 'resource rules must supply at least one api group');
      if (!r.resources.length) e.required(`${f}.resources`, 'resource rules must supply at least one resource');
    }
  });
}

function validateBinding(e: Errs, b: core.RoleBinding | core.ClusterRoleBinding, namespaced: boolean): void {
  const ref = b.roleRef;
  if (!ref) e.required('roleRef');
  else {
    if (ref.apiGroup !== 'rbac.authorization.k8s.io') e.unsupported('roleRef.apiGroup', ref.apiGroup, ['rbac.authorization.k8s.io']);
    oneOf(e, 'roleRef.kind', ref.kind, namespaced ? ['Role', 'ClusterRole'] : ['ClusterRole'], true);
    if (!ref.name) e.required('roleRef.name');
  }
  b.subjects.forEach((s, i) => {
    const f = `subjects[${i}]`;
    if (!s.name) e.required(`${f}.name`);
    oneOf(e, `${f}.kind`, s.kind, ['ServiceAccount', 'User', 'Group'], true);
    if (s.kind === 'ServiceAccount') {
      if (s.apiGroup) e.unsupported(`${f}.apiGroup`, s.apiGroup, ['']);
      if (!s.namespace && !namespaced) e.required(`${f}.namespace`);
    } else if ((s.kind === 'User' || s.kind === 'Group') && s.apiGroup !== 'rbac.authorization.k8s.io') e.unsupported(`${f}.apiGroup`, s.apiGroup, ['rbac.authorization.k8s.io']);
  });
}

function validateKind(e: Errs, obj: core.Object): void {
  if (obj.pod) {
    validatePodSpec(e, 'spec', obj.pod.spec);
    validatePodStatus(e, obj.pod.status);
  } else if (obj.node) {
    obj.node.spec?.taints.forEach((t, i) => {
      e.each(`spec.taints[${i}].key`, t.key, validateQualifiedName(t.key));
      if (t.value) e.each(`spec.taints[${i}].value`, t.value, validateLabelValue(t.value));
      oneOf(e, `spec.taints[${i}].effect`, t.effect, TAINT_EFFECTS, true);
    });
    if (obj.node.status) {
      validateResourceList(e, 'status.capacity', obj.node.status.capacity, false, STANDARD_NODE_RESOURCES);
      validateResourceList(e, 'status.allocatable', obj.node.status.allocatable, false, STANDARD_NODE_RESOURCES);
    }
  } else if (obj.configMap || obj.secret) {
    const data = obj.configMap ? { ...obj.configMap.data, ...obj.configMap.binaryData } : { ...obj.secret!.data, ...obj.secret!.stringData };
    for (const k of Object.keys(data)) e.each('data', k, validateConfigMapKey(k));
    if (obj.configMap) for (const k of Object.keys(obj.configMap.binaryData)) if (k in obj.configMap.data) e.duplicate('data', k);
  } else if (obj.priorityClass) {
    const pc = obj.priorityClass;
    if (pc.value > 1_000_000_000 && !pc.metadata?.name.startsWith('system-')) e.forbidden('value', 'maximum allowed value of a user defined priority is 1000000000');
    if (pc.preemptionPolicy !== undefined) oneOf(e, 'preemptionPolicy', pc.preemptionPolicy, ['PreemptLowerPriority', 'Never']);
  } else if (obj.limitRange) {
    obj.limitRange.spec?.limits.forEach((l, i) => {
      const f = `spec.limits[${i}]`;
      oneOf(e, `${f}.type`, l.type, ['Pod', 'Container', 'PersistentVolumeClaim'], true);
      const max = validateResourceList(e, `${f}.max`, l.max);
      const min = validateResourceList(e, `${f}.min`, l.min);
      validateResourceList(e, `${f}.default`, l.default);
      validateResourceList(e, `${f}.defaultRequest`, l.defaultRequest);
      for (const [k, q] of Object.entries(min)) if (max[k] && q.cmp(max[k]) > 0) e.invalid(`${f}.min[${k}]`, l.min[k], `min value ${l.min[k]} is greater than max value ${l.max[k]}`);
      if (l.type === 'Pod' && (Object.keys(l.default).length || Object.keys(l.defaultRequest).length)) e.forbidden(`${f}.default`, 'may not be specified when `type` is \'Pod\'');
    });
  } else if (obj.resourceQuota) {
    validateResourceList(e, 'spec.hard', obj.resourceQuota.spec?.hard, true);
    validateQuotaScopes(e, obj.resourceQuota.spec);
  } else if (obj.role) {
    validateRules(e, 'rules', obj.role.rules, false);
  } else if (obj.clusterRole) {
    validateRules(e, 'rules', obj.clusterRole.rules, true);
  } else if (obj.roleBinding) {
    validateBinding(e, obj.roleBinding, true);
  } else if (obj.clusterRoleBinding) {
    validateBinding(e, obj.clusterRoleBinding, false);
  } else if (obj.event) {
    if (!obj.event.involvedObject) e.required('involvedObject');
    oneOf(e, 'type', obj.event.type, ['Normal', 'Warning']);
  } else if (obj.certificateSigningRequest) {
    e.list.push(...csrProblems(obj.certificateSigningRequest));
  } else if (obj.lease) {
    const s = obj.lease.spec;
    if (s?.leaseDurationSeconds !== undefined && s.leaseDurationSeconds <= 0) e.invalid('spec.leaseDurationSeconds', s.leaseDurationSeconds, 'must be greater than 0');
  }
}

/** Validates an object for creation; throws ValidationError listing every problem. */
export function validateObject(obj: core.Object): void {
  const { info, value } = unwrap(obj);
  const e = new Errs();
  validateMeta(e, info, value.metadata, { nameIsLabel: info.kind === 'Namespace' });
  validateKind(e, obj);
  if (e.list.length) throw new ValidationError(info.kind, value.metadata?.name || value.metadata?.generateName || '', e.list);
}

const json = (v: unknown) => JSON.stringify(v ?? null);

/**
 * Validates an update against the stored object: the new object must be valid, and fields
 * Kubernetes keeps immutable may not change.
 */
export function validateUpdate(obj: core.Object, old: core.Object): void {
  const { info, value } = unwrap(obj);
  const e = new Errs();
  validateMeta(e, info, value.metadata, { nameIsLabel: info.kind === 'Namespace' });
  validateKind(e, obj);
  const nm = value.metadata!;
  const om = unwrap(old).value.metadata!;
  if (nm.uid && nm.uid !== om.uid) e.invalid('metadata.uid', nm.uid, 'field is immutable');
  if (nm.creationTimestamp && nm.creationTimestamp !== om.creationTimestamp) e.invalid('metadata.creationTimestamp', nm.creationTimestamp, 'field is immutable');
  if (obj.pod && old.pod) {
    // Only these pod spec fields may change (Kubernetes' ValidatePodUpdate).
    const mask = (s: core.PodSpec | undefined) => s && {
      ...s,
      containers: s.containers.map((c) => ({ ...c, image: '' })),
      initContainers: s.initContainers.map((c) => ({ ...c, image: '' })),
      activeDeadlineSeconds: undefined,
      tolerations: [],
      terminationGracePeriodSeconds: undefined,
      schedulingGates: [],
    };
    if (json(mask(obj.pod.spec)) !== json(mask(old.pod.spec))) {
      e.forbidden('spec', 'pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)');
    }
    const oldTol = new Set(old.pod.spec!.tolerations.map((t) => json(t)));
    for (const t of old.pod.spec!.tolerations) if (!obj.pod.spec!.tolerations.some((n) => json(n) === json(t))) { e.forbidden('spec.tolerations', 'existing toleration can not be modified except its tolerationSeconds'); break; }
    void oldTol;
    const ng = obj.pod.spec!.schedulingGates.map((g) => g.name);
    const og = old.pod.spec!.schedulingGates.map((g) => g.name);
    if (ng.some((g) => !og.includes(g))) e.forbidden('spec.schedulingGates', 'only deletion is allowed, but found new scheduling gate');
    const od = old.pod.spec!.activeDeadlineSeconds;
    const nd = obj.pod.spec!.activeDeadlineSeconds;
    if (od !== undefined && (nd === undefined || nd > od)) e.invalid('spec.activeDeadlineSeconds', nd ?? null, 'must be less than or equal to previous value');
  }
  if ((obj.roleBinding && old.roleBinding && json(obj.roleBinding.roleRef) !== json(old.roleBinding.roleRef))
    || (obj.clusterRoleBinding && old.clusterRoleBinding && json(obj.clusterRoleBinding.roleRef) !== json(old.clusterRoleBinding.roleRef))) {
    e.invalid('roleRef', '', 'cannot change roleRef');
  }
  for (const [o, n] of [[old.configMap, obj.configMap], [old.secret, obj.secret]] as const) {
    if (o?.immutable && n) {
      if (json(o.data) !== json(n.data) || json((o as core.ConfigMap).binaryData) !== json((n as core.ConfigMap).binaryData)) e.forbidden('data', 'field is immutable when `immutable` is set');
      if (n.immutable === false) e.forbidden('immutable', 'field is immutable when `immutable` is set');
    }
  }
  if (obj.priorityClass && old.priorityClass && obj.priorityClass.value !== old.priorityClass.value) e.forbidden('value', 'may not be changed in an update.');
  if (obj.certificateSigningRequest && old.certificateSigningRequest) validateCsrUpdate(e, obj.certificateSigningRequest, old.certificateSigningRequest);
  if (e.list.length) throw new ValidationError(info.kind, nm.name, e.list);
}

// A request is immutable once made; approval is for ever (Approved/Denied are never removed);
// the certificate is written once.
function validateCsrUpdate(e: Errs, n: core.CertificateSigningRequest, o: core.CertificateSigningRequest): void {
  // Bytes compare by content: a Buffer and a Uint8Array (after structuredClone) are the same request.
  // (The replacer looks at the holder's raw value: Buffer's toJSON has run before it sees `x`.)
  const bytes = (v: unknown) => JSON.stringify(v ?? null, function (this: Record<string, unknown>, k, x) { const raw = this[k]; return raw instanceof Uint8Array ? Buffer.from(raw).toString('base64') : x; });
  if (bytes(n.spec) !== bytes(o.spec)) e.forbidden('spec', 'field is immutable');
  for (const t of ['Approved', 'Denied']) {
    const had = o.status?.conditions.some((c) => c.type === t && c.status === 'True');
    const has = n.status?.conditions.some((c) => c.type === t && c.status === 'True');
    if (had && !has) e.forbidden('status.conditions', `updates may not remove a condition of type ${JSON.stringify(t)}`);
  }
  const oc = o.status?.certificate ?? new Uint8Array();
  const nc = n.status?.certificate ?? new Uint8Array();
  if (oc.length && Buffer.compare(Buffer.from(oc), Buffer.from(nc)) !== 0) e.forbidden('status.certificate', 'updates may not modify existing certificate content');
}

// What a scoped quota may track: scopes select pods, so only pod resources (BestEffort pods have
// no compute resources: only their count).
const POD_QUOTA_RESOURCES = new Set(['pods', 'count/pods', 'cpu', 'memory', 'ephemeral-storage', 'requests.cpu', 'requests.memory', 'requests.ephemeral-storage', 'limits.cpu', 'limits.memory', 'limits.ephemeral-storage']);

function validateQuotaScopes(e: Errs, spec: core.ResourceQuotaSpec | undefined): void {
  if (!spec) return;
  const all = new Set<string>();
  spec.scopes.forEach((sc, i) => {
    if (!(QUOTA_SCOPES as readonly string[]).includes(sc)) e.unsupported(`spec.scopes[${i}]`, sc, QUOTA_SCOPES);
    all.add(sc);
  });
  spec.scopeSelector?.matchExpressions.forEach((x, i) => {
    const f = `spec.scopeSelector.matchExpressions[${i}]`;
    if (!(QUOTA_SCOPES as readonly string[]).includes(x.scopeName)) e.unsupported(`${f}.scopeName`, x.scopeName, QUOTA_SCOPES);
    oneOf(e, `${f}.operator`, x.operator, ['In', 'NotIn', 'Exists', 'DoesNotExist'], true);
    if ((x.operator === 'In' || x.operator === 'NotIn') && !x.values.length) e.required(`${f}.values`, 'must be at least one value when `operator` is \'In\' or \'NotIn\' for scope selector');
    if ((x.operator === 'Exists' || x.operator === 'DoesNotExist') && x.values.length) e.invalid(`${f}.values`, x.values, 'must be no value when `operator` is \'Exist\' or \'DoesNotExist\' for scope selector');
    if (x.scopeName !== 'PriorityClass' && (x.operator === 'In' || x.operator === 'NotIn')) e.invalid(`${f}.operator`, x.operator, 'must be \'Exist\' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity');
    if (x.operator === 'Exists' || x.scopeName === 'PriorityClass') all.add(x.scopeName);
  });
  for (const [a, b] of [['Terminating', 'NotTerminating'], ['BestEffort', 'NotBestEffort']]) {
    if (all.has(a) && all.has(b)) e.invalid('spec.scopes', [...all], `conflicting scopes: ${a} and ${b}`);
  }
  if (!all.size) return;
  for (const k of Object.keys(spec.hard)) {
    const ok = all.has('BestEffort') ? k === 'pods' || k === 'count/pods' : POD_QUOTA_RESOURCES.has(k);
    if (!ok) e.invalid(`spec.hard[${k}]`, k, 'unsupported scope applied to resource');
  }
}
