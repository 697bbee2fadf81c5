// npm run bench -- sandbox [pods]
// Pod start to running, pod after pod: a sandbox (net/ipc/uts namespaces pinned by bind
// mounts, pod cgroup, hostname/hosts/resolv.conf) plus one container from the busybox image
// started in it. Berth is driven over gRPC exactly as the kubelet drives it (RunPodSandbox,
// CreateContainer, StartContainer against a running berth-runtime-shim). The peer is crun
// driven the same way: the same sandbox (the same namespaces, made by the same code, in-process
// so the peer pays no gRPC), the same overlay rootfs and the same OCI spec, then `crun create`
// + `crun start`. Rounds alternate between the two; each pod is removed after it is measured
// (its removal is not timed). Prints p50/p99 and the ratio; writes JSON to $BERTH_BENCH_RESULTS.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { runtime } from '@berth/api';
import { createClient, startServiceProcess, waitServing } from '@berth/common';
import { native } from '@berth/native';
import type { ServiceError } from '@grpc/grpc-js';

import { buildSpec, type ImageConfig } from '../cri/spec';
import { ImageStore, importPath } from '../images';
import { SandboxManager } from '../sandbox/sandbox';
import { uniqueId } from '../testing/bundle';
import { removeCgroupTree, removeTestImageLayout, scrubStateDir, TEST_IMAGE, testImageLayout } from '../testing/cri';

const PODS = Number(process.argv[2] ?? 100);
const SHIM = path.resolve(__dirname, '..', 'bin', 'berth-runtime-shim.js');
const CRUN = '/usr/bin/crun';

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length - 1) * p))]!;
};

/**
 * crun 1.8 refuses a hybrid host whose v2 root still offers a controller (here hugetlb, bound
 * to no v1 hierarchy). For the run, such controllers are bound to a v1 hierarchy mounted only in
 * a private mount namespace of a helper process; when the helper dies the kernel hands them back.
 */
async function bindLooseControllers(): Promise<() => Promise<void>> {
  const file = '/sys/fs/cgroup/unified/cgroup.controllers';
  const loose = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split(/\s+/).filter(Boolean) : [];
  if (loose.length === 0) return async () => undefined;
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-bench-v1-'));
  const cmds = loose.map((c) => `mkdir -p ${base}/${c} && mount -t cgroup -o ${c} none ${base}/${c}`).join(' && ');
  const helper = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `${cmds} && echo ok && exec sleep 1000000`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    helper.stdout!.once('data', () => resolve());
    helper.once('exit', (code) => reject(new Error(`binding ${loose.join(',')} to a v1 hierarchy failed (exit ${code})`)));
  });
  console.log(`note: ${loose.join(', ')} bound to a private v1 hierarchy for the run so that crun starts`);
  return async () => {
    const gone = new Promise((r) => helper.once('exit', r));
    helper.kill('SIGKILL');
    await gone;
    fs.rmSync(base, { recursive: true, force: true });
  };
}

/** Runs crun; its stderr goes to a file, as the container inherits it (a pipe would never end). */
function crun(args: string[], errFile: string): void {
  const fd = fs.openSync(errFile, 'w+');
  try {
    const r = spawnSync(CRUN, args, { stdio: ['ignore', 'ignore', fd] });
    if (r.status !== 0) throw new Error(`crun ${args.join(' ')}: exit ${r.status}: ${fs.readFileSync(errFile, 'utf8')}`);
  } finally {
    fs.closeSync(fd);
  }
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-bench-sandbox-'));
  const stateDir = path.join(work, 'state');
  const peerDir = path.join(work, 'peer');
  const cgroupRoot = `/${uniqueId('berth-bench')}`;
  const images = new ImageStore({ root: path.join(stateDir, 'images') });
  await importPath(images, testImageLayout(), { name: TEST_IMAGE });
  const image = images.find(TEST_IMAGE)!;
  const imageCfg = (JSON.parse(images.content.readBuffer(image.id).toString('utf8')) as { config?: ImageConfig }).config ?? {};
  const release = await bindLooseControllers();
  const sock = path.join(work, 'shim.sock');
  const svc = startServiceProcess(SHIM, ['--listen', `unix://${sock}`, '--state-dir', stateDir, '--log-level', 'warn']);
  const client = createClient(runtime.RuntimeServiceClient, { target: `unix://${sock}` });
  const call = <Req, Res>(fn: (req: Req, cb: (e: ServiceError | null, r: Res) => void) => unknown, req: Req): Promise<Res> =>
    new Promise((resolve, reject) => fn.call(client, req, (e: ServiceError | null, r: Res) => (e ? reject(e) : resolve(r))));
  const peerSandboxes = new SandboxManager(path.join(peerDir, 'sandboxes'));
  const podConfig = (i: number, who: string): runtime.PodSandboxConfig => {
    const uid = uniqueId(`${who}${i}`);
    return runtime.PodSandboxConfig.fromPartial({
      metadata: { name: `bench-${who}-${i}`, uid, namespace: 'bench' }, hostname: `bench-${i}`, logDirectory: path.join(work, 'logs', uid),
      linux: { cgroupParent: `${cgroupRoot}/kubepods/besteffort/pod${uid}` },
    });
  };
  const containerConfig = runtime.ContainerConfig.fromPartial({ metadata: { name: 'app' }, image: { image: TEST_IMAGE }, command: ['sleep', '3600'], logPath: 'app/0.log' });
  try {
    if ((await waitServing(`unix://${sock}`)) !== 'SERVING') throw new Error(`daemon did not start: ${svc.output()}`);

    const phases = { sandbox: [] as number[], create: [] as number[], start: [] as number[] };
    const berthPod = async (i: number): Promise<number> => {
      const config = podConfig(i, 'b');
      const t0 = process.hrtime.bigint();
      const { podSandboxId } = await call<runtime.RunPodSandboxRequest, runtime.RunPodSandboxResponse>(client.runPodSandbox, { config, runtimeHandler: '' });
      const t1 = process.hrtime.bigint();
      const { containerId } = await call<runtime.CreateContainerRequest, runtime.CreateContainerResponse>(client.createContainer, { podSandboxId, config: containerConfig, sandboxConfig: config });
      const t2 = process.hrtime.bigint();
      await call(client.startContainer, { containerId });
      const t3 = process.hrtime.bigint();
      const ms = Number(t3 - t0) / 1e6;
      if (i >= 0) {
        phases.sandbox.push(Number(t1 - t0) / 1e6);
        phases.create.push(Number(t2 - t1) / 1e6);
        phases.start.push(Number(t3 - t2) / 1e6);
      }
      await call(client.removePodSandbox, { podSandboxId });
      return ms;
    };

    const peerPod = async (i: number): Promise<number> => {
      const config = podConfig(i, 'c');
      const id = uniqueId('crun');
      const bundle = path.join(peerDir, id);
      const rootfs = path.join(bundle, 'rootfs');
      const t0 = process.hrtime.bigint();
      const sb = await peerSandboxes.run(config, '');
      fs.mkdirSync(rootfs, { recursive: true });
      const { options } = await images.prepareRootfs(id, image.id, bundle);
      native.mount('overlay', rootfs, 'overlay', ['nodev'], options);
      const spec = buildSpec({ id, cfg: containerConfig, image: imageCfg, sandbox: sb, rootfs, dir: bundle });
      fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
      crun(['--root', path.join(peerDir, 'crun'), 'create', '--bundle', bundle, id], path.join(bundle, 'crun.err'));
      crun(['--root', path.join(peerDir, 'crun'), 'start', id], path.join(bundle, 'crun.err'));
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      crun(['--root', path.join(peerDir, 'crun'), 'delete', '--force', id], path.join(bundle, 'crun.err'));
      native.umount2(rootfs, ['detach']);
      await images.removeRootfs(id, bundle);
      fs.rmSync(bundle, { recursive: true, force: true });
      await peerSandboxes.remove(sb.id);
      return ms;
    };

    await berthPod(-1); // warm-up: the daemon's first container starts its spare monitor
    await peerPod(-1);
    const samples = { berth: [] as number[], crun: [] as number[] };
    for (let i = 0; i < PODS; i++) {
      samples.berth.push(await berthPod(i));
      samples.crun.push(await peerPod(i));
    }
    const row = (name: string, xs: number[]): string => `${name.padEnd(40)}${pct(xs, 0.5).toFixed(2).padStart(10)}${pct(xs, 0.99).toFixed(2).padStart(10)}`;
    console.log(`\nsandbox: ${PODS} pods, sandbox + one busybox container to running, one pod at a time, ${os.cpus().length} cpus, load ${os.loadavg()[0]!.toFixed(2)}\n`);
    console.log(`${'case'.padEnd(40)}${'p50 ms'.padStart(10)}${'p99 ms'.padStart(10)}`);
    console.log(row('berth-runtime-shim (gRPC, monitor)', samples.berth));
    console.log(row('crun create+start (same sandbox, spec)', samples.crun));
    console.log(`  of which RunPodSandbox p50 ${pct(phases.sandbox, 0.5).toFixed(2)} ms, CreateContainer p50 ${pct(phases.create, 0.5).toFixed(2)} ms, StartContainer p50 ${pct(phases.start, 0.5).toFixed(2)} ms`);
    const ratio = pct(samples.berth, 0.5) / pct(samples.crun, 0.5);
    console.log(`\nberth / crun at p50 = ${ratio.toFixed(2)}x`);
    const out = process.env['BERTH_BENCH_RESULTS'];
    if (out !== undefined) {
      fs.mkdirSync(out, { recursive: true });
      const file = path.join(out, 'sandbox.json');
      fs.writeFileSync(file, JSON.stringify({
        area: 'sandbox', date: new Date().toISOString(), pods: PODS, cpus: os.cpus().length, load1: os.loadavg()[0],
        p50Ms: { berth: pct(samples.berth, 0.5), crun: pct(samples.crun, 0.5) },
        p99Ms: { berth: pct(samples.berth, 0.99), crun: pct(samples.crun, 0.99) },
        ratioP50: ratio, berthPhasesP50Ms: { runPodSandbox: pct(phases.sandbox, 0.5), createContainer: pct(phases.create, 0.5), startContainer: pct(phases.start, 0.5) }, samplesMs: samples,
      }, null, 2));
      console.log(`results: ${file}`);
    }
  } finally {
    client.close();
    await svc.stop();
    for (const s of peerSandboxes.list()) await peerSandboxes.remove(s.id).catch(() => undefined);
    spawnSync(CRUN, ['--root', path.join(peerDir, 'crun'), 'list', '-q'], { encoding: 'utf8' }).stdout?.split('\n').filter(Boolean).forEach((id) => crun(['--root', path.join(peerDir, 'crun'), 'delete', '--force', id], path.join(work, 'crun.err')));
    scrubStateDir(stateDir);
    scrubStateDir(peerDir);
    removeCgroupTree(cgroupRoot);
    await release();
    removeTestImageLayout();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
