// `npm run bench -- cni [pods]`: SetUpPod / TearDownPod through cni-manager's gRPC API against
// Debian's bridge + host-local plugins, driven by Berth's CNI executor and by direct exec, on
// the same pods in the same run. Everything runs inside a node namespace made for the run (the
// bench re-executes itself there), so the machine's own network is never touched.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { cni } from '@berth/api';
import { createClient, startServiceProcess, waitServing } from '@berth/common';
import { CniExecutor } from '../cni/executor';
import { PodNetwork } from '../network';
import { netnsPath, Topology } from '../testing/topology';

const BIN = path.resolve(__dirname, '..', 'bin', 'berth-cni-manager.js');

interface Stats { p50: number; p99: number; mean: number; n: number }
function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return { p50: +q(0.5).toFixed(3), p99: +q(0.99).toFixed(3), mean: +(s.reduce((a, b) => a + b, 0) / s.length).toFixed(3), n: s.length };
}
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

async function inner(pods: string[]): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cni-bench-'));
  const results: Record<string, { add: Stats; del: Stats }> = {};
  try {
    // 1. Berth through gRPC (a separate cni-manager process, in this namespace).
    const sock = path.join(dir, 'cni.sock');
    const svc = startServiceProcess(BIN, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--pod-cidr', '10.90.0.0/16', '--log-level', 'warn']);
    if ((await waitServing(`unix://${sock}`)) !== 'SERVING') throw new Error(`cni-manager did not start: ${svc.output()}`);
    const client = createClient(cni.NetworkServiceClient, { target: `unix://${sock}` });
    const call = <T>(m: string, req: unknown): Promise<T> => new Promise((res, rej) => (client as unknown as Record<string, Function>)[m]!(req, (e: ServiceError | null, r: T) => (e ? rej(e) : res(r))));
    await call('status', {}); // warm the channel
    const add: number[] = [];
    const del: number[] = [];
    for (const [i, p] of pods.entries()) {
      const t0 = process.hrtime.bigint();
      await call('setUpPod', cni.SetUpPodRequest.fromPartial({ sandboxId: `b${i}`, podName: `p${i}`, podNamespace: 'bench', netnsPath: netnsPath(p) }));
      add.push(ms(t0));
    }
    for (const [i, p] of pods.entries()) {
      const t0 = process.hrtime.bigint();
      await call('tearDownPod', cni.TearDownPodRequest.fromPartial({ sandboxId: `b${i}`, netnsPath: netnsPath(p) }));
      del.push(ms(t0));
    }
    client.close();
    await svc.stop();
    results['berth-grpc'] = { add: stats(add), del: stats(del) };

    // 1b. The same library in this process (no gRPC, no second process): where the time goes.
    const net = new PodNetwork({ mode: 'bridge', podCidr: '10.92.0.0/16', stateDir: path.join(dir, 'inproc'), bridgeName: 'berthin0', probeCapabilities: false });
    await net.start();
    const iAdd: number[] = [];
    const iDel: number[] = [];
    for (const [i, p] of pods.entries()) {
      const t0 = process.hrtime.bigint();
      await net.setUp({ podUid: '', podNamespace: 'bench', podName: `p${i}`, sandboxId: `i${i}`, netnsPath: netnsPath(p), interfaceName: 'eth0', annotations: {} });
      iAdd.push(ms(t0));
    }
    for (const [i] of pods.entries()) {
      const t0 = process.hrtime.bigint();
      await net.tearDown({ sandboxId: `i${i}` });
      iDel.push(ms(t0));
    }
    await net.close();
    results['berth-in-process'] = { add: stats(iAdd), del: stats(iDel) };

    // 2. Debian bridge + host-local through Berth's CNI executor; 3. the same plugins by direct exec.
    const conf = { cniVersion: '1.0.0', name: 'benchnet', plugins: [{ type: 'bridge', bridge: 'cnibench0', isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: '10.91.0.0/16' }]], dataDir: path.join(dir, 'ipam') } }] };
    fs.mkdirSync(path.join(dir, 'conf'));
    fs.writeFileSync(path.join(dir, 'conf', '10-bench.conflist'), JSON.stringify(conf));
    const ex = new CniExecutor({ confDir: path.join(dir, 'conf'), binDirs: ['/usr/lib/cni'], cacheDir: path.join(dir, 'cache') });
    const eAdd: number[] = [];
    const eDel: number[] = [];
    for (const [i, p] of pods.entries()) {
      const t0 = process.hrtime.bigint();
      await ex.add({ containerId: `e${i}`, netns: netnsPath(p), ifName: 'eth0' });
      eAdd.push(ms(t0));
    }
    for (const [i, p] of pods.entries()) {
      const t0 = process.hrtime.bigint();
      await ex.del({ containerId: `e${i}`, netns: netnsPath(p), ifName: 'eth0' });
      eDel.push(ms(t0));
    }
    results['debian-via-executor'] = { add: stats(eAdd), del: stats(eDel) };

    const plugin = { ...conf.plugins[0], cniVersion: '1.0.0', name: 'benchnet' };
    const run = (command: string, i: number, p: string): Promise<void> => new Promise((resolve, reject) => {
      const child = spawn('/usr/lib/cni/bridge', [], { env: { PATH: process.env['PATH'], CNI_COMMAND: command, CNI_CONTAINERID: `d${i}`, CNI_NETNS: netnsPath(p), CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' }, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`bridge ${command}: ${out}`))));
      child.stdin.end(JSON.stringify(plugin));
    });
    const dAdd: number[] = [];
    const dDel: number[] = [];
    for (const [i, p] of pods.entries()) {
      const t0 = process.hrtime.bigint();
      await run('ADD', i, p);
      dAdd.push(ms(t0));
    }
    for (const [i, p] of pods.entries()) {
      const t0 = process.hrtime.bigint();
      await run('DEL', i, p);
      dDel.push(ms(t0));
    }
    results['debian-direct-exec'] = { add: stats(dAdd), del: stats(dDel) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`RESULTS ${JSON.stringify(results)}\n`);
}

async function main(): Promise<void> {
  if (process.argv[2] === '--inner') {
    await inner(process.argv.slice(3));
    return;
  }
  const n = Number(process.argv[2] ?? 200);
  const topo = new Topology();
  try {
    const node = topo.netns('bench');
    const pods = Array.from({ length: n }, () => topo.netns('p'));
    console.log(`cni bench: ${n} pods, sequential SetUp then TearDown, inside netns ${node} (${os.cpus().length} cpus)`);
    const r = spawnSync('ip', ['netns', 'exec', node, process.execPath, __filename, '--inner', ...pods], { encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] });
    const line = r.stdout.split('\n').find((l) => l.startsWith('RESULTS '));
    if (!line) throw new Error(`bench failed (exit ${r.status}): ${r.stdout.slice(-2000)}`);
    const results = JSON.parse(line.slice(8)) as Record<string, { add: Stats; del: Stats }>;
    const berth = results['berth-grpc']!;
    const rows = Object.entries(results).map(([name, v]) => ({
      impl: name, 'add p50 ms': v.add.p50, 'add p99 ms': v.add.p99, 'del p50 ms': v.del.p50, 'del p99 ms': v.del.p99,
      'berth/this add p50': +(berth.add.p50 / v.add.p50).toFixed(3), 'berth/this del p50': +(berth.del.p50 / v.del.p50).toFixed(3),
    }));
    console.table(rows);
    for (const peer of ['debian-via-executor', 'debian-direct-exec']) {
      const v = results[peer]!;
      console.log(`ratio berth/${peer}: ADD p50 ${(berth.add.p50 / v.add.p50).toFixed(3)}x, DEL p50 ${(berth.del.p50 / v.del.p50).toFixed(3)}x (target <= 0.1x)`);
    }
    const outDir = process.env['BERTH_BENCH_RESULTS'];
    if (outDir) {
      fs.mkdirSync(outDir, { recursive: true });
      const file = path.join(outDir, 'cni.json');
      fs.writeFileSync(file, JSON.stringify({ bench: 'cni', date: new Date().toISOString(), pods: n, cpus: os.cpus().length, kernel: os.release(), results }, null, 2));
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
