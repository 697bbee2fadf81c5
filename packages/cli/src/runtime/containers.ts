// `berth runtime pods|ps|inspect|inspectp|exec|logs|stats`: crictl-like commands for pod
// sandboxes and containers against a runtime-shim socket. Ids may be given by a unique prefix
// (or, for containers and pods, by name), as crictl allows.
import { runtime } from '@berth/api';
import { callUnary } from '@berth/common';

import { RuntimeUsageError, noMoreFlags, table, takeFlag, takeValue, type RuntimeIo } from './options';

type Client = runtime.RuntimeServiceClient;

function ago(us: number): string {
  if (us <= 0) return '';
  const s = Math.max(0, Math.floor((Date.now() * 1000 - us) / 1e6));
  if (s < 60) return `${s} seconds ago`;
  if (s < 3600) return `${Math.floor(s / 60)} minutes ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} hours ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

function labels(args: string[], command: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (;;) {
    const l = takeValue(args, '--label', command);
    if (l === undefined) return out;
    const eq = l.indexOf('=');
    if (eq <= 0) throw new RuntimeUsageError(command, `--label: expected key=value, got "${l}"`);
    out[l.slice(0, eq)] = l.slice(eq + 1);
  }
}

function outputFormat(args: string[], command: string): 'table' | 'json' {
  const o = takeValue(args, '-o', command) ?? takeValue(args, '--output', command) ?? 'table';
  if (o !== 'table' && o !== 'json') throw new RuntimeUsageError(command, `-o: expected table or json, got "${o}"`);
  return o;
}

const SANDBOX_STATE: Record<number, string> = { [runtime.PodSandboxState.POD_SANDBOX_STATE_READY]: 'Ready', [runtime.PodSandboxState.POD_SANDBOX_STATE_NOTREADY]: 'NotReady' };
const CONTAINER_STATE: Record<number, string> = {
  [runtime.ContainerState.CONTAINER_STATE_CREATED]: 'Created', [runtime.ContainerState.CONTAINER_STATE_RUNNING]: 'Running',
  [runtime.ContainerState.CONTAINER_STATE_EXITED]: 'Exited', [runtime.ContainerState.CONTAINER_STATE_UNKNOWN]: 'Unknown',
};

/** A pod sandbox id from an id, a unique id prefix or a pod name. */
async function resolvePod(client: Client, ref: string, command: string): Promise<string> {
  const { items } = await callUnary<runtime.ListPodSandboxRequest, runtime.ListPodSandboxResponse>(client.listPodSandbox.bind(client), {});
  const hits = items.filter((p) => p.id.startsWith(ref) || p.metadata?.name === ref);
  if (hits.length === 1) return hits[0]!.id;
  throw new RuntimeUsageError(command, hits.length === 0 ? `no pod sandbox "${ref}"` : `"${ref}" names ${hits.length} pod sandboxes; give more of the id`);
}

/** A container id from an id, a unique id prefix or a container name. */
async function resolveContainer(client: Client, ref: string, command: string): Promise<string> {
  const { containers } = await callUnary<runtime.ListContainersRequest, runtime.ListContainersResponse>(client.listContainers.bind(client), {});
  const exact = containers.filter((c) => c.id === ref);
  const hits = exact.length > 0 ? exact : containers.filter((c) => c.id.startsWith(ref) || c.metadata?.name === ref);
  if (hits.length === 1) return hits[0]!.id;
  throw new RuntimeUsageError(command, hits.length === 0 ? `no container "${ref}"` : `"${ref}" names ${hits.length} containers; give more of the id`);
}

export async function pods(client: Client, io: RuntimeIo, args: string[]): Promise<number> {
  const quiet = takeFlag(args, '-q') || takeFlag(args, '--quiet');
  const name = takeValue(args, '--name', 'pods');
  const namespace = takeValue(args, '--namespace', 'pods');
  const state = takeValue(args, '--state', 'pods');
  const sel = labels(args, 'pods');
  const output = outputFormat(args, 'pods');
  noMoreFlags(args, 'pods');
  if (args.length > 0) throw new RuntimeUsageError('pods', `unexpected argument "${args[0]}"`);
  let st = runtime.PodSandboxState.POD_SANDBOX_STATE_UNSPECIFIED;
  if (state !== undefined) {
    const s = state.toLowerCase();
    if (s !== 'ready' && s !== 'notready') throw new RuntimeUsageError('pods', `--state: expected ready or notready, got "${state}"`);
    st = s === 'ready' ? runtime.PodSandboxState.POD_SANDBOX_STATE_READY : runtime.PodSandboxState.POD_SANDBOX_STATE_NOTREADY;
  }
  const res = await callUnary<runtime.ListPodSandboxRequest, runtime.ListPodSandboxResponse>(client.listPodSandbox.bind(client), runtime.ListPodSandboxRequest.fromPartial({ filter: { state: st, labelSelector: sel } }));
  const items = res.items.filter((p) => (name === undefined || p.metadata?.name === name) && (namespace === undefined || p.metadata?.namespace === namespace)).sort((a, b) => b.createdAtUs - a.createdAtUs);
  if (output === 'json') { io.stdout(`${JSON.stringify({ items: items.map((p) => runtime.PodSandbox.toJSON(p)) }, null, 2)}\n`); return 0; }
  if (quiet) { for (const p of items) io.stdout(`${p.id}\n`); return 0; }
  const rows = [['POD ID', 'CREATED', 'STATE', 'NAME', 'NAMESPACE', 'ATTEMPT', 'RUNTIME']];
  for (const p of items) rows.push([p.id.slice(0, 13), ago(p.createdAtUs), SANDBOX_STATE[p.state] ?? 'Unknown', p.metadata?.name ?? '', p.metadata?.namespace ?? '', String(p.metadata?.attempt ?? 0), p.runtimeHandler || '(default)']);
  io.stdout(table(rows));
  return 0;
}

export async function ps(client: Client, io: RuntimeIo, args: string[]): Promise<number> {
  const all = takeFlag(args, '-a') || takeFlag(args, '--all');
  const quiet = takeFlag(args, '-q') || takeFlag(args, '--quiet');
  const pod = takeValue(args, '--pod', 'ps') ?? takeValue(args, '-p', 'ps');
  const name = takeValue(args, '--name', 'ps');
  const state = takeValue(args, '--state', 'ps');
  const sel = labels(args, 'ps');
  const output = outputFormat(args, 'ps');
  noMoreFlags(args, 'ps');
  if (args.length > 0) throw new RuntimeUsageError('ps', `unexpected argument "${args[0]}"`);
  let st = all ? runtime.ContainerState.CONTAINER_STATE_UNSPECIFIED : runtime.ContainerState.CONTAINER_STATE_RUNNING;
  if (state !== undefined) {
    const found = Object.entries(CONTAINER_STATE).find(([, v]) => v.toLowerCase() === state.toLowerCase());
    if (found === undefined) throw new RuntimeUsageError('ps', `--state: expected created, running or exited, got "${state}"`);
    st = Number(found[0]);
  }
  const podSandboxId = pod !== undefined ? await resolvePod(client, pod, 'ps') : '';
  const res = await callUnary<runtime.ListContainersRequest, runtime.ListContainersResponse>(client.listContainers.bind(client), runtime.ListContainersRequest.fromPartial({ filter: { state: st, podSandboxId, labelSelector: sel } }));
  const list = res.containers.filter((c) => name === undefined || c.metadata?.name === name).sort((a, b) => b.createdAtUs - a.createdAtUs);
  if (output === 'json') { io.stdout(`${JSON.stringify({ containers: list.map((c) => runtime.Container.toJSON(c)) }, null, 2)}\n`); return 0; }
  if (quiet) { for (const c of list) io.stdout(`${c.id}\n`); return 0; }
  const rows = [['CONTAINER', 'IMAGE', 'CREATED', 'STATE', 'NAME', 'ATTEMPT', 'POD ID']];
  for (const c of list) rows.push([c.id.slice(0, 13), c.image?.image || c.imageId.slice(7, 19), ago(c.createdAtUs), CONTAINER_STATE[c.state] ?? 'Unknown', c.metadata?.name ?? '', String(c.metadata?.attempt ?? 0), c.podSandboxId.slice(0, 13)]);
  io.stdout(table(rows));
  return 0;
}

/** Prints `{status, info}` (info values decoded from JSON) for each ref, one object or a list. */
async function printStatuses<S>(io: RuntimeIo, refs: string[], fetch: (ref: string) => Promise<{ status?: S; info: Record<string, string> }>, toJSON: (s: S) => unknown): Promise<number> {
  const out: unknown[] = [];
  for (const ref of refs) {
    const r = await fetch(ref);
    out.push({ status: r.status !== undefined ? toJSON(r.status) : null, info: Object.fromEntries(Object.entries(r.info).map(([k, v]) => [k, JSON.parse(v) as unknown])) });
  }
  io.stdout(`${JSON.stringify(out.length === 1 ? out[0] : out, null, 2)}\n`);
  return 0;
}

export async function inspect(client: Client, io: RuntimeIo, args: string[]): Promise<number> {
  noMoreFlags(args, 'inspect');
  if (args.length === 0) throw new RuntimeUsageError('inspect', 'needs at least one CONTAINER');
  return printStatuses(io, args, async (ref) => callUnary<runtime.ContainerStatusRequest, runtime.ContainerStatusResponse>(client.containerStatus.bind(client), { containerId: await resolveContainer(client, ref, 'inspect'), verbose: true }), (s) => runtime.ContainerStatus.toJSON(s));
}

export async function inspectp(client: Client, io: RuntimeIo, args: string[]): Promise<number> {
  noMoreFlags(args, 'inspectp');
  if (args.length === 0) throw new RuntimeUsageError('inspectp', 'needs at least one POD');
  return printStatuses(io, args, async (ref) => callUnary<runtime.PodSandboxStatusRequest, runtime.PodSandboxStatusResponse>(client.podSandboxStatus.bind(client), { podSandboxId: await resolvePod(client, ref, 'inspectp'), verbose: true }), (s) => runtime.PodSandboxStatus.toJSON(s));
}

export async function exec(client: Client, io: RuntimeIo, args: string[]): Promise<number> {
  // Flags end at the container id: what follows is the command and its own flags.
  let cut = 0;
  while (cut < args.length && args[cut]!.startsWith('-')) cut += args[cut] === '--timeout' ? 2 : 1;
  const flags = args.slice(0, cut);
  const rest = args.slice(cut);
  const interactive = takeFlag(flags, '-i') || takeFlag(flags, '--interactive');
  const tty = takeFlag(flags, '-t') || takeFlag(flags, '--tty');
  const sync = takeFlag(flags, '-s') || takeFlag(flags, '--sync');
  const timeoutS = takeValue(flags, '--timeout', 'exec');
  noMoreFlags(flags, 'exec');
  if (rest.length < 2) throw new RuntimeUsageError('exec', 'needs CONTAINER and COMMAND');
  if (timeoutS !== undefined && !/^[0-9]+$/.test(timeoutS)) throw new RuntimeUsageError('exec', `--timeout: expected seconds, got "${timeoutS}"`);
  const containerId = await resolveContainer(client, rest[0]!, 'exec');
  const cmd = rest.slice(1);
  if (sync) {
    const r = await callUnary<runtime.ExecSyncRequest, runtime.ExecSyncResponse>(client.execSync.bind(client), { containerId, cmd, timeout: Number(timeoutS ?? 0) });
    io.stdout(Buffer.from(r.stdout).toString());
    io.stderr(Buffer.from(r.stderr).toString());
    return r.exitCode;
  }
  const stream = client.exec();
  return await new Promise<number>((resolve, reject) => {
    let code = 1;
    stream.on('data', (f: runtime.ExecResponse) => {
      if (f.stdout !== undefined) io.stdout(Buffer.from(f.stdout).toString());
      else if (f.stderr !== undefined) io.stderr(Buffer.from(f.stderr).toString());
      else if (f.exit !== undefined) code = f.exit.exitCode;
    });
    stream.on('end', () => resolve(code));
    stream.on('error', reject);
    const size = tty ? io.terminalSize?.() : undefined;
    stream.write(runtime.ExecRequest.fromPartial({ start: { containerId, cmd, tty, stdin: interactive, ...(size !== undefined ? { terminalSize: size } : {}) } }));
    if (tty && io.onResize !== undefined) {
      const off = io.onResize(() => {
        const s = io.terminalSize?.();
        if (s !== undefined) stream.write(runtime.ExecRequest.fromPartial({ resize: s }));
      });
      stream.on('close', off);
    }
    if (interactive) {
      const input = io.stdinStream() as NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (on: boolean) => void };
      // With -t on a terminal, keys go to the container's terminal as typed (^C included).
      const raw = tty && input.isTTY === true && input.setRawMode !== undefined;
      if (raw) input.setRawMode!(true);
      stream.on('close', () => { if (raw) input.setRawMode!(false); input.pause(); });
      input.on('data', (d: Buffer | string) => stream.write(runtime.ExecRequest.fromPartial({ stdin: Buffer.from(d) })));
      input.on('end', () => { stream.write(runtime.ExecRequest.fromPartial({ stdinClose: true })); stream.end(); });
    } else {
      stream.end();
    }
  });
}

/** "10s", "5m", "2h" ago, or an RFC 3339 time -> microseconds since the epoch. */
function sinceUs(v: string): number {
  const m = /^([0-9]+)(s|m|h)$/.exec(v);
  if (m !== null) return (Date.now() - Number(m[1]) * { s: 1e3, m: 6e4, h: 3.6e6 }[m[2] as 's' | 'm' | 'h']) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new RuntimeUsageError('logs', `--since: expected a duration (10s, 5m, 2h) or an RFC 3339 time, got "${v}"`);
  return t * 1000;
}

function rfc3339(us: number): string {
  const iso = new Date(Math.floor(us / 1000)).toISOString();
  return `${iso.slice(0, 19)}.${String(us % 1_000_000).padStart(6, '0')}Z`;
}

export async function logs(client: Client, io: RuntimeIo, args: string[]): Promise<number> {
  const follow = takeFlag(args, '-f') || takeFlag(args, '--follow');
  const timestamps = takeFlag(args, '-t') || takeFlag(args, '--timestamps');
  const previous = takeFlag(args, '-p') || takeFlag(args, '--previous');
  const tail = takeValue(args, '--tail', 'logs');
  const since = takeValue(args, '--since', 'logs');
  const limit = takeValue(args, '--limit-bytes', 'logs');
  noMoreFlags(args, 'logs');
  if (args.length !== 1) throw new RuntimeUsageError('logs', 'needs exactly one CONTAINER');
  if (tail !== undefined && !/^(-1|[0-9]+)$/.test(tail)) throw new RuntimeUsageError('logs', `--tail: expected a number of lines, got "${tail}"`);
  if (limit !== undefined && !/^[0-9]+$/.test(limit)) throw new RuntimeUsageError('logs', `--limit-bytes: expected a number, got "${limit}"`);
  const containerId = await resolveContainer(client, args[0]!, 'logs');
  const req = runtime.ContainerLogsRequest.fromPartial({
    containerId, follow, timestamps, previous,
    ...(tail !== undefined && tail !== '-1' ? { tailLines: Number(tail) } : {}),
    ...(since !== undefined ? { sinceTimeUs: sinceUs(since) } : {}),
    ...(limit !== undefined ? { limitBytes: Number(limit) } : {}),
  });
  const stream = client.containerLogs(req);
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (f: runtime.LogFrame) => {
      const text = `${timestamps ? `${rfc3339(f.timestampUs)} ` : ''}${Buffer.from(f.log).toString()}${f.partial ? '' : '\n'}`;
      if (f.stream === 'stderr') io.stderr(text);
      else io.stdout(text);
    });
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  return 0;
}

function bytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)}GB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(2)}MB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(2)}kB`;
  return `${n}B`;
}

export async function stats(client: Client, io: RuntimeIo, args: string[]): Promise<number> {
  const all = takeFlag(args, '-a') || takeFlag(args, '--all');
  const pod = takeValue(args, '--pod', 'stats') ?? takeValue(args, '-p', 'stats');
  const sel = labels(args, 'stats');
  const output = outputFormat(args, 'stats');
  noMoreFlags(args, 'stats');
  const podSandboxId = pod !== undefined ? await resolvePod(client, pod, 'stats') : '';
  const ids = new Set<string>();
  for (const ref of args) ids.add(await resolveContainer(client, ref, 'stats'));
  const { containers } = await callUnary<runtime.ListContainersRequest, runtime.ListContainersResponse>(client.listContainers.bind(client), runtime.ListContainersRequest.fromPartial({ filter: { podSandboxId, labelSelector: sel, state: all ? 0 : runtime.ContainerState.CONTAINER_STATE_RUNNING } }));
  const wanted = new Set(containers.filter((c) => ids.size === 0 || ids.has(c.id)).map((c) => c.id));
  const names = new Map(containers.map((c) => [c.id, c.metadata?.name ?? '']));
  const sample = async (): Promise<runtime.ContainerStats[]> =>
    (await callUnary<runtime.ListContainerStatsRequest, runtime.ListContainerStatsResponse>(client.listContainerStats.bind(client), runtime.ListContainerStatsRequest.fromPartial({ filter: { podSandboxId, labelSelector: sel } }))).stats.filter((s) => wanted.has(s.attributes?.id ?? ''));
  let list = await sample();
  // The CPU rate needs two samples the runtime can compare.
  if (list.some((s) => s.cpu !== undefined && s.cpu.usageNanoCores === undefined)) {
    await new Promise((r) => setTimeout(r, 500));
    list = await sample();
  }
  if (output === 'json') { io.stdout(`${JSON.stringify({ stats: list.map((s) => runtime.ContainerStats.toJSON(s)) }, null, 2)}\n`); return 0; }
  const rows = [['CONTAINER', 'NAME', 'CPU %', 'MEM', 'DISK', 'INODES', 'PIDS']];
  for (const s of list) {
    const id = s.attributes?.id ?? '';
    rows.push([id.slice(0, 13), names.get(id) ?? '', s.cpu?.usageNanoCores !== undefined ? (s.cpu.usageNanoCores / 1e7).toFixed(2) : '-', bytes(s.memory?.workingSetBytes ?? 0), bytes(s.writableLayer?.usedBytes ?? 0), String(s.writableLayer?.inodesUsed ?? 0), String(s.pids?.current ?? 0)]);
  }
  io.stdout(table(rows));
  return 0;
}
