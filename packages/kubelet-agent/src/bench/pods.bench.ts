// `npm run bench -- pods [--pods N]`: pod start latency on one real node. N pods (default 100) of
// the busybox test image (`sleep`) are bound to the node in the Store at once; a Store watch sees
// each become Running and Ready: p50/p99 from "the pod is in the Store" to Running / Ready, with
// the agent's per-phase trace. Beside it, in the same run, the peer: the same pod shape started
// by a script — `ip netns add`, Debian's CNI bridge + host-local plugins (ADD), `runc run -d` of
// a busybox bundle in that namespace — N at once, each timed from its start to runc's return.
// Anchors: the Kubernetes SLO (p99 <= 5 s) and the target p99 <= 100 ms to Running. Everything
// runs in namespaces made for the run; JSON goes to $BERTH_BENCH_RESULTS. The CPU each process
// spent (the container monitors, which are the shim's children, included) says where the work is.
import { execFile, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { core } from '@berth/api';
import { Informer, unwrap } from '@berth/apimachinery';
import { NodeHarness, TEST_IMAGE } from '../testing/node-harness';
import { intArg } from './args';

const run = promisify(execFile);

interface Stats { p50: number; p99: number; mean: number; max: number; n: number }
function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)] ?? NaN;
  const r = (v: number) => +v.toFixed(1);
  return { p50: r(q(0.5)), p99: r(q(0.99)), mean: r(s.reduce((a, b) => a + b, 0) / s.length), max: r(s[s.length - 1] ?? NaN), n: s.length };
}


/** CPU time (user+system) of a process in ms, from /proc/<pid>/stat. */
function cpuMs(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

function cpuMsOr0(pid: number): number {
  try {
    return cpuMs(pid);
  } catch {
    return 0; // gone meanwhile
  }
}

/** Direct children of a process (all its threads), from /proc. */
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      for (const c of fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/)) if (c !== '') out.push(Number(c));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

async function berth(h: NodeHarness, n: number): Promise<{ running: Stats; ready: Stats; phases: Record<string, Stats>; agentRssMb: number; agentIdleCpuPercent: number; cpuSeconds: Record<string, number>; monitorProcesses: number }> {
  const t0 = new Map<string, number>();
  const running = new Map<string, number>();
  const ready = new Map<string, number>();
  const inf = new Informer(h.store!, { resource: 'pods', namespace: h.namespace });
  let done: () => void = () => undefined;
  const all = new Promise<void>((r) => (done = r));
  const seen = (o: core.Object) => {
    const p = unwrap(o).value as core.Pod;
    const name = p.metadata!.name;
    const now = performance.now();
    if (p.status?.phase === 'Running' && !running.has(name)) running.set(name, now);
    if (p.status?.conditions.some((c) => c.type === 'Ready' && c.status === 'True') && !ready.has(name)) ready.set(name, now);
    if (ready.size === n) done();
  };
  inf.on('add', seen);
  inf.on('update', (_old, o) => seen(o));
  await inf.start();
  // CPU each process spends on the start-up of the N pods: where the work is.
  const procs: Record<string, number> = { agent: h.agent!.proc.pid!, 'runtime-shim': h.runtimeProc!.proc.pid!, 'cni-manager': h.cniProc!.proc.pid!, store: h.storeProc!.proc.pid! };
  const cpu0 = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, cpuMs(pid)]));
  // The container monitors are the shim's children (detached, never reaped while their
  // containers run): their CPU is in no process counted above.
  const shimPid = procs['runtime-shim']!;
  const monitorCpu0 = new Map(childPids(shimPid).map((p) => [p, cpuMs(p)]));
  const pod = (i: number) => core.Pod.fromPartial({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `p${i}` }, spec: { terminationGracePeriodSeconds: 0, containers: [{ name: 'main', image: TEST_IMAGE, imagePullPolicy: 'IfNotPresent', command: ['sleep', '3600'] }] } });
  // All at once: each pod's clock starts when the Store has it (the create call returned).
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    await h.createPod(pod(i));
    t0.set(`p${i}`, performance.now());
  }));
  const limitS = 120 + n;
  const timeout = new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`only ${ready.size}/${n} pods Ready after ${limitS} s`)), limitS * 1000).unref());
  await Promise.race([all, timeout]);
  inf.stop();
  const cpuSeconds = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, +((cpuMs(pid) - cpu0[k]!) / 1000).toFixed(2)]));
  const monitors = childPids(shimPid);
  cpuSeconds['monitors'] = +(monitors.reduce((a, p) => a + cpuMsOr0(p) - (monitorCpu0.get(p) ?? 0), 0) / 1000).toFixed(2);
  const lat = (m: Map<string, number>) => [...m].map(([k, v]) => Math.max(0, v - t0.get(k)!));
  // The agent's own per-phase trace of each pod (annotation written once Ready).
  const phases: Record<string, number[]> = {};
  await new Promise((r) => setTimeout(r, 1000));
  for (const o of (await h.store!.list({ resource: 'pods', namespace: h.namespace })).items) {
    const a = o.pod!.metadata!.annotations['berth.dev/startup-trace'];
    if (!a) continue;
    for (const [k, v] of Object.entries(JSON.parse(a).phasesMs as Record<string, number>)) (phases[k] ??= []).push(v);
  }
  const pid = h.agent!.proc.pid!;
  const rss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  // Idle cost with every pod running: the agent's CPU over 10 s in which nothing changes.
  const c0 = cpuMs(pid);
  await new Promise((r) => setTimeout(r, 10_000));
  const idle = ((cpuMs(pid) - c0) / 10_000) * 100;
  return { running: stats(lat(running)), ready: stats(lat(ready)), phases: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, stats(v)])), agentRssMb: +rss.toFixed(1), agentIdleCpuPercent: +idle.toFixed(2), cpuSeconds, monitorProcesses: monitors.length };
}

/** The peer: netns + CNI bridge/host-local ADD + runc run -d, per pod, all at once. */
async function peer(h: NodeHarness, n: number): Promise<Stats> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-pods-peer-'));
  fs.chmodSync(work, 0o755);
  const rootfs = path.join(work, 'rootfs');
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc']) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  fs.symlinkSync('busybox', path.join(rootfs, 'bin', 'sleep'));
  execFileSync('runc', ['spec'], { cwd: work });
  const base = JSON.parse(fs.readFileSync(path.join(work, 'config.json'), 'utf8'));
  const conf = JSON.stringify({ cniVersion: '1.0.0', name: `peer${h.id}`, type: 'bridge', bridge: `kpb${h.id}`, isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: '10.79.0.0/16' }]], dataDir: path.join(work, 'ipam') } });
  const cni = (cmd: 'ADD' | 'DEL', id: string, ns: string) => new Promise<void>((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', h.netns, '/usr/lib/cni/bridge'], { env: { ...process.env, CNI_COMMAND: cmd, CNI_CONTAINERID: id, CNI_NETNS: `/run/netns/${ns}`, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`CNI ${cmd} ${id}: exit ${code}: ${out}`))));
    p.stdin.end(conf);
  });
  const root = path.join(work, 'runc-root');
  const ids = Array.from({ length: n }, (_, i) => ({ id: `kapeer-${h.id}-${i}`, ns: `kap-${h.id}-${i}`, bundle: path.join(work, `b${i}`) }));
  for (const p of ids) {
    fs.mkdirSync(p.bundle);
    const spec = structuredClone(base);
    spec.root = { path: rootfs, readonly: true };
    spec.process.terminal = false;
    spec.process.args = ['sleep', '3600'];
    spec.process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }];
    spec.hostname = p.id;
    spec.linux.namespaces = spec.linux.namespaces.map((x: { type: string }) => (x.type === 'network' ? { type: 'network', path: `/run/netns/${p.ns}` } : x));
    spec.linux.cgroupsPath = `${h.cgroupParent}-peer/${p.id}`;
    fs.writeFileSync(path.join(p.bundle, 'config.json'), JSON.stringify(spec));
  }
  const lat: number[] = [];
  try {
    await Promise.all(ids.map(async (p) => {
      const t = performance.now();
      await run('ip', ['netns', 'add', p.ns]);
      await cni('ADD', p.id, p.ns);
      // stdio to /dev/null: a detached container would hold a pipe open long after runc returned.
      await new Promise<void>((resolve, reject) => {
        const r = spawn('runc', ['--root', root, 'run', '-d', '--bundle', p.bundle, p.id], { stdio: 'ignore' });
        r.on('error', reject);
        r.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`runc run ${p.id}: exit ${code}`))));
      });
      lat.push(performance.now() - t);
    }));
  } finally {
    for (const p of ids) {
      await run('runc', ['--root', root, 'delete', '-f', p.id]).catch(() => undefined);
      await cni('DEL', p.id, p.ns).catch(() => undefined);
      await run('ip', ['netns', 'del', p.ns]).catch(() => undefined);
    }
    await run('ip', ['-n', h.netns, 'link', 'del', `kpb${h.id}`]).catch(() => undefined);
    fs.rmSync(work, { recursive: true, force: true });
  }
  return stats(lat);
}

async function main(): Promise<void> {
  const n = intArg('pods', 100);
  const h = new NodeHarness();
  let failed = false;
  try {
    // Room for every pod of the run (the node admits --max-pods, 110 by default).
    const missing = await h.start({ podCidr: '10.78.0.0/16', agentArgs: ['--max-pods', String(Math.max(110, n + 10))] });
    if (missing) throw new Error(`cannot run: ${missing}`);
    const loadStart = os.loadavg();
    const load = (l: number[]) => l.map((x) => x.toFixed(1)).join(' ');
    console.log(`pods bench: ${n} pods at once on one node (${os.cpus().length} cpus, load ${load(loadStart)})`);
    const b = await berth(h, n);
    const p = await peer(h, n);
    const ratio = (x: number, y: number) => +(x / y).toFixed(2);
    console.log(`\n${'case'.padEnd(44)}${'p50 ms'.padStart(10)}${'p99 ms'.padStart(10)}${'max ms'.padStart(10)}`);
    const row = (k: string, s: Stats) => console.log(`${k.padEnd(44)}${s.p50.toFixed(1).padStart(10)}${s.p99.toFixed(1).padStart(10)}${s.max.toFixed(1).padStart(10)}`);
    row('berth: in the Store -> Running (watch)', b.running);
    row('berth: in the Store -> Ready (watch)', b.ready);
    row('peer: netns + CNI bridge ADD + runc run -d', p);
    console.log('\nberth per-phase (agent trace, per pod):');
    for (const [k, s] of Object.entries(b.phases)) row(`  ${k}`, s);
    console.log(`\nRunning p50 berth/peer = ${ratio(b.running.p50, p.p50)}x, p99 = ${ratio(b.running.p99, p.p99)}x; target p99 <= 100 ms: ${b.running.p99 <= 100 ? 'met' : 'NOT met'}; Kubernetes SLO p99 <= 5000 ms: ${b.running.p99 <= 5000 ? 'met' : 'NOT met'}`);
    console.log(`CPU seconds spent while the pods started: ${Object.entries(b.cpuSeconds).map(([k, v]) => `${k} ${v}`).join(', ')} (${b.monitorProcesses} container monitor processes)`);
    // The machine is shared: the load may move during the run, and the wall times with it.
    console.log(`load at the end: ${load(os.loadavg())}`);
    console.log(`agent with ${n} pods: RSS ${b.agentRssMb} MiB, idle CPU ${b.agentIdleCpuPercent} % of one core`);
    const out = process.env['BERTH_BENCH_RESULTS'];
    if (out) {
      fs.mkdirSync(out, { recursive: true });
      const file = path.join(out, `pods-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
      fs.writeFileSync(file, JSON.stringify({ bench: 'pods', date: new Date().toISOString(), pods: n, cpus: os.cpus().length, kernel: os.release(), load: loadStart, loadEnd: os.loadavg(), berth: b, peer: { name: 'ip netns + CNI bridge/host-local + runc run -d', ...p }, ratios: { runningP50VsPeer: ratio(b.running.p50, p.p50), runningP99VsPeer: ratio(b.running.p99, p.p99) }, targets: { runningP99Ms: 100, sloP99Ms: 5000 } }, null, 2) + '\n');
      console.log(`results: ${file}`);
    }
  } catch (e) {
    failed = true;
    console.error(`pods bench failed: ${(e as Error).message}`);
  } finally {
    await h.stop().catch((e) => { failed = true; console.error((e as Error).message); });
    await run('sh', ['-c', `for c in /sys/fs/cgroup/*/${h.cgroupParent}-peer; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + ; done; true`]).catch(() => undefined);
  }
  process.exit(failed ? 1 : 0);
}

void main();
