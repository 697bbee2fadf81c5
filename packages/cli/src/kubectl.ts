// The kubectl-like commands of `berth`: get, describe, apply, create, delete, auth, config,
// certs. Each returns an exit code; output and errors are worded as kubectl's.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { core, store } from '@berth/api';
import { DecodeError, KINDS, LAST_APPLIED_ANNOTATION, StoreClient, threeWayMerge, type Json, decodeObject, encodeObject, parseManifests, resolveResource, unwrap, type KindInfo } from '@berth/apimachinery';
import { BerthError, stateRoot } from '@berth/common';
import { stringify as toYaml } from 'yaml';
import { certSubject, createClusterPki } from './certs';
import { ConfigFileError, connectionFrom, emptyConfig, localConnection, readConfig, resolveConfigPath, userConfigPath, writeConfig, type BerthConfig, type ClusterEntry, type Connection, type ContextEntry, type UserEntry } from './kubeconfig';
import { execInPod, kubeletEndpointFor, streamLogs } from './kubelet-io';
import { age, nameOf, printObjects, table, tableRows } from './printers';

export interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: NodeJS.ProcessEnv;
  stdin: () => Promise<string>;
  now: () => number;
  /** Ends `get -w` (tests); otherwise it runs until interrupted. */
  signal?: AbortSignal;
}

export function defaultIo(): Io {
  return {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
    env: process.env,
    stdin: async () => { const chunks: Buffer[] = []; for await (const c of process.stdin) chunks.push(c as Buffer); return Buffer.concat(chunks).toString('utf8'); },
    now: () => Date.now(),
  };
}

class UsageError extends Error {
  constructor(readonly command: string, message: string) { super(message); }
}

const COMMON_FLAGS = {
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

function parse<O extends NonNullable<ParseArgsConfig['options']>>(command: string, args: string[], options: O) {
  try {
    return parseArgs({ args, options: { ...COMMON_FLAGS, ...options }, allowPositionals: true, strict: true });
  } catch (e) {
    const m = /Unknown option '([^']+)'/.exec((e as Error).message);
    if (m) throw new UsageError(command, `unknown flag: ${m[1]}`);
    const v = /Option '([^']+)' argument missing/.exec((e as Error).message);
    if (v) throw new UsageError(command, `flag needs an argument: ${v[1].replace(/^-\w, /, '').split(' ')[0]}`);
    throw new UsageError(command, (e as Error).message);
  }
}

interface Ctx {
  client: StoreClient;
  conn: Connection;
  namespace: string;
  explicitNamespace: boolean;
}

function connect(io: Io, values: { kubeconfig?: string; context?: string; namespace?: string }): Ctx {
  const { path: file } = resolveConfigPath(values.kubeconfig, io.env);
  const conn = file ? connectionFrom(readConfig(file), file, values.context) : localConnection(io.env);
  const client = new StoreClient({ target: conn.target, tls: conn.tls, bearerToken: conn.token, defaultDeadlineMs: 30_000 });
  return { client, conn, namespace: values.namespace || conn.namespace, explicitNamespace: !!values.namespace };
}

const REASON: Record<string, string> = { NotFound: 'NotFound', AlreadyExists: 'AlreadyExists', Conflict: 'Conflict', PermissionDenied: 'Forbidden', FailedPrecondition: 'Conflict', InvalidArgument: 'BadRequest', Internal: 'InternalError' };

/** kubectl's way of printing a server error. */
export function serverError(e: unknown, conn?: Connection): string {
  if (e instanceof BerthError) {
    // The server sends Kubernetes' whole message; the field path travels beside it.
    const msg = e.field && e.message.startsWith(`${e.field}: `) && / is (invalid|forbidden): /.test(e.message) ? e.message.slice(e.field.length + 2) : e.message;
    if (e.kind === 'InvalidArgument' && / is invalid: /.test(msg)) return `The ${msg}\n`;
    if (e.kind === 'InvalidArgument') return `Error from server (BadRequest): ${msg}\n`;
    if (e.kind === 'Unauthenticated') return 'error: You must be logged in to the server (Unauthorized)\n';
    if (e.kind === 'Unavailable' || e.kind === 'DeadlineExceeded') return `The connection to the server ${conn?.target ?? ''} was refused - is berth up running? (${e.message.split('\n')[0]})\n`;
    return `Error from server (${REASON[e.kind] ?? e.kind}): ${e.message}\n`;
  }
  return `error: ${(e as Error).message}\n`;
}

function resource(name: string): KindInfo {
  const info = resolveResource(name);
  if (!info) throw new UsageError('', `the server doesn't have a resource type "${name}"`);
  return info;
}

/** `pods a b`, `pod/a pod/b`, `pods,nodes` → (kind, names) pairs. */
function targets(args: string[]): { info: KindInfo; names: string[] }[] {
  if (!args.length) throw new UsageError('', 'You must specify the type of resource to get. Use "berth api-resources" for a complete list of supported resources.');
  if (args[0].includes('/')) {
    return args.map((a) => {
      const [t, n] = a.split('/');
      if (!n) throw new UsageError('', `arguments in resource/name form must have a single resource and name`);
      return { info: resource(t), names: [n] };
    });
  }
  const types = args[0].split(',').filter(Boolean);
  return types.map((t) => ({ info: resource(t), names: args.slice(1) }));
}

async function readManifests(io: Io, files: string[], recursive: boolean): Promise<{ obj: core.Object; source: string }[]> {
  const out: { obj: core.Object; source: string }[] = [];
  const readPath = async (p: string) => {
    if (p === '-') { for (const obj of parseManifests(await io.stdin(), 'stdin')) out.push({ obj, source: 'stdin' }); return; }
    let st: fs.Stats;
    try { st = fs.statSync(p); } catch { throw new UsageError('', `the path "${p}" does not exist`); }
    if (st.isDirectory()) {
      for (const e of fs.readdirSync(p, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
        const f = path.join(p, e.name);
        if (e.isDirectory()) { if (recursive) await readPath(f); continue; }
        if (/\.(ya?ml|json)$/.test(e.name)) await readPath(f);
      }
      return;
    }
    for (const obj of parseManifests(fs.readFileSync(p, 'utf8'), p)) out.push({ obj, source: p });
  };
  for (const f of files) await readPath(f);
  if (!out.length) throw new UsageError('', 'no objects passed to apply');
  return out;
}

function setNamespace(ctx: Ctx, obj: core.Object): void {
  const { info, value } = unwrap(obj);
  if (!info.namespaced) return;
  const m = value.metadata!;
  if (m.namespace && ctx.explicitNamespace && m.namespace !== ctx.namespace) {
    throw new UsageError('', `the namespace from the provided object "${m.namespace}" does not match the namespace "${ctx.namespace}". You must pass '--namespace=${m.namespace}' to perform this operation.`);
  }
  if (!m.namespace) m.namespace = ctx.namespace;
}

const LAST_APPLIED = LAST_APPLIED_ANNOTATION;

// ---- commands ----

async function cmdGet(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = parse('get', args, {
    'all-namespaces': { type: 'boolean', short: 'A' },
    output: { type: 'string', short: 'o' },
    selector: { type: 'string', short: 'l' },
    'field-selector': { type: 'string' },
    watch: { type: 'boolean', short: 'w' },
    'no-headers': { type: 'boolean' },
    'ignore-not-found': { type: 'boolean' },
  });
  const fmt = values.output ?? '';
  if (!['', 'wide', 'yaml', 'json', 'name'].includes(fmt)) throw new UsageError('get', `unable to match a printer suitable for the output format "${fmt}", allowed formats are: json,name,wide,yaml`);
  const ctx = connect(io, values);
  try {
    const all = !!values['all-namespaces'];
    let code = 0;
    const sections: string[] = [];
    const collected: { info: KindInfo; items: core.Object[] }[] = [];
    for (const { info, names } of targets(positionals)) {
      const ns = info.namespaced ? (all ? '' : ctx.namespace) : '';
      let items: core.Object[] = [];
      let rv = '';
      if (names.length) {
        if (values.selector) throw new UsageError('get', 'name cannot be provided when a selector is specified');
        for (const n of names) {
          try { items.push(await ctx.client.get(info.resource, ns, n)); } catch (e) {
            if (e instanceof BerthError && e.kind === 'NotFound' && values['ignore-not-found']) continue;
            io.stderr(serverError(e, ctx.conn)); code = 1;
          }
        }
      } else {
        const r = await ctx.client.listAll({ resource: info.resource, namespace: ns, labelSelector: values.selector ?? '', fieldSelector: values['field-selector'] ?? '' });
        items = r.items;
        rv = r.resourceVersion;
      }
      collected.push({ info, items });
      if (fmt === 'name') sections.push(items.map((i) => nameOf(info, i) + '\n').join(''));
      else if (fmt === '' || fmt === 'wide') {
        if (!items.length && !names.length) {
          io.stderr(info.namespaced && !all ? `No resources found in ${ns} namespace.\n` : 'No resources found\n');
        } else if (items.length) {
          sections.push(table(tableRows(info, items, { wide: fmt === 'wide', allNamespaces: all, noHeaders: !!values['no-headers'], now: io.now() })));
        }
      }
      if (values.watch) {
        if (collected.length > 1) throw new UsageError('get', 'you may only specify a single resource type with --watch');
        io.stdout(sections.join('\n'));
        await watchRows(io, ctx, info, ns, rv, values, fmt, all, names);
        return code;
      }
    }
    if (fmt === 'yaml' || fmt === 'json') {
      const items = collected.flatMap((c) => c.items);
      const single = collected.length === 1 && collected[0].items.length === 1 && positionals.length > 1;
      if (items.length || !single) io.stdout(printObjects(collected[0]?.info, items, fmt, !single));
    } else io.stdout(sections.join('\n'));
    return code;
  } finally {
    ctx.client.close();
  }
}

async function watchRows(io: Io, ctx: Ctx, info: KindInfo, ns: string, rv: string, values: { selector?: string; 'field-selector'?: string }, fmt: string, all: boolean, names: string[]): Promise<void> {
  const ac = new AbortController();
  io.signal?.addEventListener('abort', () => ac.abort(), { once: true });
  const fieldSelector = [values['field-selector'] ?? '', ...(names.length === 1 ? [`metadata.name=${names[0]}`] : [])].filter(Boolean).join(',');
  for await (const e of ctx.client.watch({ resource: info.resource, namespace: ns, labelSelector: values.selector ?? '', fieldSelector, resourceVersion: rv || '0' }, ac.signal)) {
    if (e.type === 'BOOKMARK') continue;
    if (e.type === 'ERROR') { io.stderr(`error: watch ended: ${e.error?.message}\n`); return; }
    const o = e.object!;
    if (fmt === 'name') io.stdout(nameOf(info, o) + '\n');
    else if (fmt === 'yaml' || fmt === 'json') io.stdout((fmt === 'yaml' ? '---\n' : '') + printObjects(info, [o], fmt, false));
    else io.stdout(table(tableRows(info, [o], { wide: fmt === 'wide', allNamespaces: all, noHeaders: true, now: io.now() })));
  }
}

async function cmdApplyOrCreate(io: Io, args: string[], mode: 'apply' | 'create'): Promise<number> {
  const { values, positionals } = parse(mode, args, {
    filename: { type: 'string', short: 'f', multiple: true },
    recursive: { type: 'boolean', short: 'R' },
    'dry-run': { type: 'string' },
    output: { type: 'string', short: 'o' },
  });
  if (positionals.length) throw new UsageError(mode, `unexpected argument "${positionals[0]}"${mode === 'create' ? ' (only berth create -f is supported)' : ''}`);
  if (!values.filename?.length) throw new UsageError(mode, 'must specify one of -f and -k');
  const dry = values['dry-run'];
  if (dry !== undefined && !['none', 'client', 'server'].includes(dry)) throw new UsageError(mode, `Invalid dry-run value (${dry}). Must be "none", "server", or "client".`);
  // Everything is parsed before anything is sent: a malformed file changes nothing.
  let objs: { obj: core.Object; source: string }[];
  try { objs = await readManifests(io, values.filename, !!values.recursive); } catch (e) {
    if (e instanceof DecodeError) { io.stderr(`error: error parsing ${e.message}\n`); return 1; }
    throw e;
  }
  const ctx = connect(io, values);
  let code = 0;
  const suffix = dry === 'client' ? ' (dry run)' : dry === 'server' ? ' (server dry run)' : '';
  try {
    for (const { obj } of objs) setNamespace(ctx, obj);
    for (const { obj } of objs) {
      const { info, value } = unwrap(obj);
      const m = value.metadata!;
      try {
        if (mode === 'create') {
          if (dry !== 'client') await ctx.client.create(obj, { dryRun: dry === 'server' });
          io.stdout(`${nameOf(info, obj)} created${suffix}\n`);
          continue;
        }
        const manifest = JSON.stringify(encodeObject(obj));
        let existing: core.Object | undefined;
        try { existing = await ctx.client.get(info.resource, m.namespace, m.name); } catch (e) { if (!(e instanceof BerthError && e.kind === 'NotFound')) throw e; }
        m.annotations = { ...m.annotations, [LAST_APPLIED]: manifest };
        if (!existing) {
          if (!m.name) throw new UsageError('apply', 'from the object: resource name may not be empty');
          if (dry !== 'client') await ctx.client.create(obj, { dryRun: dry === 'server' });
          io.stdout(`${nameOf(info, obj)} created${suffix}\n`);
          continue;
        }
        const em = unwrap(existing).value.metadata!;
        if (em.annotations[LAST_APPLIED] === manifest) { io.stdout(`${nameOf(info, obj)} unchanged${suffix}\n`); continue; }
        // kubectl's three-way strategic merge (last applied, this manifest, live): fields the
        // server or admission set (defaults, tolerations, the service account) stay; lists such
        // as containers, env and ports merge item by item.
        const last = em.annotations[LAST_APPLIED] ? JSON.parse(em.annotations[LAST_APPLIED]) as Json : undefined;
        const modified = JSON.parse(manifest) as Record<string, Json>;
        const mm = (modified.metadata ??= {}) as Record<string, Json>;
        mm.annotations = { ...(mm.annotations as Record<string, Json> | undefined ?? {}), [LAST_APPLIED]: manifest };
        const merged = threeWayMerge(last, modified, encodeObject(existing) as Json) as Record<string, Json>;
        (merged.metadata as Record<string, Json>).resourceVersion = em.resourceVersion;
        if (dry !== 'client') await ctx.client.update(decodeObject(merged), { dryRun: dry === 'server' });
        io.stdout(`${nameOf(info, obj)} configured${suffix}\n`);
      } catch (e) {
        if (e instanceof UsageError) throw e;
        io.stderr(serverError(e, ctx.conn));
        code = 1;
      }
    }
    return code;
  } finally {
    ctx.client.close();
  }
}

async function cmdDelete(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = parse('delete', args, {
    filename: { type: 'string', short: 'f', multiple: true },
    recursive: { type: 'boolean', short: 'R' },
    selector: { type: 'string', short: 'l' },
    'grace-period': { type: 'string' },
    force: { type: 'boolean' },
    now: { type: 'boolean' },
    all: { type: 'boolean' },
    'all-namespaces': { type: 'boolean', short: 'A' },
    'ignore-not-found': { type: 'boolean' },
    cascade: { type: 'string' },
  });
  // kubectl's --cascade: background (default), foreground, orphan; true/false are the old spellings.
  const cascade = values.cascade === undefined ? 'background' : values.cascade === 'true' ? 'background' : values.cascade === 'false' ? 'orphan' : values.cascade;
  if (!['background', 'foreground', 'orphan'].includes(cascade)) throw new UsageError('delete', `invalid argument "${values.cascade}" for "--cascade" flag: must be "background", "foreground", or "orphan"`);
  const propagationPolicy = cascade[0].toUpperCase() + cascade.slice(1);
  let grace: number | undefined;
  if (values['grace-period'] !== undefined) {
    if (!/^-?\d+$/.test(values['grace-period'])) throw new UsageError('delete', `invalid argument "${values['grace-period']}" for "--grace-period" flag: strconv.ParseInt: parsing "${values['grace-period']}": invalid syntax`);
    grace = Number(values['grace-period']);
    if (grace < 0) grace = undefined; // kubectl: negative means "the object's default"
  }
  if (values.now) grace = 1;
  if (values.force) {
    if (grace === undefined) grace = 0;
    if (grace !== 0) throw new UsageError('delete', '--force and --grace-period greater than 0 cannot be specified together');
    io.stderr('Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.\n');
  }
  const ctx = connect(io, values);
  let code = 0;
  try {
    const victims: { info: KindInfo; ns: string; name: string }[] = [];
    if (values.filename?.length) {
      for (const { obj } of await readManifests(io, values.filename, !!values.recursive)) {
        setNamespace(ctx, obj);
        const { info, value } = unwrap(obj);
        victims.push({ info, ns: value.metadata!.namespace, name: value.metadata!.name });
      }
    } else {
      for (const { info, names } of targets(positionals)) {
        const ns = info.namespaced ? (values['all-namespaces'] ? '' : ctx.namespace) : '';
        if (names.length) {
          if (values.selector) throw new UsageError('delete', 'name cannot be provided when a selector is specified');
          for (const n of names) victims.push({ info, ns, name: n });
        } else if (values.selector || values.all) {
          const r = await ctx.client.listAll({ resource: info.resource, namespace: ns, labelSelector: values.selector ?? '' });
          for (const o of r.items) { const m = unwrap(o).value.metadata!; victims.push({ info, ns: m.namespace, name: m.name }); }
          if (!r.items.length) io.stderr(info.namespaced && ns ? `No resources found in ${ns} namespace.\n` : 'No resources found\n');
        } else {
          throw new UsageError('delete', 'resource(s) were provided, but no name was specified');
        }
      }
    }
    for (const v of victims) {
      try {
        await ctx.client.delete({ resource: v.info.resource, namespace: v.ns, name: v.name, gracePeriodSeconds: grace, propagationPolicy });
        io.stdout(`${v.info.kind.toLowerCase()}${v.info.group ? `.${v.info.group}` : ''} "${v.name}" ${grace === 0 && values.force ? 'force deleted' : 'deleted'}\n`);
      } catch (e) {
        if (e instanceof BerthError && e.kind === 'NotFound' && values['ignore-not-found']) continue;
        io.stderr(serverError(e, ctx.conn));
        code = 1;
      }
    }
    return code;
  } finally {
    ctx.client.close();
  }
}

function kv(label: string, value: string, indent = 0): string {
  // kubectl's describe puts values at column 18 at the top level and at column 20 in sections.
  return `${' '.repeat(indent)}${`${label}:`.padEnd(Math.max((indent ? 20 : 18) - indent, label.length + 2))}${value}\n`;
}
function mapLines(label: string, m: Record<string, string>, indent = 0): string {
  const entries = Object.entries(m).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return kv(label, '<none>', indent);
  return entries.map(([k, v], i) => (i === 0 ? kv(label, `${k}=${v}`, indent) : `${' '.repeat(Math.max(18, label.length + 2 + indent))}${k}=${v}\n`)).join('');
}

function describePod(p: core.Pod, now: number): string {
  const m = p.metadata!;
  const s = p.spec!;
  const st = p.status;
  let out = kv('Name', m.name) + kv('Namespace', m.namespace) + kv('Priority', String(s.priority ?? 0));
  if (s.priorityClassName) out += kv('Priority Class Name', s.priorityClassName);
  out += kv('Service Account', s.serviceAccountName || 'default') + kv('Node', s.nodeName ? `${s.nodeName}${st?.hostIP ? `/${st.hostIP}` : ''}` : '<none>');
  out += kv('Start Time', st?.startTime || '<unset>') + mapLines('Labels', m.labels) + mapLines('Annotations', Object.fromEntries(Object.entries(m.annotations).filter(([k]) => k !== LAST_APPLIED)));
  if (m.deletionTimestamp) out += kv('Status', `Terminating (lasts ${age(m.creationTimestamp, now)})`) + kv('Termination Grace Period', `${m.deletionGracePeriodSeconds ?? 0}s`);
  else out += kv('Status', st?.phase || 'Unknown');
  out += kv('IP', st?.podIP || '') + 'Containers:\n';
  for (const c of s.containers) {
    const cs = st?.containerStatuses.find((x) => x.name === c.name);
    out += `  ${c.name}:\n` + kv('Image', c.image, 4);
    if (c.ports.length) out += kv('Port', c.ports.map((pt) => `${pt.containerPort}/${pt.protocol}`).join(', '), 4);
    const state = cs?.state?.running ? 'Running' : cs?.state?.terminated ? 'Terminated' : 'Waiting';
    out += kv('State', state, 4);
    if (cs?.state?.waiting?.reason) out += kv('Reason', cs.state.waiting.reason, 6);
    out += kv('Ready', String(cs?.ready ?? false), 4) + kv('Restart Count', String(cs?.restartCount ?? 0), 4);
    const res = c.resources;
    if (res && Object.keys(res.limits).length) out += '    Limits:\n' + Object.entries(res.limits).map(([k, v]) => kv(k, v, 6)).join('');
    if (res && Object.keys(res.requests).length) out += '    Requests:\n' + Object.entries(res.requests).map(([k, v]) => kv(k, v, 6)).join('');
    const probe = (label: string, pr: core.Probe | undefined) => {
      if (!pr) return '';
      const h = pr.exec ? `exec [${pr.exec.command.join(' ')}]` : pr.httpGet ? `http-get ${pr.httpGet.scheme.toLowerCase()}://:${pr.httpGet.port?.intValue ?? pr.httpGet.port?.stringValue}${pr.httpGet.path}` : pr.tcpSocket ? `tcp-socket :${pr.tcpSocket.port?.intValue ?? pr.tcpSocket.port?.stringValue}` : pr.grpc ? `grpc <pod>:${pr.grpc.port}` : '';
      return kv(label, `${h} delay=${pr.initialDelaySeconds}s timeout=${pr.timeoutSeconds}s period=${pr.periodSeconds}s #success=${pr.successThreshold} #failure=${pr.failureThreshold}`, 4);
    };
    out += probe('Liveness', c.livenessProbe) + probe('Readiness', c.readinessProbe) + probe('Startup', c.startupProbe);
    out += kv('Environment', c.env.length ? '' : '<none>', 4) + c.env.map((e) => `      ${e.name}:  ${e.value}\n`).join('');
    out += kv('Mounts', c.volumeMounts.length ? '' : '<none>', 4) + c.volumeMounts.map((vm) => `      ${vm.mountPath} from ${vm.name} (${vm.readOnly ? 'ro' : 'rw'})\n`).join('');
  }
  if (st?.conditions.length) out += 'Conditions:\n' + table([['  Type', 'Status'], ...st.conditions.map((c) => [`  ${c.type}`, c.status])]).replace(/^/gm, '');
  out += 'Volumes:' + (s.volumes.length ? '\n' + s.volumes.map((v) => `  ${v.name}:\n    Type:  ${v.emptyDir ? 'EmptyDir' : v.hostPath ? 'HostPath' : v.configMap ? 'ConfigMap' : v.secret ? 'Secret' : v.projected ? 'Projected' : 'DownwardAPI'}\n`).join('') : '  <none>\n');
  out += kv('QoS Class', st?.qosClass || '') + mapLines('Node-Selectors', s.nodeSelector);
  const tol = s.tolerations.map((t) => `${t.key || ''}${t.operator === 'Exists' ? '' : `=${t.value}`}${t.effect ? `:${t.effect}` : ''}${t.operator === 'Exists' && !t.key ? ' op=Exists' : t.operator === 'Exists' ? ' op=Exists' : ''}${t.tolerationSeconds !== undefined ? ` for ${t.tolerationSeconds}s` : ''}`);
  out += tol.length ? tol.map((t, i) => (i === 0 ? kv('Tolerations', t) : `${' '.repeat(18)}${t}\n`)).join('') : kv('Tolerations', '<none>');
  return out;
}

function describeGeneric(o: core.Object): string {
  const { value } = unwrap(o);
  const m = value.metadata!;
  let out = kv('Name', m.name);
  if (m.namespace) out += kv('Namespace', m.namespace);
  out += mapLines('Labels', m.labels) + mapLines('Annotations', Object.fromEntries(Object.entries(m.annotations).filter(([k]) => k !== LAST_APPLIED)));
  const body = encodeObject(o);
  delete body.apiVersion; delete body.kind; delete body.metadata;
  if (Object.keys(body).length) out += toYaml(body).replace(/^([a-zA-Z]+):/gm, (_m, k: string) => `${k[0].toUpperCase()}${k.slice(1)}:`);
  return out;
}

function eventsSection(events: core.Object[], now: number): string {
  if (!events.length) return kv('Events', '<none>');
  const rows = [['Type', 'Reason', 'Age', 'From', 'Message'], ['----', '------', '----', '----', '-------']];
  const sorted = [...events].sort((a, b) => (a.event!.lastTimestamp || a.event!.eventTime).localeCompare(b.event!.lastTimestamp || b.event!.eventTime));
  for (const e of sorted) {
    const ev = e.event!;
    const from = ev.reportingComponent || ev.source?.component || '';
    const seen = ev.lastTimestamp || ev.eventTime || ev.metadata?.creationTimestamp;
    rows.push([ev.type, ev.reason, ev.count > 1 ? `${age(seen, now)} (x${ev.count} over ${age(ev.firstTimestamp || seen, now)})` : age(seen, now), from, ev.message]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return 'Events:\n' + rows.map((r) => '  ' + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] + 2))).join('')).join('\n') + '\n';
}

async function cmdDescribe(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = parse('describe', args, { selector: { type: 'string', short: 'l' }, 'all-namespaces': { type: 'boolean', short: 'A' } });
  const ctx = connect(io, values);
  let code = 0;
  try {
    const docs: string[] = [];
    for (const { info, names } of targets(positionals)) {
      const ns = info.namespaced ? (values['all-namespaces'] ? '' : ctx.namespace) : '';
      let objs: core.Object[] = [];
      if (names.length) {
        for (const n of names) {
          try { objs.push(await ctx.client.get(info.resource, ns, n)); } catch (e) { io.stderr(serverError(e, ctx.conn)); code = 1; }
        }
      } else {
        objs = (await ctx.client.listAll({ resource: info.resource, namespace: ns, labelSelector: values.selector ?? '' })).items;
        if (!objs.length) io.stderr(info.namespaced && ns ? `No resources found in ${ns} namespace.\n` : 'No resources found\n');
      }
      for (const o of objs) {
        const m = unwrap(o).value.metadata!;
        let text = o.pod ? describePod(o.pod, io.now()) : describeGeneric(o);
        if (info.resource !== 'events') {
          let events: core.Object[] = [];
          try {
            events = (await ctx.client.list({ resource: 'events', namespace: m.namespace, fieldSelector: `involvedObject.name=${m.name},involvedObject.kind=${info.kind}${m.namespace ? `,involvedObject.namespace=${m.namespace}` : ''}` })).items;
          } catch { /* no right to read events: describe without them, as kubectl does */ }
          text += eventsSection(events.filter((e) => !e.event!.involvedObject?.uid || e.event!.involvedObject.uid === m.uid), io.now());
        }
        docs.push(text);
      }
    }
    io.stdout(docs.join('\n\n'));
    return code;
  } finally {
    ctx.client.close();
  }
}

async function cmdAuth(io: Io, args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'can-i') {
    const { values, positionals } = parse('auth can-i', rest, { 'all-namespaces': { type: 'boolean', short: 'A' }, subresource: { type: 'string' }, quiet: { type: 'boolean', short: 'q' } });
    if (positionals.length < 2) throw new UsageError('auth can-i', 'you must specify two arguments: verb resource or verb resource/resourceName.');
    const [verb, res, nameArg] = positionals;
    const ctx = connect(io, values);
    try {
      let req: Partial<store.CanIRequest> & { verb: string };
      if (res.startsWith('/')) req = { verb, nonResourceUrl: res };
      else {
        const [typ, name = nameArg ?? ''] = res.split('/');
        const info = typ === '*' ? undefined : resource(typ);
        req = { verb, resource: info?.resource ?? '*', apiGroup: info?.group ?? '*', subresource: values.subresource ?? '', namespace: info && !info.namespaced ? '' : values['all-namespaces'] ? '' : ctx.namespace, name };
      }
      const r = await ctx.client.canI(req);
      if (!values.quiet) io.stdout(r.allowed ? 'yes\n' : `no${r.reason && !r.allowed ? ` - ${r.reason}` : ''}\n`);
      if (r.evaluationError && !values.quiet) io.stderr(`Warning: ${r.evaluationError}\n`);
      return r.allowed ? 0 : 1;
    } finally {
      ctx.client.close();
    }
  }
  if (sub === 'whoami') {
    const { values } = parse('auth whoami', rest, { output: { type: 'string', short: 'o' } });
    const ctx = connect(io, values);
    try {
      const w = await ctx.client.whoAmI();
      if (values.output === 'json' || values.output === 'yaml') {
        const body = { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview', status: { userInfo: { username: w.username, uid: w.uid || undefined, groups: w.groups } } };
        io.stdout(values.output === 'json' ? JSON.stringify(body, null, 4) + '\n' : toYaml(body));
      } else io.stdout(table([['ATTRIBUTE', 'VALUE'], ['Username', w.username], ...(w.uid ? [['UID', w.uid]] : []), ['Groups', `[${w.groups.join(' ')}]`]]));
      return 0;
    } finally {
      ctx.client.close();
    }
  }
  throw new UsageError('auth', `unknown command "${sub ?? ''}" for "berth auth" (can-i, whoami)`);
}

function configFile(io: Io, flag?: string): { file: string; cfg: BerthConfig } {
  const { path: p } = resolveConfigPath(flag, io.env);
  const file = p ?? userConfigPath(io.env);
  return { file, cfg: fs.existsSync(file) ? readConfig(file) : emptyConfig() };
}

function upsert<T extends { name: string }>(list: T[], name: string, make: () => T): T {
  let e = list.find((x) => x.name === name);
  if (!e) { e = make(); list.push(e); }
  return e;
}

async function cmdConfig(io: Io, args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const flags = {
    raw: { type: 'boolean' }, server: { type: 'string' }, 'certificate-authority': { type: 'string' }, 'tls-server-name': { type: 'string' },
    'client-certificate': { type: 'string' }, 'client-key': { type: 'string' }, token: { type: 'string' },
    cluster: { type: 'string' }, user: { type: 'string' }, current: { type: 'boolean' },
  } as const;
  const { values, positionals } = parse(`config ${sub ?? ''}`.trim(), rest, flags);
  const { file, cfg } = configFile(io, values.kubeconfig);
  const need = (n: number, usage: string) => { if (positionals.length !== n) throw new UsageError(`config ${sub}`, `Unexpected args: ${JSON.stringify(positionals)}; usage: berth config ${usage}`); };
  switch (sub) {
    case 'view': {
      const shown = structuredClone(cfg);
      if (!values.raw) for (const u of shown.users) if (u.user.token) u.user.token = 'REDACTED';
      io.stdout(toYaml(shown));
      return 0;
    }
    case 'current-context':
      if (!cfg['current-context']) { io.stderr('error: current-context is not set\n'); return 1; }
      io.stdout(`${cfg['current-context']}\n`);
      return 0;
    case 'get-contexts': {
      const rows = [['CURRENT', 'NAME', 'CLUSTER', 'AUTHINFO', 'NAMESPACE'], ...cfg.contexts.filter((c) => !positionals.length || positionals.includes(c.name)).map((c) => [c.name === cfg['current-context'] ? '*' : '', c.name, c.context.cluster, c.context.user, c.context.namespace ?? ''])];
      io.stdout(table(rows));
      return 0;
    }
    case 'use-context':
      need(1, 'use-context CONTEXT_NAME');
      if (!cfg.contexts.some((c) => c.name === positionals[0])) { io.stderr(`error: no context exists with the name: "${positionals[0]}"\n`); return 1; }
      cfg['current-context'] = positionals[0];
      writeConfig(file, cfg);
      io.stdout(`Switched to context "${positionals[0]}".\n`);
      return 0;
    case 'set-context': {
      const name = values.current ? cfg['current-context'] : positionals[0];
      if (!name) throw new UsageError('config set-context', 'you must specify a non-empty context name or --current');
      const existed = cfg.contexts.some((c) => c.name === name);
      const c: ContextEntry = upsert<ContextEntry>(cfg.contexts, name, () => ({ name, context: { cluster: '', user: '' } }));
      if (values.cluster !== undefined) c.context.cluster = values.cluster;
      if (values.user !== undefined) c.context.user = values.user;
      if (values.namespace !== undefined) c.context.namespace = values.namespace;
      writeConfig(file, cfg);
      io.stdout(`Context "${name}" ${existed ? 'modified' : 'created'}.\n`);
      return 0;
    }
    case 'set-cluster': {
      need(1, 'set-cluster NAME [--server=server] [--certificate-authority=path/to/ca]');
      const name = positionals[0];
      const c: ClusterEntry = upsert<ClusterEntry>(cfg.clusters, name, () => ({ name, cluster: { server: '' } }));
      if (values.server !== undefined) c.cluster.server = values.server;
      if (values['certificate-authority'] !== undefined) c.cluster['certificate-authority'] = path.resolve(values['certificate-authority']);
      if (values['tls-server-name'] !== undefined) c.cluster['tls-server-name'] = values['tls-server-name'];
      writeConfig(file, cfg);
      io.stdout(`Cluster "${name}" set.\n`);
      return 0;
    }
    case 'set-credentials': {
      need(1, 'set-credentials NAME [--client-certificate=path] [--client-key=path] [--token=bearer_token]');
      const name = positionals[0];
      const u: UserEntry = upsert<UserEntry>(cfg.users, name, () => ({ name, user: {} }));
      if (values['client-certificate'] !== undefined) u.user['client-certificate'] = path.resolve(values['client-certificate']);
      if (values['client-key'] !== undefined) u.user['client-key'] = path.resolve(values['client-key']);
      if (values.token !== undefined) u.user.token = values.token;
      writeConfig(file, cfg);
      io.stdout(`User "${name}" set.\n`);
      return 0;
    }
    default:
      throw new UsageError('config', `unknown command "${sub ?? ''}" for "berth config" (view, current-context, get-contexts, use-context, set-context, set-cluster, set-credentials)`);
  }
}

async function cmdCerts(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = parse('certs', args, { dir: { type: 'string' }, node: { type: 'string', multiple: true }, san: { type: 'string', multiple: true } });
  if (positionals.length) throw new UsageError('certs', `unexpected argument "${positionals[0]}"`);
  const dir = path.resolve(values.dir ?? path.join(stateRoot(io.env), 'pki'));
  for (const n of values.node ?? []) if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(n)) throw new UsageError('certs', `--node ${JSON.stringify(n)}: must be a DNS-1123 subdomain`);
  const pki = createClusterPki(dir, { nodes: values.node, sans: values.san });
  const rows = [['FILE', 'SUBJECT', 'EXPIRES']];
  for (const p of [pki.ca, pki.server, pki.admin, pki.scheduler, ...Object.values(pki.nodes)]) {
    const s = certSubject(p.cert);
    rows.push([path.relative(dir, p.cert), `CN=${s.cn}${s.groups.map((g) => `,O=${g}`).join('')}`, new Date(s.notAfter).toISOString().slice(0, 10)]);
  }
  io.stdout(`Cluster PKI in ${dir} (private keys mode 0600):\n` + table(rows));
  return 0;
}

// `berth certificate approve|deny NAME...`: an administrator's decision on certificate
// requests the built-in approver leaves pending (kubectl certificate).
async function cmdCertificate(io: Io, args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'approve' && sub !== 'deny') throw new UsageError('certificate', `unknown command "${sub ?? ''}" for "berth certificate" (approve, deny)`);
  const { values, positionals } = parse('certificate', rest, { force: { type: 'boolean' } });
  if (!positionals.length) throw new UsageError('certificate', 'one or more CSRs must be specified as <name> or -f <filename>');
  const type = sub === 'approve' ? 'Approved' : 'Denied';
  const opposite = sub === 'approve' ? 'Denied' : 'Approved';
  const ctx = connect(io, values);
  let code = 0;
  try {
    for (const name of positionals) {
      try {
        const obj = await ctx.client.get('certificatesigningrequests', '', name);
        const st = (obj.certificateSigningRequest!.status ??= { conditions: [] as core.CertificateSigningRequestCondition[], certificate: Buffer.alloc(0) });
        if (st.conditions.some((c) => c.type === opposite && c.status === 'True')) {
          if (!values.force) throw new Error(`certificatesigningrequest.certificates.k8s.io/${name} is already ${opposite}`);
          st.conditions = st.conditions.filter((c) => c.type !== opposite);
        }
        if (!st.conditions.some((c) => c.type === type && c.status === 'True')) {
          const t = new Date(io.now()).toISOString().replace(/\.\d{3}Z$/, 'Z');
          st.conditions.push({ type, status: 'True', reason: sub === 'approve' ? 'BerthCertificateApprove' : 'BerthCertificateDeny', message: `This CSR was ${type.toLowerCase()} by berth certificate ${sub}.`, lastUpdateTime: t, lastTransitionTime: t });
          await ctx.client.updateStatus(obj, { subresource: 'approval' });
        }
        io.stdout(`certificatesigningrequest.certificates.k8s.io/${name} ${type.toLowerCase()}\n`);
      } catch (e) {
        io.stderr(e instanceof BerthError ? serverError(e, ctx.conn) : `error: ${(e as Error).message}\n`);
        code = 1;
      }
    }
    return code;
  } finally {
    ctx.client.close();
  }
}

async function cmdApiResources(io: Io, args: string[]): Promise<number> {
  const { values } = parse('api-resources', args, { namespaced: { type: 'string' }, output: { type: 'string', short: 'o' } });
  let kinds = KINDS;
  if (values.namespaced !== undefined) kinds = kinds.filter((k) => String(k.namespaced) === values.namespaced);
  if (values.output === 'name') { io.stdout(kinds.map((k) => `${k.resource}${k.group ? `.${k.group}` : ''}\n`).join('')); return 0; }
  io.stdout(table([['NAME', 'SHORTNAMES', 'APIVERSION', 'NAMESPACED', 'KIND'], ...kinds.map((k) => [k.resource, k.shortNames.join(','), k.apiVersion, String(k.namespaced), k.kind])]));
  return 0;
}

// ---- logs / exec: through the Kubelet API of the pod's node ----

/** The pod, its node's kubelet endpoint and the container (the only one, or -c). */
async function podTarget(io: Io, command: string, values: { kubeconfig?: string; context?: string; namespace?: string; container?: string; 'kubelet-endpoint'?: string }, name: string | undefined) {
  if (!name) throw new UsageError(command, 'needs a POD name');
  const ctx = connect(io, values);
  const obj = await ctx.client.get('pods', ctx.namespace, name.replace(/^pods?\//, ''));
  const pod = obj.pod!;
  const podName = pod.metadata!.name;
  const node = pod.spec?.nodeName ?? '';
  if (node === '') throw new UsageError(command, `pod ${ctx.namespace}/${podName} is not scheduled to a node yet`);
  const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => c.name);
  let container = values.container ?? '';
  if (container === '') {
    const app = (pod.spec?.containers ?? []).map((c) => c.name);
    container = app[0] ?? '';
    if (app.length > 1) io.stderr(`Defaulted container "${container}" out of: ${app.join(', ')}\n`);
  } else if (!containers.includes(container)) {
    throw new UsageError(command, `container ${container} is not valid for pod ${podName}: choose one of ${containers.join(', ')}`);
  }
  return { namespace: ctx.namespace, pod: podName, container, endpoint: kubeletEndpointFor(node, io.env, values['kubelet-endpoint']) };
}

function nonNegative(command: string, flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v)) throw new UsageError(command, `--${flag}: expected a non-negative number, got "${v}"`);
  return Number(v);
}

async function cmdLogs(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = parse('logs', args, {
    container: { type: 'string', short: 'c' }, follow: { type: 'boolean', short: 'f' }, previous: { type: 'boolean', short: 'p' },
    timestamps: { type: 'boolean' }, tail: { type: 'string' }, since: { type: 'string' }, 'limit-bytes': { type: 'string' }, 'kubelet-endpoint': { type: 'string' },
  });
  if (positionals.length > 1) throw new UsageError('logs', `expected one POD, got ${positionals.length} arguments`);
  const tail = values.tail === '-1' ? undefined : nonNegative('logs', 'tail', values.tail);
  let sinceSeconds: number | undefined;
  if (values.since !== undefined) {
    const m = /^([0-9]+)(s|m|h)$/.exec(values.since);
    if (!m) throw new UsageError('logs', `--since: expected a duration like 10s, 5m or 2h, got "${values.since}"`);
    sinceSeconds = Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h'];
  }
  const t = await podTarget(io, 'logs', values, positionals[0]);
  await streamLogs(t.endpoint, {
    namespace: t.namespace, pod: t.pod, container: t.container, follow: !!values.follow, previous: !!values.previous, timestamps: !!values.timestamps,
    tailLines: tail, sinceSeconds, limitBytes: nonNegative('logs', 'limit-bytes', values['limit-bytes']),
  }, (b) => io.stdout(b.toString('utf8')), io.signal);
  return 0;
}

async function cmdExec(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = parse('exec', args, {
    container: { type: 'string', short: 'c' }, stdin: { type: 'boolean', short: 'i' }, tty: { type: 'boolean', short: 't' }, 'kubelet-endpoint': { type: 'string' },
  });
  const [podName, ...cmd] = positionals;
  if (cmd.length === 0) throw new UsageError('exec', 'needs a command after the POD name: berth exec POD -- COMMAND [ARG...]');
  const t = await podTarget(io, 'exec', values, podName);
  return execInPod(t.endpoint, { namespace: t.namespace, pod: t.pod, container: t.container, cmd, stdin: !!values.stdin, tty: !!values.tty }, {
    stdout: (b) => io.stdout(b.toString('utf8')),
    stderr: (b) => io.stderr(b.toString('utf8')),
    stdinStream: () => process.stdin,
    terminalSize: () => (process.stdout.isTTY ? { width: process.stdout.columns, height: process.stdout.rows } : undefined),
  });
}

const USAGE: Record<string, string> = {
  get: 'berth get TYPE[.GROUP] [NAME...] | TYPE/NAME... [-o wide|yaml|json|name] [-l SELECTOR] [--field-selector SELECTOR] [-n NAMESPACE | -A] [-w] [--no-headers] [--ignore-not-found]',
  describe: 'berth describe TYPE [NAME...] [-l SELECTOR] [-n NAMESPACE | -A]',
  apply: 'berth apply -f FILE|DIR|- [-f ...] [-R] [--dry-run=client|server] [-n NAMESPACE]',
  create: 'berth create -f FILE|DIR|- [-f ...] [-R] [--dry-run=client|server] [-n NAMESPACE]',
  delete: 'berth delete TYPE NAME... | TYPE -l SELECTOR | TYPE --all | -f FILE [--grace-period N] [--now] [--force] [--cascade=background|foreground|orphan] [--ignore-not-found] [-n NAMESPACE | -A]',
  auth: 'berth auth can-i VERB TYPE[/NAME] [NAME] [--subresource S] [-n NAMESPACE | -A] [-q]\n       berth auth whoami [-o json|yaml]',
  config: 'berth config view [--raw] | current-context | get-contexts [NAME] | use-context NAME | set-context NAME|--current [--cluster C] [--user U] [--namespace N] | set-cluster NAME --server S [--certificate-authority F] [--tls-server-name N] | set-credentials NAME [--client-certificate F --client-key F] [--token T]',
  certs: 'berth certs [--dir DIR] [--node NAME]... [--san NAME_OR_IP]...',
  certificate: 'berth certificate approve|deny NAME... [--force]',
  'api-resources': 'berth api-resources [--namespaced=true|false] [-o name]',
  logs: 'berth logs POD [-c CONTAINER] [-f] [-p] [--timestamps] [--tail N] [--since 10s|5m|2h] [--limit-bytes N] [-n NAMESPACE] [--kubelet-endpoint unix:///path]',
  exec: 'berth exec POD [-c CONTAINER] [-i] [-t] [-n NAMESPACE] [--kubelet-endpoint unix:///path] -- COMMAND [ARG...]',
};

export const KUBECTL_COMMANDS: Record<string, (io: Io, args: string[]) => Promise<number>> = {
  'api-resources': cmdApiResources,
  get: cmdGet,
  describe: cmdDescribe,
  apply: (io, a) => cmdApplyOrCreate(io, a, 'apply'),
  create: (io, a) => cmdApplyOrCreate(io, a, 'create'),
  delete: cmdDelete,
  auth: cmdAuth,
  config: cmdConfig,
  certs: cmdCerts,
  certificate: cmdCertificate,
  logs: cmdLogs,
  exec: cmdExec,
};

/** Runs one kubectl-like command with kubectl's error conventions. */
export async function runKubectl(io: Io, cmd: string, args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    io.stdout(`Usage:\n  ${USAGE[cmd]}\n\nGlobal flags: --kubeconfig FILE, --context NAME, -n/--namespace NAME\n`);
    return 0;
  }
  try {
    return await KUBECTL_COMMANDS[cmd](io, args);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`error: ${e.message}\n${e.command || cmd ? `See 'berth ${e.command || cmd} --help' for usage.\n` : ''}`);
      return 1;
    }
    if (e instanceof ConfigFileError) { io.stderr(`error: ${e.message}\n`); return 1; }
    if (e instanceof DecodeError) { io.stderr(`error: error parsing ${e.message}\n`); return 1; }
    io.stderr(serverError(e));
    return 1;
  }
}
