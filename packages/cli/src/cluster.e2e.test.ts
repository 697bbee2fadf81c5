// End to end: `berth up --nodes 2` in a temp run/state dir, in both pod network modes: the
// nodes register Ready, the examples are scheduled by their rules (node affinity, a toleration,
// anti-affinity spread) over both nodes and run; a pod on one node reaches pods on the other over
// TCP and UDP, and so does the other node itself; Ctrl-C (SIGINT) then leaves nothing on the
// host: no process, mount, netns, link, route or cgroup of the run.
import { execFileSync, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { core } from '@berth/api';
import { StoreClient } from '@berth/apimachinery';
import { startServiceProcess, type ServiceProcess } from '@berth/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_EXAMPLES } from './cluster-examples';
import { cleanupRun, leftovers } from './down';
import { readClusterInfo, type ClusterInfo } from './up';

const bin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth.js');

async function waitFor(p: ServiceProcess, re: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!re.test(p.output())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; output:\n${p.output().slice(-6000)}`);
    if (p.proc.exitCode !== null) throw new Error(`berth up exited ${p.proc.exitCode}; output:\n${p.output().slice(-6000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Runs `berth runtime exec` in the first running container of pod `pod` on `node`. */
function execInPod(info: ClusterInfo, node: string, pod: string, cmd: string[]): { code: number | null; out: string } {
  const sock = info.nodes.find((n) => n.name === node)!.services.find((s) => s.name === 'runtime-shim')!.socket;
  const ps = spawnSync(process.execPath, [bin, 'runtime', '--runtime-endpoint', sock, 'ps', '-q', '--pod', pod, '--state', 'running'], { encoding: 'utf8' });
  const id = ps.stdout.trim().split('\n')[0];
  if (!id) throw new Error(`no running container of pod ${pod} on ${node}: ${ps.stdout}${ps.stderr}`);
  const r = spawnSync(process.execPath, [bin, 'runtime', '--runtime-endpoint', sock, 'exec', '--timeout', '10', id, ...cmd], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

function cluster(mode: 'bridge' | 'routed', examples: () => string) {
  let dir: string;
  let runDir: string;
  let stateDir: string;
  let up: ServiceProcess | undefined;
  let info: ClusterInfo;
  let pods: core.Pod[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-e2e-${mode}-${crypto.randomBytes(3).toString('hex')}-`));
    runDir = path.join(dir, 'run');
    stateDir = path.join(dir, 'state');
    up = startServiceProcess(bin, ['up', '--nodes', '2', '--network', mode, '--examples', examples(), '--wait-timeout', '150s'], { ...process.env, BERTH_RUN_DIR: runDir, BERTH_STATE_DIR: stateDir });
    await waitFor(up, /All examples are Running and Ready|not every example is Running and Ready/, 240_000);
    info = readClusterInfo(runDir)!;
    const store = new StoreClient({ target: info.store.unix });
    try { pods = (await store.list({ resource: 'pods', namespace: 'default' })).items.map((o) => o.pod!); } finally { store.raw.close(); }
  }, 300_000);

  afterAll(async () => {
    await up?.stop(60_000);
    if (dir) {
      await cleanupRun(runDir, stateDir, () => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  const pod = (name: string) => pods.find((p) => p.metadata?.name === name)!;

  it('reaches "all examples Running and Ready" on two Ready nodes', () => {
    expect(up!.output(), up!.output().slice(-4000)).toMatch(/All examples are Running and Ready/);
    expect(up!.output()).toMatch(/node-1\s+Ready/);
    expect(up!.output()).toMatch(/node-2\s+Ready/);
  });

  it('schedules by the examples\' rules: node affinity, the toleration of the tainted node, pods on both nodes', () => {
    expect(pod('pinned').spec?.nodeName).toBe('node-1');
    expect(pod('tolerant').spec?.nodeName).toBe('node-2');
    // Only pods that tolerate the batch taint are on node-2.
    for (const p of pods.filter((x) => x.spec?.nodeName === 'node-2')) expect(p.spec?.tolerations.some((t) => t.key === 'dedicated'), p.metadata?.name).toBe(true);
    for (const p of pods) expect(p.status?.podIP, p.metadata?.name).toMatch(p.spec?.nodeName === 'node-1' ? /^10\.244\.1\./ : /^10\.244\.2\./);
    const spread = pods.filter((p) => p.metadata?.labels.app === 'spread');
    if (spread.length) expect(new Set(spread.map((p) => p.spec?.nodeName)).size).toBe(2);
  });

  it('a pod on node-2 reaches pods on node-1 over TCP and UDP', () => {
    const web = pod('web').status!.podIP;
    const echo = pod('udp-echo').status!.podIP;
    expect(pod('web').spec?.nodeName).toBe('node-1');
    // (nc, not wget: Debian's static busybox wget crashes here, in or out of a container)
    const tcp = execInPod(info, 'node-2', 'tolerant', ['/bin/sh', '-c', `printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 5 ${web} 8080`]);
    expect(tcp.out).toMatch(/hello from web/);
    const token = crypto.randomBytes(6).toString('hex');
    const udp = execInPod(info, 'node-2', 'tolerant', ['/bin/udp-echo', '-c', echo, '5353', token]);
    expect(udp.out.trim()).toBe(token);
  });

  it('node-2 itself reaches a pod on node-1 across the underlay, and node-1 a pod on node-2', () => {
    const n2 = info.nodes.find((n) => n.name === 'node-2')!;
    const n1 = info.nodes.find((n) => n.name === 'node-1')!;
    const out = execFileSync('ip', ['netns', 'exec', n2.netns, 'busybox', 'nc', '-w', '5', pod('web').status!.podIP, '8080'], { encoding: 'utf8', input: 'GET /index.html HTTP/1.0\r\n\r\n' });
    expect(out).toMatch(/hello from web/);
    execFileSync('ip', ['netns', 'exec', n1.netns, 'busybox', 'ping', '-c', '1', '-W', '3', pod('tolerant').status!.podIP], { stdio: 'ignore' });
  });

  it('Ctrl-C stops everything and leaves nothing on the host', async () => {
    up!.proc.kill('SIGINT');
    expect((await up!.exited).code).toBe(0);
    expect(up!.output()).toMatch(/stopped; nothing left running/);
    expect(leftovers(runDir, stateDir)).toEqual({ processes: [], mounts: [], netns: [], links: [], cgroups: [] });
    const routes = execFileSync('ip', ['-4', 'route', 'show'], { encoding: 'utf8' });
    expect(routes).not.toContain(info.underlay.cidr);
    expect(routes).not.toMatch(/10\.244\./);
    // no container process of the run is left (their command lines name the image's binaries
    // under the run's state dir)
    expect(spawnSync('pgrep', ['-f', stateDir]).stdout.toString().trim()).toBe('');
  }, 120_000);
}

describe('berth up --nodes 2 --network bridge (every example)', () => {
  cluster('bridge', () => DEFAULT_EXAMPLES);
});

describe('berth up --nodes 2 --network routed', () => {
  // The examples that cross nodes: web and the UDP echo on node-1, the tolerant pod on node-2.
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-e2e-examples-'));
    for (const f of ['web.yaml', 'udp-echo.yaml', 'placement.yaml']) fs.copyFileSync(path.join(DEFAULT_EXAMPLES, f), path.join(dir, f));
  });
  afterAll(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); });
  cluster('routed', () => dir);
});
