// kubectl-style output: tables (tabwriter with kubectl's padding), ages, and per-kind columns.
import type { core } from '@berth/api';
import { csrConditionText, encodeObject, resolveResource, unwrap, type KindInfo } from '@berth/apimachinery';
import { stringify as toYaml } from 'yaml';

/** kubectl's HumanDuration: "45s", "3m20s", "5h", "2d3h", "400d", "2y30d". */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 365 * 8) return days % 365 === 0 ? `${Math.floor(days / 365)}y` : `${Math.floor(days / 365)}y${days % 365}d`;
  return `${Math.floor(days / 365)}y`;
}

export function age(ts: string | undefined, now: number): string {
  if (!ts) return '<unknown>';
  return humanDuration(now - Date.parse(ts));
}

/** Aligns rows like kubectl's tabwriter (padding 3); the last column is not padded. */
export function table(rows: string[][]): string {
  if (!rows.length) return '';
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, c.length); });
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] + 3))).join('').replace(/\s+$/, '')).join('\n') + '\n';
}

function podStatus(p: core.Pod): { ready: string; status: string; restarts: string } {
  const st = p.status;
  const cs = st?.containerStatuses ?? [];
  const total = p.spec?.containers.length ?? 0;
  const ready = cs.filter((c) => c.ready).length;
  let restarts = cs.reduce((n, c) => n + c.restartCount, 0);
  let reason = st?.reason || st?.phase || 'Unknown';
  for (const c of st?.initContainerStatuses ?? []) {
    restarts += c.restartCount;
    if (c.state?.terminated && c.state.terminated.exitCode !== 0) reason = `Init:${c.state.terminated.reason || `ExitCode:${c.state.terminated.exitCode}`}`;
    else if (c.state?.waiting?.reason && c.state.waiting.reason !== 'PodInitializing') reason = `Init:${c.state.waiting.reason}`;
  }
  for (const c of [...cs].reverse()) {
    if (c.state?.waiting?.reason) reason = c.state.waiting.reason;
    else if (c.state?.terminated?.reason) reason = c.state.terminated.reason;
  }
  if (p.metadata?.deletionTimestamp) reason = 'Terminating';
  return { ready: `${ready}/${total}`, status: reason, restarts: String(restarts) };
}

function nodeStatus(n: core.Node): string {
  const ready = n.status?.conditions.find((c) => c.type === 'Ready');
  let s = ready?.status === 'True' ? 'Ready' : ready ? 'NotReady' : 'Unknown';
  if (n.spec?.unschedulable) s += ',SchedulingDisabled';
  return s;
}

function nodeRoles(n: core.Node): string {
  const roles = Object.keys(n.metadata?.labels ?? {}).filter((k) => k.startsWith('node-role.kubernetes.io/')).map((k) => k.slice('node-role.kubernetes.io/'.length)).filter(Boolean);
  return roles.length ? roles.sort().join(',') : '<none>';
}

interface Columns {
  head: string[];
  row(o: core.Object, now: number): string[];
  wideHead?: string[];
  wide?(o: core.Object, now: number): string[];
}

const meta = (o: core.Object) => unwrap(o).value.metadata!;

const COLUMNS: Record<string, Columns> = {
  pods: {
    head: ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE'],
    row: (o, now) => { const s = podStatus(o.pod!); return [meta(o).name, s.ready, s.status, s.restarts, age(meta(o).creationTimestamp, now)]; },
    wideHead: ['IP', 'NODE', 'NOMINATED NODE', 'READINESS GATES'],
    wide: (o) => { const p = o.pod!; const g = p.spec?.readinessGates ?? []; return [p.status?.podIP || '<none>', p.spec?.nodeName || '<none>', p.status?.nominatedNodeName || '<none>', g.length ? `${g.filter((x) => p.status?.conditions.some((c) => c.type === x.conditionType && c.status === 'True')).length}/${g.length}` : '<none>']; },
  },
  nodes: {
    head: ['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION'],
    row: (o, now) => [meta(o).name, nodeStatus(o.node!), nodeRoles(o.node!), age(meta(o).creationTimestamp, now), o.node!.status?.nodeInfo?.kubeletVersion || ''],
    wideHead: ['INTERNAL-IP', 'EXTERNAL-IP', 'OS-IMAGE', 'KERNEL-VERSION', 'CONTAINER-RUNTIME'],
    wide: (o) => { const s = o.node!.status; const addr = (t: string) => s?.addresses.find((a) => a.type === t)?.address || '<none>'; return [addr('InternalIP'), addr('ExternalIP'), s?.nodeInfo?.osImage || '<unknown>', s?.nodeInfo?.kernelVersion || '<unknown>', s?.nodeInfo?.containerRuntimeVersion || '<unknown>']; },
  },
  namespaces: { head: ['NAME', 'STATUS', 'AGE'], row: (o, now) => [meta(o).name, o.namespace!.status?.phase || '', age(meta(o).creationTimestamp, now)] },
  configmaps: { head: ['NAME', 'DATA', 'AGE'], row: (o, now) => [meta(o).name, String(Object.keys(o.configMap!.data).length + Object.keys(o.configMap!.binaryData).length), age(meta(o).creationTimestamp, now)] },
  secrets: { head: ['NAME', 'TYPE', 'DATA', 'AGE'], row: (o, now) => [meta(o).name, o.secret!.type, String(Object.keys(o.secret!.data).length), age(meta(o).creationTimestamp, now)] },
  serviceaccounts: { head: ['NAME', 'SECRETS', 'AGE'], row: (o, now) => [meta(o).name, String(o.serviceAccount!.secrets.length), age(meta(o).creationTimestamp, now)] },
  events: {
    head: ['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE'],
    row: (o, now) => { const e = o.event!; const io = e.involvedObject; return [age(e.lastTimestamp || e.eventTime || meta(o).creationTimestamp, now), e.type, e.reason, `${(io?.kind ?? '').toLowerCase()}/${io?.name ?? ''}`, e.message]; },
  },
  priorityclasses: { head: ['NAME', 'VALUE', 'GLOBAL-DEFAULT', 'AGE'], row: (o, now) => [meta(o).name, String(o.priorityClass!.value), String(o.priorityClass!.globalDefault), age(meta(o).creationTimestamp, now)] },
  resourcequotas: {
    head: ['NAME', 'AGE', 'REQUEST', 'LIMIT'],
    row: (o, now) => {
      const q = o.resourceQuota!;
      const hard = q.status?.hard ?? q.spec?.hard ?? {};
      const used = q.status?.used ?? {};
      const fmt = (keys: string[]) => keys.sort().map((k) => `${k}: ${used[k] ?? '0'}/${hard[k]}`).join(', ');
      const lim = Object.keys(hard).filter((k) => k.startsWith('limits.'));
      return [meta(o).name, age(meta(o).creationTimestamp, now), fmt(Object.keys(hard).filter((k) => !k.startsWith('limits.'))), fmt(lim)];
    },
  },
  leases: { head: ['NAME', 'HOLDER', 'AGE'], row: (o, now) => [meta(o).name, o.lease!.spec?.holderIdentity ?? '', age(meta(o).creationTimestamp, now)] },
  rolebindings: { head: ['NAME', 'ROLE', 'AGE'], row: (o, now) => [meta(o).name, `${o.roleBinding!.roleRef?.kind}/${o.roleBinding!.roleRef?.name}`, age(meta(o).creationTimestamp, now)] },
  clusterrolebindings: { head: ['NAME', 'ROLE', 'AGE'], row: (o, now) => [meta(o).name, `${o.clusterRoleBinding!.roleRef?.kind}/${o.clusterRoleBinding!.roleRef?.name}`, age(meta(o).creationTimestamp, now)] },
  roles: { head: ['NAME', 'CREATED AT'], row: (o) => [meta(o).name, meta(o).creationTimestamp] },
  clusterroles: { head: ['NAME', 'CREATED AT'], row: (o) => [meta(o).name, meta(o).creationTimestamp] },
  certificatesigningrequests: {
    head: ['NAME', 'AGE', 'SIGNERNAME', 'REQUESTOR', 'REQUESTEDDURATION', 'CONDITION'],
    row: (o, now) => {
      const c = o.certificateSigningRequest!;
      const d = c.spec?.expirationSeconds;
      return [meta(o).name, age(meta(o).creationTimestamp, now), c.spec?.signerName ?? '', c.spec?.username ?? '', d === undefined ? '<none>' : humanDuration(d * 1000), csrConditionText(c)];
    },
  },
};
const DEFAULT_COLUMNS: Columns = { head: ['NAME', 'AGE'], row: (o, now) => [meta(o).name, age(meta(o).creationTimestamp, now)] };

export function tableRows(info: KindInfo, items: core.Object[], o: { wide?: boolean; allNamespaces?: boolean; noHeaders?: boolean; now: number }): string[][] {
  const cols = COLUMNS[info.resource] ?? DEFAULT_COLUMNS;
  const head = [...(o.allNamespaces && info.namespaced ? ['NAMESPACE'] : []), ...cols.head, ...(o.wide && cols.wideHead ? cols.wideHead : [])];
  const rows = items.map((it) => [...(o.allNamespaces && info.namespaced ? [meta(it).namespace] : []), ...cols.row(it, o.now), ...(o.wide && cols.wide ? cols.wide(it, o.now) : [])]);
  return o.noHeaders ? rows : [head, ...rows];
}

export function nameOf(info: KindInfo, o: core.Object): string {
  return `${info.kind.toLowerCase()}${info.group ? `.${info.group}` : ''}/${meta(o).name}`;
}

export function printObjects(info: KindInfo, items: core.Object[], format: 'yaml' | 'json', asList: boolean): string {
  const docs = items.map((i) => encodeObject(i));
  const body = asList ? { apiVersion: 'v1', kind: 'List', items: docs, metadata: { resourceVersion: '' } } : docs[0];
  return format === 'json' ? JSON.stringify(body, null, 4) + '\n' : toYaml(body);
}

export { resolveResource };
