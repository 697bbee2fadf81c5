// After the cluster is up: the example image into every node's runtime, examples/ applied, and a
// live view of nodes and pods until the examples are Running and Ready (or a timeout that names
// what is not).
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { runtime, type core } from '@berth/api';
import { createClient } from '@berth/common';
import { status as grpcStatus } from '@grpc/grpc-js';
import { StoreClient, parseManifests, resolveResource, unwrap } from '@berth/apimachinery';
import { runKubectl, type Io } from './kubectl';
import { table, tableRows } from './printers';

/** The repository's tools/ and examples/ (the CLI runs from packages/cli/dist or src). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const DEFAULT_EXAMPLES = path.join(REPO_ROOT, 'examples');
export const EXAMPLE_IMAGE = 'berth.local/busybox:latest';

/**
 * Builds the example image once per state dir as an OCI archive tarball (one file each node's
 * runtime-shim reads as it streams in): one layer with Debian's static busybox and its applets,
 * /etc/passwd and /etc/group, /tmp, and /bin/udp-echo compiled statically from
 * examples/src/udp-echo.c (busybox's nc has no UDP mode in Debian's build). Not
 * tools/build-test-image.sh's image: that one is made to exercise the unpacker (whiteouts,
 * opaque directories, hard links), which an example does not need.
 */
export function buildExampleImage(stateDir: string): string {
  const file = path.join(stateDir, 'images', 'example-image.tar');
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = fs.mkdtempSync(path.join(path.dirname(file), '.build-'));
  const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const root = path.join(tmp, 'root');
    for (const d of ['bin', 'etc', 'root', 'tmp']) fs.mkdirSync(path.join(root, d), { recursive: true, mode: 0o755 });
    fs.chmodSync(path.join(root, 'tmp'), 0o1777);
    fs.copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'));
    fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
    for (const applet of run('/bin/busybox', ['--list']).toString().split('\n').filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== 'busybox')) {
      fs.symlinkSync('busybox', path.join(root, 'bin', applet));
    }
    fs.writeFileSync(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
    fs.writeFileSync(path.join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
    run('cc', ['-static', '-O2', '-o', path.join(root, 'bin', 'udp-echo'), path.join(REPO_ROOT, 'examples', 'src', 'udp-echo.c')]);
    run('tar', ['--sort=name', '--numeric-owner', '--owner=0', '--group=0', '--mtime=@1700000000', '-C', root, '-cf', path.join(tmp, 'layer.tar'), '.']);

    const layout = path.join(tmp, 'layout');
    const blobs = path.join(layout, 'blobs', 'sha256');
    fs.mkdirSync(blobs, { recursive: true });
    const blob = (data: Buffer) => { const h = crypto.createHash('sha256').update(data).digest('hex'); fs.writeFileSync(path.join(blobs, h), data); return { digest: `sha256:${h}`, size: data.length }; };
    const tarBytes = fs.readFileSync(path.join(tmp, 'layer.tar'));
    const layer = blob(zlib.gzipSync(tarBytes));
    const arch = process.arch === 'x64' ? 'amd64' : process.arch;
    const config = blob(Buffer.from(JSON.stringify({
      architecture: arch, os: 'linux', created: '2023-11-14T22:13:20Z',
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'], WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: [`sha256:${crypto.createHash('sha256').update(tarBytes).digest('hex')}`] },
      history: [{ created_by: 'berth up: busybox-static, /bin/udp-echo from examples/src/udp-echo.c' }],
    })));
    const manifest = blob(Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
    })));
    fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' }, platform: { architecture: arch, os: 'linux' } }],
    }));
    run('tar', ['-C', layout, '-cf', path.join(tmp, 'image.tar'), '.']);
    fs.renameSync(path.join(tmp, 'image.tar'), file);
  } catch (e) {
    throw new Error(`building the example image failed: ${((e as { stderr?: Buffer }).stderr ?? '').toString().trim() || (e as Error).message}`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return file;
}

function importOnce(socket: string, file: string, deadlineMs: number): Promise<void> {
  const client = createClient(runtime.ImageServiceClient, { target: socket });
  return new Promise<void>((resolve, reject) => {
    const call = client.importImage({ deadline: new Date(Date.now() + deadlineMs) }, (err) => (err ? reject(err) : resolve()));
    call.write(runtime.ImportImageRequest.fromPartial({ metadata: { format: 'oci-layout', name: EXAMPLE_IMAGE } }));
    // The archive is about 2 MB: written whole, without waiting for 'drain' (a client stream whose
    // last write waited for a 'drain' that never came was seen never to half-close, leaving the
    // runtime-shim waiting for the end of the archive).
    const data = fs.readFileSync(file);
    for (let off = 0; off < data.length; off += 1024 * 1024) call.write({ chunk: data.subarray(off, off + 1024 * 1024) });
    call.end();
  }).finally(() => client.close());
}

/**
 * Imports the image archive into one node's runtime-shim under EXAMPLE_IMAGE. The archive is
 * 2 MB and an import takes well under a second. An import that has not answered in 30 s is
 * cancelled, `unstick` runs (berth up restarts that runtime-shim: one has been seen to stop for
 * good in the middle of unpacking a layer of its first import), and it is tried again.
 */
export async function importImage(socket: string, file: string, o: { attempts?: number; unstick?: () => Promise<void>; say?: (s: string) => void } = {}): Promise<void> {
  const attempts = o.attempts ?? 3;
  for (let i = 1; ; i++) {
    try {
      return await importOnce(socket, file, 30_000);
    } catch (e) {
      const err = e as { code?: number; details?: string; message: string };
      if (i >= attempts || err.code !== grpcStatus.DEADLINE_EXCEEDED) throw new Error(`importing ${EXAMPLE_IMAGE} into ${socket}: ${err.details ?? err.message}`);
      o.say?.(`the import into ${socket} did not finish in 30 s; ${o.unstick ? 'restarting that runtime-shim and ' : ''}trying again`);
      await o.unstick?.();
    }
  }
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
