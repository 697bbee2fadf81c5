// A container's environment as the kubelet builds it: envFrom sources first, then env in order,
// with $(VAR) references to earlier variables expanded ($$ escapes), the downward API
// (fieldRef, resourceFieldRef) and configMap/secret keys. Anything missing that is not optional
// makes CreateContainerConfigError with a message that names the reference.
import type { core } from '@berth/api';
import { Quantity } from '@berth/apimachinery';
import { podResources } from './qos';
import type { ConfigSource } from './seams';

export class ContainerConfigError extends Error {
  readonly reason = 'CreateContainerConfigError';
  constructor(message: string) {
    super(message);
    this.name = 'ContainerConfigError';
  }
}

export interface EnvContext {
  pod: core.Pod;
  configs: ConfigSource;
  podIPs: string[];
  hostIPs: string[];
  /** Node allocatable: what a missing limit resolves to (Kubernetes' rule). */
  nodeAllocatable: Record<string, string>;
}

export interface EnvVar {
  name: string;
  value: string;
}

const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/** Expands $(VAR) from `vars`; $$ is a literal $, unknown references stay as written. */
export function expandVars(s: string, vars: Map<string, string>): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c !== '$' || i + 1 >= s.length) { out += c; continue; }
    const n = s[i + 1];
    if (n === '$') { out += '$'; i++; continue; }
    if (n === '(') {
      const end = s.indexOf(')', i + 2);
      if (end === -1) { out += s.slice(i); break; }
      const name = s.slice(i + 2, end);
      out += vars.has(name) ? vars.get(name)! : `$(${name})`;
      i = end;
      continue;
    }
    out += c;
  }
  return out;
}

const labelRef = /^metadata\.(labels|annotations)\['([^']+)'\]$/;

export function podFieldValue(pod: core.Pod, fieldPath: string, podIPs: string[], hostIPs: string[], field: string): string {
  const m = pod.metadata;
  const lr = labelRef.exec(fieldPath);
  if (lr) return (lr[1] === 'labels' ? m?.labels : m?.annotations)?.[lr[2]] ?? '';
  switch (fieldPath) {
    case 'metadata.name': return m?.name ?? '';
    case 'metadata.namespace': return m?.namespace || 'default';
    case 'metadata.uid': return m?.uid ?? '';
    case 'spec.nodeName': return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName': return pod.spec?.serviceAccountName ?? '';
    case 'status.hostIP': return hostIPs[0] ?? '';
    case 'status.hostIPs': return hostIPs.join(',');
    case 'status.podIP': return podIPs[0] ?? '';
    case 'status.podIPs': return podIPs.join(',');
    default: throw new ContainerConfigError(`${field}.fieldPath: unsupported value ${JSON.stringify(fieldPath)} (metadata.name, metadata.namespace, metadata.uid, metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, status.hostIP, status.hostIPs, status.podIP, status.podIPs)`);
  }
}

/** Value of limits.cpu / requests.memory ... for a container, divided by `divisor` and rounded up. */
export function resourceFieldValue(pod: core.Pod, sel: core.ResourceFieldSelector, self: core.Container | undefined, nodeAllocatable: Record<string, string>, field: string): string {
  const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  const c = sel.containerName ? containers.find((x) => x.name === sel.containerName) : self;
  if (!c) throw new ContainerConfigError(`${field}.containerName: no container named ${JSON.stringify(sel.containerName)}`);
  const m = /^(limits|requests)\.(cpu|memory|ephemeral-storage|hugepages-[0-9A-Za-z]+)$/.exec(sel.resource);
  if (!m) throw new ContainerConfigError(`${field}.resource: unsupported value ${JSON.stringify(sel.resource)} (limits.cpu, limits.memory, limits.ephemeral-storage, requests.cpu, requests.memory, requests.ephemeral-storage)`);
  const [, kind, res] = m;
  let raw = c.resources?.[kind as 'limits' | 'requests']?.[res];
  if (raw === undefined && kind === 'requests') raw = c.resources?.limits?.[res];
  // A missing limit means "as much as the node can give": the node's allocatable.
  if (raw === undefined && kind === 'limits') raw = nodeAllocatable[res];
  const value = Quantity.parse(raw ?? '0');
  let divisor: Quantity;
  try {
    divisor = Quantity.parse(sel.divisor || '1');
  } catch (e) {
    throw new ContainerConfigError(`${field}.divisor: ${(e as Error).message}`);
  }
  if (divisor.nanos <= 0n) throw new ContainerConfigError(`${field}.divisor: must be greater than 0`);
  const q = value.nanos / divisor.nanos + (value.nanos % divisor.nanos ? 1n : 0n);
  // CPU is reported as at least 1 when a value exists (Kubernetes rounds up to a whole unit).
  return String(res === 'cpu' && q === 0n && value.nanos > 0n ? 1n : q);
}

async function configMapKey(ctx: EnvContext, ns: string, name: string, key: string, optional: boolean, field: string): Promise<string | undefined> {
  const cm = await ctx.configs.getConfigMap(ns, name);
  if (!cm) {
    if (optional) return undefined;
    throw new ContainerConfigError(`${field}: configmap "${name}" not found`);
  }
  if (key in cm.data) return cm.data[key];
  if (key in cm.binaryData) return Buffer.from(cm.binaryData[key]).toString('utf8');
  if (optional) return undefined;
  throw new ContainerConfigError(`${field}: couldn't find key ${key} in ConfigMap ${ns}/${name}`);
}

async function secretKey(ctx: EnvContext, ns: string, name: string, key: string, optional: boolean, field: string): Promise<string | undefined> {
  const s = await ctx.configs.getSecret(ns, name);
  if (!s) {
    if (optional) return undefined;
    throw new ContainerConfigError(`${field}: secret "${name}" not found`);
  }
  if (key in s.data) return Buffer.from(s.data[key]).toString('utf8');
  if (optional) return undefined;
  throw new ContainerConfigError(`${field}: couldn't find key ${key} in Secret ${ns}/${name}`);
}

/**
 * Builds the environment of container `index` of `list` ("containers" or "initContainers").
 * Returns the variables in order and the envFrom keys skipped for not being valid names.
 */
export async function resolveEnv(ctx: EnvContext, c: core.Container, fieldPrefix: string): Promise<{ env: EnvVar[]; skipped: string[] }> {
  const ns = ctx.pod.metadata?.namespace || 'default';
  const vars = new Map<string, string>();
  const skipped: string[] = [];
  for (const [i, src] of c.envFrom.entries()) {
    const field = `${fieldPrefix}.envFrom[${i}]`;
    let data: Record<string, string> | undefined;
    if (src.configMapRef) {
      const cm = await ctx.configs.getConfigMap(ns, src.configMapRef.name);
      if (!cm && !src.configMapRef.optional) throw new ContainerConfigError(`${field}.configMapRef: configmap "${src.configMapRef.name}" not found`);
      data = cm ? { ...Object.fromEntries(Object.entries(cm.binaryData).map(([k, v]) => [k, Buffer.from(v).toString('utf8')])), ...cm.data } : undefined;
    } else if (src.secretRef) {
      const s = await ctx.configs.getSecret(ns, src.secretRef.name);
      if (!s && !src.secretRef.optional) throw new ContainerConfigError(`${field}.secretRef: secret "${src.secretRef.name}" not found`);
      data = s ? Object.fromEntries(Object.entries(s.data).map(([k, v]) => [k, Buffer.from(v).toString('utf8')])) : undefined;
    } else throw new ContainerConfigError(`${field}: must specify configMapRef or secretRef`);
    for (const k of Object.keys(data ?? {}).sort()) {
      const name = `${src.prefix}${k}`;
      if (!ENV_NAME.test(name)) { skipped.push(name); continue; }
      vars.set(name, data![k]);
    }
  }
  for (const [i, e] of c.env.entries()) {
    const field = `${fieldPrefix}.env[${i}]`;
    if (!e.name) throw new ContainerConfigError(`${field}.name: Required value`);
    let value: string | undefined;
    const vf = e.valueFrom;
    if (!vf) value = expandVars(e.value, vars);
    else if (vf.fieldRef) value = podFieldValue(ctx.pod, vf.fieldRef.fieldPath, ctx.podIPs, ctx.hostIPs, `${field}.valueFrom.fieldRef`);
    else if (vf.resourceFieldRef) value = resourceFieldValue(ctx.pod, vf.resourceFieldRef, c, ctx.nodeAllocatable, `${field}.valueFrom.resourceFieldRef`);
    else if (vf.configMapKeyRef) value = await configMapKey(ctx, ns, vf.configMapKeyRef.name, vf.configMapKeyRef.key, vf.configMapKeyRef.optional ?? false, `${field}.valueFrom.configMapKeyRef`);
    else if (vf.secretKeyRef) value = await secretKey(ctx, ns, vf.secretKeyRef.name, vf.secretKeyRef.key, vf.secretKeyRef.optional ?? false, `${field}.valueFrom.secretKeyRef`);
    else throw new ContainerConfigError(`${field}.valueFrom: must specify one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef`);
    if (value === undefined) continue; // optional and missing: the variable is not set
    vars.delete(e.name); // a later definition moves to the end, as in a shell
    vars.set(e.name, value);
  }
  return { env: [...vars].map(([name, value]) => ({ name, value })), skipped };
}

/** command/args with $(VAR) expanded from the container's final environment. */
export function expandCommand(c: core.Container, env: EnvVar[]): { command: string[]; args: string[] } {
  const vars = new Map(env.map((e) => [e.name, e.value]));
  return { command: c.command.map((s) => expandVars(s, vars)), args: c.args.map((s) => expandVars(s, vars)) };
}

export { podResources };
