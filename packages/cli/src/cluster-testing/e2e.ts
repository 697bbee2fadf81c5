// The end-to-end suite of a `berth up --nodes 2` cluster, run by cluster.e2e.test.ts (bridge)
// and cluster-routed.e2e.test.ts (routed) in parallel: the nodes register Ready, the examples
// are scheduled by their rules (node affinity, a toleration, anti-affinity spread) over both
// nodes and run; a pod on one node reaches pods on the other over TCP and UDP, and so does the
// other node itself; a node whose link is cut or whose agent is stopped becomes Ready=Unknown with
// the unreachable taint and its pods Ready=False, and Ready again with its pods when it is heard;
// every service killed -9 in turn comes back with no pod lost or duplicated;
// Ctrl-C (SIGINT) then leaves nothing on the host: no process, mount, netns, link, route or
// cgroup of the run.
import { execFileSync, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { core } from '@berth/api';
import { StoreClient } from '@berth/apimachinery';
import { checkHealth, startServiceProcess, type ServiceProcess } from '@berth/common';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DEFAULT_EXAMPLES, examplePods, podDone } from '../cluster-examples';
import { cleanupRun, leftovers } from '../down';
import { readClusterInfo, type ClusterInfo } from '../up';

const bin = path.resolve(__dirname, '..', '..', 'dist', 'bin', 'berth.js');

/**
 * The Store's node grace period for the suite: short, so a silent node is noticed quickly, yet
 * safely above the kubelet-agent's 10 s lease renewal (a shorter one would flap healthy nodes).
 */
const GRACE_S = 15;
/** The controller checks every 5 s and the last renewal may be up to 10 s old at the cut. */
const NOTICE_MS = (GRACE_S + 5 + 5) * 1000;

/** node-2's view in the Store: its Ready condition, its taint keys, and the Ready condition of each pod bound to it. */
async function nodeView(store: StoreClient, node: string): Promise<{ ready: string; taints: string[]; pods: Record<string, string> }> {
  const n = (await store.get('nodes', '', node)).node;
  const pods = (await store.list({ resource: 'pods', namespace: 'default' })).items.map((o) => o.pod!)
    .filter((p) => p.spec?.nodeName === node && p.status?.phase === 'Running');
  return {
    ready: n?.status?.conditions.find((c) => c.type === 'Ready')?.status ?? '',
    taints: (n?.spec?.taints ?? []).filter((t) => t.key.startsWith('node.kubernetes.io/')).map((t) => `${t.key}:${t.effect}`).sort(),
    pods: Object.fromEntries(pods.map((p) => [p.metadata!.name, p.status?.conditions.find((c) => c.type === 'Ready')?.status ?? ''])),
  };
}

/** Polls `view` until `ok` holds or `timeoutMs` passes; returns the last view. */
export async function until<T>(view: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let v = await view();
  while (!ok(v) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    v = await view();
  }
  return v;
}

const silent = (v: { ready: string; taints: string[]; pods: Record<string, string> }) =>
  v.ready === 'Unknown' && v.taints.join() === UNREACHABLE.join() && Object.values(v.pods).length > 0 && Object.values(v.pods).every((r) => r === 'False');
const UNREACHABLE = ['node.kubernetes.io/unreachable:NoExecute', 'node.kubernetes.io/unreachable:NoSchedule'];
const healthy = (v: { ready: string; taints: string[] }) => v.ready === 'True' && v.taints.length === 0;
/** Ready without taints, and every Running pod on it Ready again. */
const recovered = (v: { ready: string; taints: string[]; pods: Record<string, string> }) => healthy(v) && Object.values(v.pods).length > 0 && Object.values(v.pods).every((r) => r === 'True');
/**
 * From the node heard again to its pods Ready: the node status write (at once) and the agent's
 * re-post of its pods' status when its informer sees them (seconds; the kubelet's status sync is
 * 10 s). A loaded machine gets some slack; the resync alone would take up to 60 s.
 */
const RECOVER_MS = 20_000;

export async function waitFor(p: ServiceProcess, re: RegExp, timeoutMs: number): Promise<void> {
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

/** A `berth up` that a describe's tests share: its dirs, process and cluster.json, and the env for `berth` commands. */
export interface UpCluster { dir: string; runDir: string; stateDir: string; env: NodeJS.ProcessEnv; up?: ServiceProcess; info: ClusterInfo }

/**
 * Starts `berth up <args>` in fresh per-run dirs before the describe's tests (waiting for the
 * examples' verdict) and stops it and removes what it left after them, also when they fail.
 * `args` gets the run's temporary dir (for example manifests written beside it).
 */
export function upCluster(label: string, args: (dir: string) => string[]): UpCluster {
  const c = {} as UpCluster;
  beforeAll(async () => {
    c.dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-e2e-${label}-${crypto.randomBytes(3).toString('hex')}-`));
    c.runDir = path.join(c.dir, 'run');
    c.stateDir = path.join(c.dir, 'state');
    c.env = { ...process.env, BERTH_RUN_DIR: c.runDir, BERTH_STATE_DIR: c.stateDir };
    c.up = startServiceProcess(bin, ['up', ...args(c.dir), '--wait-timeout', '150s'], c.env);
    await waitFor(c.up, /All examples are Running and Ready|not every example is Running and Ready/, 240_000);
    c.info = readClusterInfo(c.runDir)!;
  }, 300_000);
  afterAll(async () => {
    await c.up?.stop(60_000);
    if (c.dir) {
      await cleanupRun(c.runDir, c.stateDir, () => undefined);
      fs.rmSync(c.dir, { recursive: true, force: true });
    }
  }, 120_000);
  return c;
}

/** The suite for one cluster; call inside a describe. */
export function clusterSuite(mode: 'bridge' | 'routed', examples: () => string): void {
  const c = upCluster(mode, () => ['--nodes', '2', '--network', mode, '--examples', examples(), '--node-monitor-grace-period', `${GRACE_S}s`]);
  let dir: string;
  let runDir: string;
  let stateDir: string;
  let up: ServiceProcess | undefined;
  let info: ClusterInfo;
  let pods: core.Pod[] = [];

  beforeAll(async () => {
    ({ dir, runDir, stateDir, up, info } = c);
    const store = new StoreClient({ target: info.store.unix });
    try { pods = (await store.list({ resource: 'pods', namespace: 'default' })).items.map((o) => o.pod!); } finally { store.raw.close(); }
  }, 60_000);

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
  }, 120_000); // four berth CLI starts and two probes: slow on a loaded machine

  it('node-2 itself reaches a pod on node-1 across the underlay, and node-1 a pod on node-2', () => {
    const n2 = info.nodes.find((n) => n.name === 'node-2')!;
    const n1 = info.nodes.find((n) => n.name === 'node-1')!;
    const out = execFileSync('ip', ['netns', 'exec', n2.netns, 'busybox', 'nc', '-w', '5', pod('web').status!.podIP, '8080'], { encoding: 'utf8', input: 'GET /index.html HTTP/1.0\r\n\r\n' });
    expect(out).toMatch(/hello from web/);
    execFileSync('ip', ['netns', 'exec', n1.netns, 'busybox', 'ping', '-c', '1', '-W', '3', pod('tolerant').status!.podIP], { stdio: 'ignore' });
  });

  it('berth logs and berth exec reach containers on both nodes through their kubelets', () => {
    const berth = (args: string[], input?: string) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, input, env: { ...process.env, BERTH_RUN_DIR: runDir, BERTH_STATE_DIR: stateDir } });
    expect(pod('udp-echo').spec?.nodeName).toBe('node-1');
    expect(pod('tolerant').spec?.nodeName).toBe('node-2');
    const logs = berth(['logs', 'udp-echo']);
    expect(logs.stdout, logs.stderr).toMatch(/udp-echo: listening on udp port 5353/);
    const host = berth(['exec', 'tolerant', '--', 'hostname']);
    expect(host.status, host.stderr).toBe(0);
    expect(host.stdout.trim()).toBe('tolerant');
    const token = crypto.randomBytes(6).toString('hex');
    const cat = berth(['exec', '-i', 'tolerant', '--', 'cat'], token);
    expect(cat.stdout).toBe(token);
    expect(berth(['exec', 'web', '--', 'sh', '-c', 'exit 7']).status).toBe(7);
    const bad = berth(['logs', 'web', '-c', 'nope']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/container nope is not valid for pod web: choose one of httpd/);
  });

  it("a node's underlay link cut stops traffic and makes it Ready=Unknown, tainted unreachable, its pods Ready=False; when it returns, traffic and Ready come back", async () => {
    const n2 = info.nodes.find((n) => n.name === 'node-2')!;
    const echo = pod('udp-echo').status!.podIP;
    const ask = () => execInPod(info, 'node-2', 'tolerant', ['/bin/udp-echo', '-c', echo, '5353', 'cable']);
    const store = new StoreClient({ target: info.store.unix, defaultDeadlineMs: 10_000 });
    try {
      expect(healthy(await nodeView(store, 'node-2'))).toBe(true);
      execFileSync('ip', ['link', 'set', n2.hostVeth, 'down']);
      let back = 0;
      try {
        const cut = Date.now();
        expect(ask()).toMatchObject({ code: 1, out: expect.stringMatching(/no answer/) });
        const down = await until(() => nodeView(store, 'node-2'), silent, NOTICE_MS - (Date.now() - cut));
        expect(down).toMatchObject({ ready: 'Unknown', taints: UNREACHABLE });
        expect(silent(down), JSON.stringify(down)).toBe(true);
        // node-1 kept talking: it stays Ready
        expect(healthy(await nodeView(store, 'node-1'))).toBe(true);
      } finally {
        execFileSync('ip', ['link', 'set', n2.hostVeth, 'up']);
        back = Date.now();
      }
      // The node says Ready again, and its kubelet-agent puts its pods' Ready=True back over the
      // controller's Ready=False as soon as its informer sees the difference (not at a resync).
      const up2 = await until(() => nodeView(store, 'node-2'), recovered, RECOVER_MS);
      expect(recovered(up2), JSON.stringify(up2)).toBe(true);
      console.log(`${mode}: node-2 and its pods Ready again ${Date.now() - back} ms after its link came back`);
      let answer = ask();
      for (let i = 0; i < 10 && answer.out.trim() !== 'cable'; i++) answer = ask();
      expect(answer.out.trim()).toBe('cable');
      // node-2's kubelet-agent renews its lease again
      const renewed = await until(async () => Date.parse((await store.get('leases', 'kube-node-lease', 'node-2')).lease?.spec?.renewTime ?? '') || 0, (t) => t > back, 20_000);
      expect(renewed).toBeGreaterThan(back);
    } finally {
      store.raw.close();
    }
  }, 120_000);

  it("a node's stopped kubelet-agent (SIGSTOP) makes it Ready=Unknown with its pods Ready=False; SIGCONT makes it and its pods Ready again", async () => {
    const sock = info.nodes.find((n) => n.name === 'node-2')!.services.find((s) => s.name === 'kubelet-agent')!.socket;
    const pid = Number(spawnSync('pgrep', ['-f', '--', `--listen ${sock} --state-dir`], { encoding: 'utf8' }).stdout.trim().split('\n')[0]) || 0;
    expect(pid).toBeGreaterThan(0);
    const store = new StoreClient({ target: info.store.unix, defaultDeadlineMs: 10_000 });
    try {
      process.kill(pid, 'SIGSTOP');
      try {
        const down = await until(() => nodeView(store, 'node-2'), silent, NOTICE_MS);
        expect(silent(down), JSON.stringify(down)).toBe(true);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      const resumed = Date.now();
      const up2 = await until(() => nodeView(store, 'node-2'), recovered, RECOVER_MS);
      expect(recovered(up2), JSON.stringify(up2)).toBe(true);
      console.log(`${mode}: node-2 and its pods Ready again ${Date.now() - resumed} ms after SIGCONT`);
    } finally {
      store.raw.close();
    }
  }, 120_000);

  it('berth up rejects a bad --node-monitor-grace-period with exit 2, naming the flag', () => {
    for (const bad of ['soon', '500ms']) {
      const r = spawnSync(process.execPath, [bin, 'up', '--node-monitor-grace-period', bad], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, BERTH_RUN_DIR: path.join(dir, 'bad-run'), BERTH_STATE_DIR: path.join(dir, 'bad-state') } });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/--node-monitor-grace-period/);
    }
  });

  it('every service killed -9 in turn is started again, and no pod is lost or duplicated', async () => {
    const store = new StoreClient({ target: info.store.unix, defaultDeadlineMs: 10_000 });
    try {
      const uids = new Map(pods.map((p) => [p.metadata!.name, p.metadata!.uid]));
      const services = [...info.controlPlane, ...info.nodes.flatMap((n) => n.services.map((x) => ({ name: `${n.name}/${x.name}`, socket: x.socket })))];
      for (const svc of services) {
        const pidOf = () => Number(spawnSync('pgrep', ['-f', '--', `--listen ${svc.socket} --state-dir`], { encoding: 'utf8' }).stdout.trim().split('\n')[0]) || 0;
        const old = pidOf();
        expect(old, svc.name).toBeGreaterThan(0);
        process.kill(old, 'SIGKILL');
        const deadline = Date.now() + 60_000;
        while (Date.now() < deadline && !(pidOf() && pidOf() !== old && (await checkHealth(svc.socket)) === 'SERVING')) await new Promise((r) => setTimeout(r, 300));
        expect(await checkHealth(svc.socket), `${svc.name} did not come back`).toBe('SERVING');
        expect(up!.output()).toContain(`${svc.name} exited unexpectedly`);
      }
      // Every example is back to Running and Ready (or Succeeded), as the same pod (same uid),
      // with no pod added, and each node's runtime runs each container of a Running pod once
      // (the Store and the runtimes agree again).
      const wanted = examplePods(examples()).map((k) => k.split('/')[1]);
      const running = (p: core.Pod) => {
        const sock = info.nodes.find((n) => n.name === p.spec!.nodeName)!.services.find((x) => x.name === 'runtime-shim')!.socket;
        const ps = spawnSync(process.execPath, [bin, 'runtime', '--runtime-endpoint', sock, 'ps', '-q', '--pod', p.metadata!.name, '--state', 'running'], { encoding: 'utf8' });
        return ps.stdout.trim().split('\n').filter(Boolean).length;
      };
      const deadline = Date.now() + 120_000;
      let now: core.Pod[] = [];
      let mismatch: string[] = [];
      while (Date.now() < deadline) {
        now = (await store.list({ resource: 'pods', namespace: 'default' })).items.map((o) => o.pod!);
        mismatch = [
          ...wanted.filter((w) => !now.some((p) => p.metadata?.name === w && podDone(p))).map((w) => `${w}: not Running and Ready`),
          ...now.filter((p) => p.status?.phase === 'Running').map((p) => [p, running(p)] as const).filter(([p, n]) => n !== p.spec!.containers.length)
            .map(([p, n]) => `${p.metadata!.name}: ${n} running containers for ${p.spec!.containers.length}`),
        ];
        if (!mismatch.length) break;
        await new Promise((r) => setTimeout(r, 2000));
      }
      expect(mismatch).toEqual([]);
      expect(now.map((p) => p.metadata!.name).sort()).toEqual([...uids.keys()].sort());
      for (const p of now) expect(p.metadata!.uid, p.metadata!.name).toBe(uids.get(p.metadata!.name));
    } finally {
      store.raw.close();
    }
  }, 600_000);

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

