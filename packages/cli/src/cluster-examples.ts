// After the cluster is up: the example image into every node's runtime, examples/ applied, and a
// live view of nodes and pods until the examples are Running and Ready (or a timeout that names
// what is not).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { core } from '@berth/api';
import { StoreClient, parseManifests, resolveResource, unwrap } from '@berth/apimachinery';
import { runKubectl, type Io } from './kubectl';
import { table, tableRows } from './printers';
import { runRuntime } from './runtime';

/** The repository's tools/ and examples/ (the CLI runs from packages/cli/dist or src). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const DEFAULT_EXAMPLES = path.join(REPO_ROOT, 'examples');
export const EXAMPLE_IMAGE = 'berth.local/busybox:latest';

/** Builds the busybox OCI layout once per state dir (tools/build-test-image.sh). */
export function buildExampleImage(stateDir: string): string {
  const dir = path.join(stateDir, 'images', 'busybox-oci');
  if (fs.existsSync(path.join(dir, 'index.json'))) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o700 });
  try {
    execFileSync('bash', [path.join(REPO_ROOT, 'tools', 'build-test-image.sh'), '--out', tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new Error(`building the example image failed: ${((e as { stderr?: Buffer }).stderr ?? '').toString().trim() || (e as Error).message}`);
  }
  fs.renameSync(tmp, dir);
  return dir;
}

/** Imports the layout into one node's runtime-shim under EXAMPLE_IMAGE. */
export async function importImage(runtimeSocket: string, layout: string): Promise<void> {
  let err = '';
  const code = await runRuntime(['--runtime-endpoint', runtimeSocket, 'import', '--name', EXAMPLE_IMAGE, layout], {
    stdout: () => undefined, stderr: (s) => { err += s; }, env: process.env, tty: false, stdinStream: () => process.stdin,
  });
  if (code !== 0) throw new Error(`importing ${EXAMPLE_IMAGE} into ${runtimeSocket}: ${err.trim()}`);
}

/** `berth apply -f DIR` through the admin config; returns the output lines. */
export async function applyManifests(adminConf: string, dir: string): Promise<string> {
  let out = '';
  const io: Io = {
    stdout: (s) => { out += s; }, stderr: (s) => { out += s; },
    env: { ...process.env, BERTH_KUBECONFIG: adminConf }, stdin: async () => '', now: () => Date.now(),
  };
  const code = await runKubectl(io, 'apply', ['-f', dir]);
  if (code !== 0) throw new Error(`berth apply -f ${dir} failed:\n${out.trim()}`);
  return out;
}

/** namespace/name of every Pod in the manifests of `dir`. */
export function examplePods(dir: string): string[] {
  const out: string[] = [];
  for (const f of fs.readdirSync(dir).filter((x) => /\.(ya?ml|json)$/.test(x)).sort()) {
    for (const obj of parseManifests(fs.readFileSync(path.join(dir, f), 'utf8'), f)) {
      const { info, value } = unwrap(obj);
      if (info.kind === 'Pod') out.push(`${value.metadata?.namespace || 'default'}/${value.metadata!.name}`);
    }
  }
  return out;
}

/** Done: Running with every container ready, or (a run-to-completion pod) Succeeded. */
export function podDone(p: core.Pod): boolean {
  if (p.status?.phase === 'Succeeded') return true;
  return p.status?.phase === 'Running' && !!p.status.conditions.find((c) => c.type === 'Ready' && c.status === 'True');
}

export function nodeReady(n: core.Node): boolean {
  return n.status?.conditions.find((c) => c.type === 'Ready')?.status === 'True';
}

export interface ClusterSnapshot { nodes: core.Object[]; pods: core.Object[] }

export async function snapshot(client: StoreClient): Promise<ClusterSnapshot> {
  const [nodes, pods] = await Promise.all([client.listAll({ resource: 'nodes' }), client.listAll({ resource: 'pods', namespace: '' })]);
  return { nodes: nodes.items, pods: pods.items };
}

export function renderSnapshot(s: ClusterSnapshot, now: number): string {
  const nodes = s.nodes.length ? table(tableRows(resolveResource('nodes')!, s.nodes, { wide: true, now }).map((r) => r.slice(0, 6))) : 'No nodes registered yet.\n';
  const pods = s.pods.length ? table(tableRows(resolveResource('pods')!, s.pods, { wide: true, allNamespaces: true, now }).map((r) => r.slice(0, 8))) : 'No pods yet.\n';
  return `${nodes}\n${pods}`;
}

/** What keeps the examples from being done, one line each ('' when all are). */
export function notDone(s: ClusterSnapshot, wanted: string[], expectedNodes: string[]): string[] {
  const lines: string[] = [];
  for (const n of expectedNodes) {
    const node = s.nodes.find((o) => unwrap(o).value.metadata?.name === n)?.node;
    if (!node) lines.push(`node ${n}: not registered (its kubelet-agent has not created the Node)`);
    else if (!nodeReady(node)) lines.push(`node ${n}: ${node.status?.conditions.find((c) => c.type === 'Ready')?.message || 'not Ready'}`);
  }
  for (const key of wanted) {
    const [ns, name] = key.split('/');
    const pod = s.pods.find((o) => o.pod?.metadata?.namespace === ns && o.pod.metadata.name === name)?.pod;
    if (!pod) { lines.push(`pod ${key}: missing`); continue; }
    if (podDone(pod)) continue;
    const waiting = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])].find((c) => c.state?.waiting?.reason)?.state?.waiting;
    const unsched = pod.status?.conditions.find((c) => c.type === 'PodScheduled' && c.status === 'False');
    const why = !pod.spec?.nodeName
      ? `not scheduled${unsched?.message ? `: ${unsched.message}` : ''}`
      : `${pod.status?.phase || 'Pending'} on ${pod.spec.nodeName}${waiting ? ` (${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''})` : ''}${pod.status?.phase === 'Running' ? ', not Ready' : ''}`;
    lines.push(`pod ${key}: ${why}`);
  }
  return lines;
}

/**
 * Redraws the view (in place on a terminal, else only when it changed) until every wanted pod is
 * done, the timeout passes, or `signal` aborts. Returns what is still not done.
 */
export async function liveView(o: {
  client: StoreClient; wanted: string[]; nodes: string[]; timeoutMs: number; out: NodeJS.WritableStream; tty: boolean; signal: AbortSignal; intervalMs?: number;
}): Promise<string[]> {
  const deadline = Date.now() + o.timeoutMs;
  let last = '';
  let drawnLines = 0;
  let pending: string[] = ['nothing read from the Store yet'];
  while (!o.signal.aborted) {
    try {
      const s = await snapshot(o.client);
      pending = notDone(s, o.wanted, o.nodes);
      const view = renderSnapshot(s, Date.now());
      if (o.tty) {
        o.out.write(`${drawnLines ? `\x1b[${drawnLines}A\x1b[J` : ''}${view}`);
        drawnLines = view.split('\n').length - 1;
      } else {
        // Ages change every second; only a change of state is worth another screen in a log
        // (rendered at time 0, every age reads the same).
        const key = renderSnapshot(s, 0);
        if (key !== last) o.out.write(`${view}\n`);
        last = key;
      }
      if (!pending.length) return [];
    } catch (e) {
      pending = [`the Store did not answer: ${(e as Error).message}`];
    }
    if (Date.now() >= deadline) return pending;
    await new Promise<void>((r) => {
      const done = () => { clearTimeout(t); o.signal.removeEventListener('abort', done); r(); };
      const t = setTimeout(done, o.intervalMs ?? 1000);
      o.signal.addEventListener('abort', done, { once: true });
    });
  }
  return pending;
}
