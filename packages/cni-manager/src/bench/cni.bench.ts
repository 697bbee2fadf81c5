// `npm run bench -- cni [pods]`: SetUpPod / TearDownPod through cni-manager's gRPC API against
// Debian's bridge + host-local plugins, driven by Berth's CNI executor and by direct exec, in
// the same run, interleaved pod by pod, beside the floors under Berth's figures: a no-op gRPC
// call and the kernel work of a bridge-mode SetUp done from C with raw netlink
// (netlink-floor.c). Everything runs inside a node namespace made for the run (the bench
// re-executes itself there), so the machine's own network is never touched.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { cni } from '@berth/api';
import { createClient, createH2UnaryClient, startServiceProcess, waitServing } from '@berth/common';
import { CniExecutor } from '../cni/executor';
import { Rtnl } from '@berth/native';
import { hostVethName, PodNetwork } from '../network';
import { netnsPath, Topology } from '../testing/topology';
import { NetlinkFloor, type FloorAdd } from './netlink-floor';

const BIN = path.resolve(__dirname, '..', 'bin', 'berth-cni-manager.js');
const FLOOR = "kernel floor (C, raw netlink, Berth's bridge-mode ops)";
/** The same operations, timed by the C program itself around the kernel work (no pipe hop). */
const FLOOR_SELF = `${FLOOR}, self-timed`;
const NOOP_LEAN = 'grpc-noop-status-lean-client';
const PLUGINS = ['debian-via-executor', 'debian-direct-exec'] as const;

interface Stats { p50: number; p99: number; mean: number; n: number; cpuMsPerOp?: number }
/** /proc/<pid>/stat counts CPU time in clock ticks of 10 ms (USER_HZ 100). */
const TICK_MS = 10;
function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return { p50: +q(0.5).toFixed(3), p99: +q(0.99).toFixed(3), mean: +(s.reduce((a, b) => a + b, 0) / s.length).toFixed(3), n: s.length };
}
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

interface Impl {
  name: string;
  /** A process doing this implementation's work besides the bench itself (the cni-manager server). */
  pid?: number;
  add(i: number, netns: string): Promise<void>;
  del(i: number, netns: string): Promise<void>;
  /** Waits, untimed, until the kernel is done with a DEL answered early (berth's background unregistration). */
  settle(i: number): Promise<void>;
}

// The implementations are measured interleaved, pod by pod, in an order that rotates per pod:
// on this shared machine the load moves by several times within a minute, and measuring one
// implementation's 200 pods after another's would compare different minutes, not the code.
// Each implementation has its own pod namespaces (one pod per namespace, as in a cluster).
// After each DEL the next measurement waits until the kernel has finished the previous one,
// so no implementation's leftover work lands in another's timing.
async function inner(podSets: string[][]): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cni-bench-'));
  const samples: Record<string, { add: number[]; del: number[]; addCpu: number; delCpu: number }> = {};
  const cleanups: Array<() => Promise<void>> = [];
  const host = Rtnl.open();
  const gone = async (link: string): Promise<void> => {
    for (let t = 0; t < 2000 && (await host.link(link)); t++) await new Promise((r) => setTimeout(r, 1));
  };
  try {
    // 1. Berth through gRPC (a separate cni-manager process, in this namespace).
    const sock = path.join(dir, 'cni.sock');
    // BERTH_BENCH_SERVER_NODE_ARGS: flags for the server's node, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to see where its time goes.
    const nodeArgs = (process.env['BERTH_BENCH_SERVER_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
    const svc = startServiceProcess(BIN, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--pod-cidr', '10.90.0.0/16', '--log-level', 'warn'], process.env, { nodeArgs });
    cleanups.push(async () => { await svc.stop(); });
    if ((await waitServing(`unix://${sock}`)) !== 'SERVING') throw new Error(`cni-manager did not start: ${svc.output()}`);
    const client = createClient(cni.NetworkServiceClient, { target: `unix://${sock}` });
    cleanups.push(async () => client.close());
    const call = <T>(m: string, req: unknown): Promise<T> => new Promise((res, rej) => (client as unknown as Record<string, Function>)[m]!(req, (e: ServiceError | null, r: T) => (e ? rej(e) : res(r))));
    await call('status', {}); // warm the channel
    const grpc: Impl = {
      name: 'berth-grpc',
      pid: svc.proc.pid!,
      add: async (i, ns) => { await call('setUpPod', cni.SetUpPodRequest.fromPartial({ sandboxId: `b${i}`, podName: `p${i}`, podNamespace: 'bench', netnsPath: netnsPath(ns) })); },
      del: async (i, ns) => { await call('tearDownPod', cni.TearDownPodRequest.fromPartial({ sandboxId: `b${i}`, netnsPath: netnsPath(ns) })); },
      settle: (i) => gone(hostVethName(`b${i}`)),
    };
    // The same server through Berth's lean node:http2 gRPC client (what a caller on the pod
    // start path can use instead of grpc-js's client; same wire protocol).
    const lean = createH2UnaryClient(cni.NetworkServiceService, { target: `unix://${sock}` });
    cleanups.push(async () => lean.close());
    await lean.status({});
    const grpcLean: Impl = {
      name: 'berth-grpc-lean-client',
      pid: svc.proc.pid!,
      add: async (i, ns) => { await lean.setUpPod(cni.SetUpPodRequest.fromPartial({ sandboxId: `l${i}`, podName: `l${i}`, podNamespace: 'bench', netnsPath: netnsPath(ns) })); },
      del: async (i, ns) => { await lean.tearDownPod(cni.TearDownPodRequest.fromPartial({ sandboxId: `l${i}`, netnsPath: netnsPath(ns) })); },
      settle: (i) => gone(hostVethName(`l${i}`)),
    };
    // The floor under the gRPC figures: a call that does nothing (Status), between the same two processes.
    const noop: Impl = { name: 'grpc-noop-status', pid: svc.proc.pid!, add: async () => { await call('status', {}); }, del: async () => { await call('status', {}); }, settle: async () => undefined };
    const noopLean: Impl = { name: 'grpc-noop-status-lean-client', pid: svc.proc.pid!, add: async () => { await lean.status({}); }, del: async () => { await lean.status({}); }, settle: async () => undefined };

    // 1b. The same library in this process (no gRPC, no second process): where the time goes.
    const net = new PodNetwork({ mode: 'bridge', podCidr: '10.92.0.0/16', stateDir: path.join(dir, 'inproc'), bridgeName: 'berthin0', probeCapabilities: false });
    await net.start();
    cleanups.push(() => net.close());
    const lib: Impl = {
      name: 'berth-in-process',
      add: async (i, ns) => { await net.setUp({ podUid: '', podNamespace: 'bench', podName: `p${i}`, sandboxId: `i${i}`, netnsPath: netnsPath(ns), interfaceName: 'eth0', annotations: {} }); },
      del: async (i) => { await net.tearDown({ sandboxId: `i${i}` }); },
      settle: () => net.drain(),
    };

    // 2. Debian bridge + host-local through Berth's CNI executor; 3. the same plugins by direct exec.
    const conf = { cniVersion: '1.0.0', name: 'benchnet', plugins: [{ type: 'bridge', bridge: 'cnibench0', isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: '10.91.0.0/16' }]], dataDir: path.join(dir, 'ipam') } }] };
    fs.mkdirSync(path.join(dir, 'conf'));
    fs.writeFileSync(path.join(dir, 'conf', '10-bench.conflist'), JSON.stringify(conf));
    const ex = new CniExecutor({ confDir: path.join(dir, 'conf'), binDirs: ['/usr/lib/cni'], cacheDir: path.join(dir, 'cache') });
    const executor: Impl = {
      name: 'debian-via-executor',
      add: async (i, ns) => { await ex.add({ containerId: `e${i}`, netns: netnsPath(ns), ifName: 'eth0' }); },
      del: async (i, ns) => { await ex.del({ containerId: `e${i}`, netns: netnsPath(ns), ifName: 'eth0' }); },
      settle: async () => undefined,
    };
    // Its own bridge and range: its pods live beside the executor's.
    const plugin = { ...conf.plugins[0], cniVersion: '1.0.0', name: 'benchnet', bridge: 'cnibench1', ipam: { type: 'host-local', ranges: [[{ subnet: '10.93.0.0/16' }]], dataDir: path.join(dir, 'ipam-direct') } };
    const run = (command: string, i: number, ns: string): Promise<void> => new Promise((resolve, reject) => {
      const child = spawn('/usr/lib/cni/bridge', [], { env: { PATH: process.env['PATH'], CNI_COMMAND: command, CNI_CONTAINERID: `d${i}`, CNI_NETNS: netnsPath(ns), CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' }, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`bridge ${command}: ${out}`))));
      child.stdin.end(JSON.stringify(plugin));
    });
    const direct: Impl = { name: 'debian-direct-exec', add: (i, ns) => run('ADD', i, ns), del: (i, ns) => run('DEL', i, ns), settle: async () => undefined };

    // 4. The kernel floor: Berth's bridge-mode netlink work for each pod, from one C process
    // started here (not per pod), on a bridge and pod network of its own (10.94.0.0/16, apart
    // from the others' 10.90-10.93), its bridge made as PodNetwork makes berth0 (pinned MAC).
    const floorBridge = await host.addBridge('bkfloor0', { mtu: 1500, mac: '0a:58:0a:5e:00:01' });
    cleanups.push(async () => { await host.deleteLink(floorBridge.index); });
    await host.addAddress(floorBridge.index, '10.94.0.1/16');
    await host.setLink(floorBridge.index, { up: true });
    const nf = await NetlinkFloor.start(dir, 'bkfloor0', '10.94.0.0/16');
    cleanups.push(() => nf.stop());
    const floorSelf = { add: [] as number[], del: [] as number[] };
    const addParts: FloorAdd[] = [];
    const floor: Impl = {
      name: FLOOR,
      pid: nf.pid,
      add: async (i, ns) => { const a = await nf.add(i, netnsPath(ns)); floorSelf.add.push(a.total); addParts.push(a); },
      del: async (i, ns) => { floorSelf.del.push(await nf.del(i, netnsPath(ns))); },
      settle: (i) => gone(NetlinkFloor.hostName(i)),
    };

    // Those that make pods first: each has its own set of pod namespaces (see nsOf).
    const impls = [grpc, grpcLean, lib, executor, direct, floor, noop, noopLean];
    for (const im of impls) samples[im.name] = { add: [], del: [], addCpu: 0, delCpu: 0 };
    const pods = podSets[0]!.length;
    // A fresh random order per pod (seeded: runs are comparable), so no implementation is
    // always measured right after the same other one and its leftovers.
    let seed = 0x9e3779b9;
    const rand = (): number => { seed = (seed * 1664525 + 1013904223) >>> 0; return seed / 2 ** 32; };
    const shuffled = (): Impl[] => {
      const a = [...impls];
      for (let k = a.length - 1; k > 0; k--) { const j = Math.floor(rand() * (k + 1)); [a[k], a[j]] = [a[j]!, a[k]!]; }
      return a;
    };
    const nsOf = (im: Impl, i: number): string => podSets[Math.min(impls.indexOf(im), podSets.length - 1)]![i]!;
    // CPU time (user+system, ms) the operation made the machine spend in processes: this one,
    // the plugins it ran and waited for, and the cni-manager server. Unlike wall time it hardly
    // depends on what else runs on the machine. (Kernel work in kworkers is nobody's.)
    const cpu = (pid?: number): number => {
      const u = process.cpuUsage();
      const self = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
      let total = (u.user + u.system) / 1000 + (Number(self[13]) + Number(self[14])) * TICK_MS; // cutime, cstime
      if (pid) {
        const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        total += (Number(f[11]) + Number(f[12])) * TICK_MS; // utime, stime
      }
      return total;
    };
    for (const phase of ['add', 'del'] as const) {
      for (let i = 0; i < pods; i++) {
        for (const im of shuffled()) {
          const c0 = cpu(im.pid);
          const t0 = process.hrtime.bigint();
          await im[phase](i, nsOf(im, i));
          samples[im.name]![phase].push(ms(t0));
          if (phase === 'del') await im.settle(i);
          samples[im.name]![phase === 'add' ? 'addCpu' : 'delCpu'] += cpu(im.pid) - c0;
        }
      }
    }
    // The self-timed row is the same operations as the floor row: same CPU.
    samples[FLOOR_SELF] = { ...floorSelf, addCpu: samples[FLOOR]!.addCpu, delCpu: samples[FLOOR]!.delCpu };
    const med = (xs: number[]): number => stats(xs).p50;
    process.stdout.write(`FLOOR_PARTS ${JSON.stringify({ create: med(addParts.map((a) => a.create)), nodeBatch: med(addParts.map((a) => a.nodeBatch)), podBatch: med(addParts.map((a) => a.podBatch)), arp: med(addParts.map((a) => a.arp)), rest: med(addParts.map((a) => a.total - a.create - a.nodeBatch - a.podBatch - a.arp)) })}\n`);
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    host.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const results = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, {
    add: { ...stats(v.add), cpuMsPerOp: +(v.addCpu / v.add.length).toFixed(3) },
    del: { ...stats(v.del), cpuMsPerOp: +(v.delCpu / v.del.length).toFixed(3) },
  }]));
  process.stdout.write(`RESULTS ${JSON.stringify(results)}\n`);
}

/**
 * The floor under Berth's ADD through gRPC: the cheapest call between the two processes (the
 * no-op Status through the lean client) plus the kernel work alone (the C floor, self-timed),
 * next to the target, 0.1x the plugins' ADD median. Berth's DEL answers before its kernel work
 * (done in the background), so its floor is the no-op call; the C DEL is that background work.
 */
function floorOf(results: Record<string, { add: Stats; del: Stats }>, parts: Record<string, number> | null): { lines: string[]; json: Record<string, unknown> } {
  const noop = results[NOOP_LEAN]!;
  const self = results[FLOOR_SELF]!;
  const exchanged = results[FLOOR]!;
  const lean = results['berth-grpc-lean-client']!;
  const addFloor = noop.add.p50 + self.add.p50;
  const lines = [
    `kernel floor ADD p50: ${self.add.p50.toFixed(3)} ms in the C program (${exchanged.add.p50.toFixed(3)} ms with its stdin/stdout exchange), DEL p50 ${self.del.p50.toFixed(3)} ms (${exchanged.del.p50.toFixed(3)} ms)`,
    ...(parts ? [`  ADD parts (p50 ms): veth create ${parts['create']!.toFixed(3)}, node batch ${parts['nodeBatch']!.toFixed(3)}, pod batch ${parts['podBatch']!.toFixed(3)}, gratuitous ARP ${parts['arp']!.toFixed(3)}, netns/socket opening ${parts['rest']!.toFixed(3)}`] : []),
    `ADD floor through gRPC = no-op lean call ${noop.add.p50.toFixed(3)} + C floor ${self.add.p50.toFixed(3)} = ${addFloor.toFixed(3)} ms; berth lean-client ADD ${lean.add.p50.toFixed(3)} ms is ${(lean.add.p50 - addFloor).toFixed(3)} ms above it`,
  ];
  const json: Record<string, unknown> = { noopLeanAddP50: noop.add.p50, cFloorAddP50: self.add.p50, cFloorAddP50Exchanged: exchanged.add.p50, cFloorDelP50: self.del.p50, grpcAddFloorP50: +addFloor.toFixed(3), berthLeanAddAboveFloor: +(lean.add.p50 - addFloor).toFixed(3), addParts: parts };
  for (const peer of PLUGINS) {
    const p = results[peer]!;
    const target = 0.1 * p.add.p50;
    lines.push(`  vs ${peer}: target 0.1x ADD = ${target.toFixed(3)} ms; the floor is ${(addFloor / p.add.p50).toFixed(3)}x its ADD (${addFloor <= target ? `under the target by ${(target - addFloor).toFixed(3)} ms: all of Berth's own work above the kernel and the cheapest call, now ${(lean.add.p50 - addFloor).toFixed(3)} ms, would have to fit in that` : `${(addFloor / target).toFixed(2)}x the target: not reachable with Node + gRPC here, whatever Berth does`}); the kernel alone ${(self.add.p50 / p.add.p50).toFixed(3)}x, the no-op call alone ${(noop.add.p50 / p.add.p50).toFixed(3)}x`);
    json[peer] = { addP50: p.add.p50, target01x: +target.toFixed(3), headroomMs: +(target - addFloor).toFixed(3), floorRatio: +(addFloor / p.add.p50).toFixed(3), kernelRatio: +(self.add.p50 / p.add.p50).toFixed(3), noopRatio: +(noop.add.p50 / p.add.p50).toFixed(3) };
  }
  lines.push(`DEL: berth answers before its kernel work (the C DEL, ${self.del.p50.toFixed(3)} ms, is what it does in the background), so its floor through gRPC is the no-op call, ${noop.del.p50.toFixed(3)} ms`);
  return { lines, json };
}

async function main(): Promise<void> {
  if (process.argv[2] === '--inner') {
    await inner(JSON.parse(process.argv[3]!) as string[][]);
    return;
  }
  const n = Number(process.argv[2] ?? 200);
  const topo = new Topology();
  try {
    const node = topo.netns('bench');
    // One set of pod namespaces per implementation that makes pods (berth gRPC with each client, in-process, executor, direct, the kernel floor).
    const podSets = Array.from({ length: 6 }, () => Array.from({ length: n }, () => topo.netns('p')));
    const load = os.loadavg()[0]!.toFixed(1);
    console.log(`cni bench: ${n} pods per implementation, implementations interleaved pod by pod, every SetUp then every TearDown, inside netns ${node} (${os.cpus().length} cpus, load ${load})`);
    const r = spawnSync('ip', ['netns', 'exec', node, process.execPath, __filename, '--inner', JSON.stringify(podSets)], { encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] });
    const line = r.stdout.split('\n').find((l) => l.startsWith('RESULTS '));
    if (!line) throw new Error(`bench failed (exit ${r.status}): ${r.stdout.slice(-2000)}`);
    const results = JSON.parse(line.slice(8)) as Record<string, { add: Stats; del: Stats }>;
    const partsLine = r.stdout.split('\n').find((l) => l.startsWith('FLOOR_PARTS '));
    const floorParts = partsLine ? JSON.parse(partsLine.slice(12)) as Record<string, number> : null;
    const berth = results['berth-grpc']!;
    const rows = Object.entries(results).map(([name, v]) => ({
      impl: name, 'add p50 ms': v.add.p50, 'add p99 ms': v.add.p99, 'add cpu ms/op': v.add.cpuMsPerOp, 'del p50 ms': v.del.p50, 'del p99 ms': v.del.p99, 'del cpu ms/op': v.del.cpuMsPerOp,
      'berth/this add p50': +(berth.add.p50 / v.add.p50).toFixed(3), 'berth/this del p50': +(berth.del.p50 / v.del.p50).toFixed(3),
    }));
    console.table(rows);
    console.log(`load average at the end: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} (1, 5, 15 min)`);
    for (const client of ['berth-grpc', 'berth-grpc-lean-client']) {
      const b = results[client]!;
      for (const peer of ['debian-via-executor', 'debian-direct-exec']) {
        const v = results[peer]!;
        console.log(`ratio ${client}/${peer}: ADD p50 ${(b.add.p50 / v.add.p50).toFixed(3)}x, DEL p50 ${(b.del.p50 / v.del.p50).toFixed(3)}x (target <= 0.1x); CPU per op ADD ${(b.add.cpuMsPerOp! / v.add.cpuMsPerOp!).toFixed(3)}x, DEL ${(b.del.cpuMsPerOp! / v.del.cpuMsPerOp!).toFixed(3)}x`);
      }
    }
    const derived = floorOf(results, floorParts);
    for (const l of derived.lines) console.log(l);
    const outDir = process.env['BERTH_BENCH_RESULTS'];
    if (outDir) {
      fs.mkdirSync(outDir, { recursive: true });
      const file = path.join(outDir, 'cni.json');
      fs.writeFileSync(file, JSON.stringify({ bench: 'cni', date: new Date().toISOString(), pods: n, cpus: os.cpus().length, loadavg: os.loadavg(), kernel: os.release(), method: 'interleaved per pod in a seeded random order; DEL timed to the answer, then settled (untimed) until the kernel is done; cpuMsPerOp = user+system CPU of the bench process, the plugins it waited for and the cni-manager server (for the kernel floor: the C program), per operation (DEL including the settling); the kernel floor row is timed by the bench around the stdin/stdout exchange, its self-timed row by the C program around the kernel work alone', results, floor: derived.json }, null, 2));
      console.log(`wrote ${file}`);
    }
  } finally {
    topo.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
